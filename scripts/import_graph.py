"""engage's import graph, drawn from the code: each subpackage and top-level module one box, the links between
boxes, the links that run against the layers of pyproject.toml's [tool.importlinter] contract, and every circle
(between boxes, and between the modules of one box). The closing notes' "before and after" come from here.

    python scripts/import_graph.py                 # the installed engage (this checkout)
    python scripts/import_graph.py --src /tmp/old/src --layers-from pyproject.toml   # another checkout, our layers
    python scripts/import_graph.py --dot graph.dot # also a Graphviz file of the boxes
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent


def layers_of(pyproject: Path) -> list[list[str]]:
    """The layers contract, top first, each layer a list of sibling boxes."""
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def box_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def module_graph(src: Path | None) -> grimp.ImportGraph:
    if src is not None:
        sys.path.insert(0, str(src))
    return grimp.build_graph("engage", cache_dir=None)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one node (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def report(graph: grimp.ImportGraph, layers: list[list[str]]) -> dict:
    """Boxes, links between boxes, links against the layers, circles between boxes and within each box."""
    modules = sorted(graph.modules)
    box_links: dict[str, set[str]] = {}
    module_links: dict[str, set[str]] = {}
    for module in modules:
        for target in graph.find_modules_directly_imported_by(module):
            module_links.setdefault(module, set()).add(target)
            source_box, target_box = box_of(module), box_of(target)
            if source_box != target_box and source_box != "engage":  # the package's lazy face imports nothing
                box_links.setdefault(source_box, set()).add(target_box)
    level = {f"{box}": depth for depth, layer in enumerate(layers) for box in layer}
    against = sorted(
        (a, b)
        for a, targets in box_links.items()
        for b in targets
        if a in level and b in level and level[b] <= level[a] and a != b
    )
    within = [
        c
        for box in {box_of(m) for m in modules}
        for c in circles({m: {t for t in ts if box_of(t) == box} for m, ts in module_links.items() if box_of(m) == box})
    ]
    boxes = sorted({box_of(m) for m in modules} - {"engage"})
    return {
        "boxes": boxes,
        "links": sorted((a, b) for a, ts in box_links.items() for b in ts),
        "against_layers": against,
        "box_circles": circles(box_links),
        "module_circles": within,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="a checkout's src/ folder (default: the engage that imports)")
    parser.add_argument("--layers-from", type=Path, default=REPO / "pyproject.toml")
    parser.add_argument("--dot", type=Path, help="write the boxes and links as a Graphviz file")
    args = parser.parse_args()
    layers = layers_of(args.layers_from)
    result = report(module_graph(args.src), layers)
    print(
        f"{len(result['boxes'])} boxes, {len(result['links'])} links between boxes, "
        f"{len(result['against_layers'])} against the layers, {len(result['box_circles'])} circles between boxes, "
        f"{len(result['module_circles'])} circles between modules of one box"
    )
    for a, b in result["against_layers"]:
        print(f"  against the layers: {a} -> {b}")
    for circle in result["box_circles"] + result["module_circles"]:
        print(f"  circle: {' <-> '.join(circle)}")
    if args.dot:
        lines = ["digraph engage {", "  rankdir=TB;"] + [f'  "{a}" -> "{b}";' for a, b in result["links"]] + ["}"]
        args.dot.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
