"""Prints jepa_platform's import cycles and the imports that point up the layers of pyproject.toml.

    python scripts/import_layers.py                # this checkout
    python scripts/import_layers.py /tmp/old-tree  # another tree's jepa_platform, against today's layers

The layers are those of the `layers` contract in [tool.importlinter]; a module not named there (nor
under a package named there) is left out of the count. Imports inside functions and under
TYPE_CHECKING count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Modules that older trees had, placed where their code lives now.
MOVED = {"jepa_platform.plugins.builtin": "jepa_platform.plugins.manager",
         "jepa_platform.eval.plugin": "jepa_platform.models"}


def layer_of(layers: list[str]):
    rank = {f"jepa_platform.{part.strip()}": i for i, line in enumerate(layers)
            for part in line.replace(":", "|").split("|")}

    def layer(module: str) -> int | None:
        module = MOVED.get(module, module)
        names = [n for n in rank if module == n or module.startswith(n + ".")]
        return rank[max(names, key=len)] if names else None

    return layer


def main(tree: str | None = None) -> None:
    if tree:
        sys.path.insert(0, tree)
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layer = layer_of(next(c for c in contracts if c["type"] == "layers")["layers"])
    graph = grimp.build_graph("jepa_platform", cache_dir=None, exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    short = lambda m: m.removeprefix("jepa_platform.")  # noqa: E731
    cycles = [m for m in modules if any(graph.chain_exists(importer=o, imported=m)
                                        for o in graph.find_modules_directly_imported_by(m) - {m})]
    up = sorted(f"{short(a)} -> {short(b)}" for a in modules for b in graph.find_modules_directly_imported_by(a)
                if None not in (layer(a), layer(b)) and layer(b) < layer(a))
    print(f"{len(modules)} modules, {len(cycles)} in import cycles: {', '.join(map(short, cycles)) or '-'}")
    print(f"{len(up)} imports point up the layers")
    for line in up:
        print(f"  {line}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
