"""Write the HTTP API's OpenAPI schema to docs/openapi.json, where the documentation renders it (docs/http-api.md)
and tests/test_serve_contract.py checks that it is what `engage serve` answers. Run it after changing the API:

    python scripts/openapi_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from engage.io.files import write_text
from engage.serve.app import create_app

OUT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"

if __name__ == "__main__":
    app = create_app()  # the default settings: no token, the default limits (what the schema depends on)
    write_text(str(OUT), json.dumps(app.openapi(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(app.openapi()['paths'])} paths")
