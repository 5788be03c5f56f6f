"""MkDocs hook: the HTTP API page, written from the committed OpenAPI schema when the site is built.

A page that holds the marker `<!-- openapi: openapi.json -->` gets, in its place, the schema rendered as
Markdown: every path and method (summary, description, parameters, request body, every response), then every
component schema with its fields. It works on any OpenAPI 3.0 or 3.1 document and reads only the JSON file (the
path is relative to the page), so the docs build imports nothing of engage and loads no model. A missing or
malformed schema stops the build with one line.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

MARKER = re.compile(r"<!--\s*openapi:\s*(?P<path>\S+)\s*-->")
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
SCHEMA_REF = "#/components/schemas/"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    match = MARKER.search(markdown)
    if match is None:
        return markdown
    page_dir = os.path.dirname(os.path.join(config["docs_dir"], page.file.src_path))
    path = os.path.normpath(os.path.join(page_dir, match["path"]))
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise PluginError(f"{page.file.src_path}: cannot read the OpenAPI schema {path}: {error}") from None
    version = str(document.get("openapi", "")) if isinstance(document, dict) else ""
    if not version.startswith("3.") or not isinstance(document.get("paths", {}), dict):
        raise PluginError(f"{page.file.src_path}: {path} is not an OpenAPI 3.x schema (its 'openapi' is {version!r})")
    return markdown[: match.start()] + OpenAPIPage(document).render() + markdown[match.end() :]


def cell(text: Any) -> str:
    """Text for one Markdown table cell: no line breaks, and no column separator outside code spans (a table keeps
    the pipes of a code span, and shows a backslash before them if they are escaped)."""
    if text in (None, ""):
        return ""
    parts = re.split(r"((?<!`)(`+)(?!`).+?(?<!`)\2(?!`))", " ".join(str(text).split()))
    # re.split gives [text, code span, its backticks, text, ...]: escape the text only
    return "".join(part.replace("|", "\\|") if i % 3 == 0 else part for i, part in enumerate(parts) if i % 3 != 2)


def code(text: Any) -> str:
    """`text` as inline code, fenced with more backticks than it holds."""
    text = str(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if not isinstance(value, str) else value


def anchor(prefix: str, name: str) -> str:
    return prefix + "-" + re.sub(r"[^A-Za-z0-9_]+", "-", name).strip("-").lower()


class OpenAPIPage:
    """One OpenAPI document as Markdown."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.schemas: dict = document.get("components", {}).get("schemas", {}) or {}
        self.anchors: dict[tuple[str, str], str] = {}  # (kind, name) -> a heading id unique on the page

    def anchor(self, kind: str, name: str) -> str:
        if (kind, name) not in self.anchors:
            base = anchor(kind, name)
            taken = set(self.anchors.values())
            self.anchors[(kind, name)] = next(
                f"{base}-{n}" if n else base
                for n in range(len(taken) + 1)
                if (f"{base}-{n}" if n else base) not in taken
            )
        return self.anchors[(kind, name)]

    # references

    def resolve(self, item: Any) -> Any:
        """Follow local $refs (`#/...`) of parameters, bodies, responses and headers; schemas are linked instead."""
        seen = set()
        while isinstance(item, dict) and "$ref" in item and str(item["$ref"]).startswith("#/"):
            ref = item["$ref"]
            if ref in seen:
                raise PluginError(f"OpenAPI schema: circular $ref {ref}")
            seen.add(ref)
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise PluginError(f"OpenAPI schema: $ref {ref} points at nothing")
                target = target[part]
            item = target
        return item

    def schema_link(self, ref: str) -> str:
        if ref.startswith(SCHEMA_REF):
            name = ref[len(SCHEMA_REF) :]
            if name not in self.schemas:
                raise PluginError(f"OpenAPI schema: $ref {ref} points at nothing")
            return f"[{name}](#{self.anchor('schema', name)})"
        return code(ref)

    # schemas

    def type_of(self, schema: Any) -> str:
        """A schema's type in a few words, with links to the component schemas it names."""
        if not isinstance(schema, dict):
            return "any" if schema is True or schema is None else "nothing"
        if "$ref" in schema:
            return self.schema_link(str(schema["$ref"]))
        for key, joiner in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
            if key in schema:
                kinds = [self.type_of(part) for part in schema[key]]
                joined = joiner.join(dict.fromkeys(kinds))
                return joined + (" or null" if schema.get("nullable") else "")
        if "const" in schema:
            return f"constant {code(json.dumps(schema['const']))}"
        kind = schema.get("type")
        kinds = list(kind) if isinstance(kind, list) else [kind] if kind else []
        words: list[str] = []
        for one in kinds:
            if one == "array":
                words.append(f"array of {self.type_of(schema.get('items', {}))}")
            elif (
                one == "object"
                and isinstance(schema.get("additionalProperties"), dict)
                and not schema.get("properties")
            ):
                words.append(f"object of {self.type_of(schema['additionalProperties'])}")
            else:
                words.append(str(one))
        if not words:
            words.append("object" if "properties" in schema else "any")
        if schema.get("nullable") and "null" not in words:
            words.append("null")
        return " or ".join(words)

    def constraints(self, schema: Any) -> str:
        """Everything a schema says a value must be, besides its type."""
        if not isinstance(schema, dict):
            return ""
        said = []
        if "format" in schema:
            said.append(f"format {code(schema['format'])}")
        for key, words in (("contentMediaType", "content type"), ("contentEncoding", "encoding")):
            if key in schema:
                said.append(f"{words} {code(schema[key])}")
        for key, sign in (("minimum", ">="), ("maximum", "<=")):
            if key in schema:
                strict = schema.get("exclusive" + key.capitalize()) is True
                said.append(f"{sign.rstrip('=') if strict else sign} {number(schema[key])}")
        for key, sign in (("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
            if isinstance(schema.get(key), int | float) and not isinstance(schema.get(key), bool):
                said.append(f"{sign} {number(schema[key])}")
        if "multipleOf" in schema:
            said.append(f"multiple of {number(schema['multipleOf'])}")
        for key, words in (
            ("minLength", "length >="),
            ("maxLength", "length <="),
            ("minItems", "items >="),
            ("maxItems", "items <="),
            ("minProperties", "fields >="),
            ("maxProperties", "fields <="),
        ):
            if key in schema:
                said.append(f"{words} {number(schema[key])}")
        if schema.get("uniqueItems"):
            said.append("unique items")
        if "pattern" in schema:
            said.append(f"pattern {code(schema['pattern'])}")
        if "enum" in schema:
            said.append("one of " + ", ".join(code(json.dumps(value)) for value in schema["enum"]))
        if "default" in schema:
            said.append(f"default {code(json.dumps(schema['default']))}")
        for key in ("readOnly", "writeOnly", "deprecated"):
            if schema.get(key):
                said.append({"readOnly": "read only", "writeOnly": "write only", "deprecated": "deprecated"}[key])
        items = schema.get("items")
        if isinstance(items, dict) and "$ref" not in items and self.constraints(items):
            said.append(f"each item: {self.constraints(items)}")
        if "example" in schema:
            said.append(f"example {code(json.dumps(schema['example']))}")
        elif isinstance(schema.get("examples"), list) and schema["examples"]:
            said.append(f"example {code(json.dumps(schema['examples'][0]))}")
        return "; ".join(said)

    def fields_table(self, schema: dict) -> list[str]:
        """A table of an object schema's fields (allOf parts merged)."""
        properties, required = self.properties(schema)
        if not properties:
            return []
        lines = ["| field | type | required | constraints | description |", "| --- | --- | --- | --- | --- |"]
        for name, field in properties.items():
            description = (field.get("description") or field.get("title", "")) if isinstance(field, dict) else ""
            lines.append(
                f"| {code(name)} | {cell(self.type_of(field))} | {'yes' if name in required else 'no'} | "
                f"{cell(self.constraints(field))} | {cell(description)} |"
            )
        return lines

    def properties(self, schema: Any) -> tuple[dict, set]:
        schema = self.resolve_schema(schema)
        if not isinstance(schema, dict):
            return {}, set()
        properties = dict(schema.get("properties", {}) or {})
        required = set(schema.get("required", []) or [])
        for part in schema.get("allOf", []) or []:
            more, more_required = self.properties(part)
            properties = {**more, **properties}
            required |= more_required
        return properties, required

    def resolve_schema(self, schema: Any) -> Any:
        if isinstance(schema, dict) and str(schema.get("$ref", "")).startswith("#/"):
            return self.resolve(schema)
        return schema

    # the page

    def render(self) -> str:
        lines: list[str] = []
        info = self.document.get("info", {}) or {}
        lines.append(
            f"Schema: **{info.get('title', 'untitled')}**, version {code(info.get('version', '?'))}, "
            f"OpenAPI {code(self.document.get('openapi'))}."
        )
        if info.get("description"):
            lines += ["", str(info["description"]).strip()]
        servers = self.document.get("servers") or []
        if servers:
            lines += ["", "Servers: " + ", ".join(code(server.get("url", "")) for server in servers) + "."]
        lines += self.security_section()
        operations = [
            (path, method, operation, item)
            for path, item in (self.document.get("paths") or {}).items()
            for method, operation in (self.resolve(item) or {}).items()
            if method in METHODS
        ]
        lines += ["", "## Endpoints", "", "| method | path | summary |", "| --- | --- | --- |"]
        for path, method, operation, _ in operations:
            target = self.anchor("op", f"{method}-{path}")
            summary = operation.get("summary") or operation.get("operationId", "")
            lines.append(f"| {method.upper()} | [{code(path)}](#{target}) | {cell(summary)} |")
        for path, method, operation, item in operations:
            lines += self.operation(path, method, operation, self.resolve(item))
        webhooks = self.document.get("webhooks") or {}
        if webhooks:
            lines += ["", "## Webhooks"]
            for name, item in webhooks.items():
                for method, operation in (self.resolve(item) or {}).items():
                    if method in METHODS:
                        lines += self.operation(name, method, operation, self.resolve(item))
        if self.schemas:
            lines += ["", "## Schemas"]
            for name, schema in self.schemas.items():
                lines += self.schema_section(name, schema)
        return "\n".join(lines) + "\n"

    def security_section(self) -> list[str]:
        schemes = self.document.get("components", {}).get("securitySchemes", {}) or {}
        if not schemes:
            return []
        lines = ["", "## Security", "", "| scheme | type | details | description |", "| --- | --- | --- | --- |"]
        for name, scheme in schemes.items():
            scheme = self.resolve(scheme)
            details = "; ".join(
                f"{key} {code(scheme[key])}" for key in ("scheme", "bearerFormat", "in", "name") if key in scheme
            )
            lines.append(
                f"| {code(name)} | {cell(scheme.get('type'))} | {cell(details)} | {cell(scheme.get('description'))} |"
            )
        if self.document.get("security"):
            lines += ["", "Required on every endpoint unless it says otherwise: " + self.requirement(None) + "."]
        return lines

    def requirement(self, operation: dict | None) -> str:
        security = self.document.get("security") if operation is None else operation.get("security")
        if not security:
            return "none"
        options = [" and ".join(code(name) for name in option) or "none" for option in security]
        return " or ".join(options)

    def operation(self, path: str, method: str, operation: dict, item: dict) -> list[str]:
        lines = ["", f"### {method.upper()} {code(path)} {{#{self.anchor('op', f'{method}-{path}')}}}", ""]
        if operation.get("deprecated"):
            lines += ['!!! warning "Deprecated"', "    This operation is deprecated.", ""]
        if operation.get("summary"):
            lines += [f"**{operation['summary'].strip()}**", ""]
        if operation.get("description"):
            lines += [str(operation["description"]).strip(), ""]
        facts = []
        if operation.get("tags"):
            facts.append("tags: " + ", ".join(code(tag) for tag in operation["tags"]))
        if operation.get("operationId"):
            facts.append(f"operation id: {code(operation['operationId'])}")
        if "security" in operation:
            facts.append("security: " + self.requirement(operation))
        if facts:
            sentence = "; ".join(facts)
            lines += [sentence[0].upper() + sentence[1:] + ".", ""]
        parameters = {}
        for parameter in [*(item.get("parameters") or []), *(operation.get("parameters") or [])]:
            parameter = self.resolve(parameter)
            parameters[(parameter.get("name"), parameter.get("in"))] = parameter
        if parameters:
            lines += [
                "Parameters:",
                "",
                "| name | in | required | type | constraints | description |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for (name, where), parameter in parameters.items():
                schema = parameter.get("schema")
                if schema is None and parameter.get("content"):
                    schema = next(iter(parameter["content"].values())).get("schema", {})
                said = [self.constraints(schema or {})]
                if parameter.get("deprecated"):
                    said.append("deprecated")
                if parameter.get("allowEmptyValue"):
                    said.append("may be empty")
                lines.append(
                    f"| {code(name)} | {where} | {'yes' if parameter.get('required') else 'no'} | "
                    f"{cell(self.type_of(schema or {}))} | {cell('; '.join(s for s in said if s))} | "
                    f"{cell(parameter.get('description'))} |"
                )
            lines.append("")
        if "requestBody" in operation:
            lines += self.request_body(self.resolve(operation["requestBody"]))
        lines += self.responses(operation.get("responses") or {})
        return lines

    def request_body(self, body: dict) -> list[str]:
        lines = [f"Request body ({'required' if body.get('required') else 'optional'}):", ""]
        if body.get("description"):
            lines += [str(body["description"]).strip(), ""]
        for media_type, content in (body.get("content") or {}).items():
            schema = (content or {}).get("schema", {})
            lines += [f"- {code(media_type)}: {self.type_of(schema)}", ""]
            table = self.fields_table(schema)
            if table:
                lines += [*table, ""]
            encoding = (content or {}).get("encoding") or {}
            for field, rule in encoding.items():
                if rule.get("contentType"):
                    lines += [f"Field {code(field)} is sent as {code(rule['contentType'])}.", ""]
        return lines

    def responses(self, responses: dict) -> list[str]:
        if not responses:
            return []
        lines = [
            "Responses:",
            "",
            "| status | description | content type | schema |",
            "| --- | --- | --- | --- |",
        ]
        headers_seen = []
        order = sorted(responses, key=lambda code: (str(code) == "default", str(code).upper().replace("X", "9")))
        for status in order:
            response = self.resolve(responses[status])
            content = response.get("content") or {}
            kinds = [code(media_type) for media_type in content] or ["(no body)"]
            schemas = [self.type_of((c or {}).get("schema", {})) for c in content.values()] or [""]
            lines.append(
                f"| {code(status)} | {cell(response.get('description'))} | {cell(', '.join(kinds))} | "
                f"{cell(', '.join(dict.fromkeys(schemas)))} |"
            )
            for header, spec in (response.get("headers") or {}).items():
                spec = self.resolve(spec)
                headers_seen.append((status, header, spec))
        lines.append("")
        if headers_seen:
            lines += ["Response headers:", "", "| status | header | type | description |", "| --- | --- | --- | --- |"]
            for status, header, spec in headers_seen:
                lines.append(
                    f"| {code(status)} | {code(header)} | {cell(self.type_of(spec.get('schema', {})))} | "
                    f"{cell(spec.get('description'))} |"
                )
            lines.append("")
        return lines

    def schema_section(self, name: str, schema: dict) -> list[str]:
        lines = ["", f"### {code(name)} {{#{self.anchor('schema', name)}}}", ""]
        if isinstance(schema, dict) and schema.get("description"):
            lines += [str(schema["description"]).strip(), ""]
        kind = self.type_of(schema)
        said = self.constraints(schema)
        lines += [f"Type: {kind}" + (f"; {said}" if said else "") + ".", ""]
        table = self.fields_table(schema)
        if table:
            lines += [*table, ""]
        return lines
