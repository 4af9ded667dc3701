"""The code's shape, kept in CI: import layers and contracts, no import cycles, ruff (with its complexity limit)."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def modules_in_cycles() -> list[str]:
    """Modules of jepa_platform that import themselves through others (imports inside functions and
    under TYPE_CHECKING count: each is an arrow a reader follows)."""
    graph = grimp.build_graph("jepa_platform", cache_dir=None, exclude_type_checking_imports=False)
    return sorted(
        module for module in graph.modules
        if any(graph.chain_exists(importer=other, imported=module)
               for other in graph.find_modules_directly_imported_by(module) - {module})
    )


def test_no_module_of_jepa_platform_imports_itself_through_others():
    assert modules_in_cycles() == []


def test_import_layers_and_contracts_hold():
    """pyproject.toml's [tool.importlinter]: components never import runners, the CLI or the spec; the
    plugin mechanism never imports a component; every import points down the layers."""
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_ruff_is_clean_including_the_complexity_limit():
    result = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]


def test_a_cycle_is_found_when_there_is_one(tmp_path, monkeypatch):
    """The cycle finder itself: two modules importing each other are reported."""
    package = tmp_path / "jepa_platform"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from jepa_platform import b\n")
    (package / "b.py").write_text("from jepa_platform import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "jepa_platform" or m.startswith("jepa_platform.")]:
        monkeypatch.delitem(sys.modules, name)
    assert modules_in_cycles() == ["jepa_platform.a", "jepa_platform.b"]
