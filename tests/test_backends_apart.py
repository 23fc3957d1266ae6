"""The two backends stand side by side: ``real/`` never imports the simulator (validation, which needs both,
lives in ``experiments/``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_real_imports_no_simulator_module() -> None:
    files = sorted((ROOT / "real").glob("*.py"))
    assert files
    bad = {f.name: sorted(m for m in imported_modules(f) if m == "sim" or m.startswith(("sim.", "simpy")))
           for f in files}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from sim.run import simulate\n    import simpy\n")
    assert {"sim.run", "simpy"} <= imported_modules(f)
