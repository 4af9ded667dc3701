"""Prints the five largest modules, the five longest functions (with their McCabe complexity, as ruff's
C901 counts it), the five most complex functions and the `if target == ...` branches of a jepa_platform
tree (default: this checkout), for before/after figures in issue notes.

    python scripts/code_size.py [TREE]
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

TARGET_BRANCH = re.compile(
    r"""(target|tgt)\b[^\n]*(==|!=|\bin\b)\s*\(?["'](local|ray|kubernetes|k8s)"""
    r"""|== ["'](kubernetes|ray|local)["']"""
)
COMPLEXITY = re.compile(r"^`(?P<name>[^`]+)` is too complex \((?P<n>\d+) > 0\)$")


def complexities(root: Path) -> dict[tuple[str, int], int]:
    """(file, line of the def) -> McCabe complexity, from ruff's C901 with the limit at 0."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(root), "--isolated", "--select", "C901", "--config",
         "lint.mccabe.max-complexity=0", "--output-format", "json", "--exit-zero", "--ignore-noqa"],
        capture_output=True, text=True, check=True,
    ).stdout
    found = {}
    for item in json.loads(out):
        match = COMPLEXITY.match(item["message"])
        if match:
            found[(str(Path(item["filename"]).resolve()), item["location"]["row"])] = int(match["n"])
    return found


def main(tree: str = str(Path(__file__).resolve().parents[1])) -> None:
    root = Path(tree).resolve() / "jepa_platform"
    files = sorted(root.rglob("*.py"))
    name = lambda p: str(p.relative_to(root.parent))  # noqa: E731
    sizes = sorted(((len(p.read_text().splitlines()), name(p)) for p in files), reverse=True)
    mccabe = complexities(root)
    functions = sorted(
        ((node.end_lineno - node.lineno + 1, mccabe.get((str(p), node.lineno), 0), f"{name(p)}:{node.name}")
         for p in files for node in ast.walk(ast.parse(p.read_text()))
         if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)),
        reverse=True,
    )
    branches = [f"{name(p)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
                if TARGET_BRANCH.search(line) and not line.strip().startswith("#")]
    print("five largest modules (lines):", "; ".join(f"{p} {n}" for n, p in sizes[:5]))
    print("longest functions (lines, complexity):", "; ".join(f"{f} {n}, {c}" for n, c, f in functions[:5]))
    complex_ = sorted(functions, key=lambda f: (f[1], f[0]), reverse=True)
    print("most complex functions (complexity, lines):", "; ".join(f"{f} {c}, {n}" for n, c, f in complex_[:5]))
    print(f"if-target branches: {len(branches)}", " ".join(branches))


if __name__ == "__main__":
    main(*sys.argv[1:2])
