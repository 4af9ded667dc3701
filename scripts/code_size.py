"""Prints the five largest modules, the five longest functions and the `if target == ...` branches of a
jepa_platform tree (default: this checkout), for before/after figures in issue notes.

    python scripts/code_size.py [TREE]
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

TARGET_BRANCH = re.compile(
    r"""(target|tgt)\b[^\n]*(==|!=|\bin\b)\s*\(?["'](local|ray|kubernetes|k8s)"""
    r"""|== ["'](kubernetes|ray|local)["']"""
)


def main(tree: str = str(Path(__file__).resolve().parents[1])) -> None:
    root = Path(tree) / "jepa_platform"
    files = sorted(root.rglob("*.py"))
    name = lambda p: str(p.relative_to(root.parent))  # noqa: E731
    sizes = sorted(((len(p.read_text().splitlines()), name(p)) for p in files), reverse=True)
    functions = sorted(
        ((node.end_lineno - node.lineno + 1, f"{name(p)}:{node.name}")
         for p in files for node in ast.walk(ast.parse(p.read_text()))
         if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)),
        reverse=True,
    )
    branches = [f"{name(p)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
                if TARGET_BRANCH.search(line) and not line.strip().startswith("#")]
    print("five largest modules:", "; ".join(f"{p} {n}" for n, p in sizes[:5]))
    print("longest functions:", "; ".join(f"{f} {n}" for n, f in functions[:5]))
    print(f"if-target branches: {len(branches)}", " ".join(branches))


if __name__ == "__main__":
    main(*sys.argv[1:2])
