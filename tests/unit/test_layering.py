"""The import rules that keep the house livable (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "cc_slurm_adapter"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_imports(path: Path) -> set[str]:
    """Every cc_slurm_adapter module a file imports, at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cc_slurm_adapter"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("cc_slurm_adapter"):
                found.add(target)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(prefix: str) -> dict[str, set[str]]:
    return {name: our_imports(path) for name, path in MODULES.items()
            if name == prefix or name.startswith(prefix + ".")}


def violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name, targets in imports_of(prefix).items():
        for target in targets:
            if any(target == f or target.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {target}")
    return bad


def test_hook_imports_nothing_of_ours() -> None:
    assert our_imports(MODULES["cc_slurm_adapter.hook"]) == set()


def test_product_code_never_imports_testing() -> None:
    product = [n for n in MODULES if not n.startswith("cc_slurm_adapter.testing")]
    bad = [f"{n} imports {t}" for n in product for t in our_imports(MODULES[n])
           if t.startswith("cc_slurm_adapter.testing")]
    assert bad == []


@pytest.mark.parametrize(("prefix", "forbidden"), [
    # the Slurm layer knows nothing of cc-backend, payloads or config
    ("cc_slurm_adapter.slurm", ("cc_slurm_adapter.mapping", "cc_slurm_adapter.profiles",
                                "cc_slurm_adapter.topology", "cc_slurm_adapter.config",
                                "cc_slurm_adapter.cli", "cc_slurm_adapter.convert")),
    # the mapping is pure: no config file, no CLI, no I/O modules
    ("cc_slurm_adapter.mapping", ("cc_slurm_adapter.config", "cc_slurm_adapter.cli",
                                  "cc_slurm_adapter.convert", "cc_slurm_adapter.slurm.runner",
                                  "cc_slurm_adapter.slurm.source")),
    # floor 1 stays at the bottom
    ("cc_slurm_adapter.profiles", ("cc_slurm_adapter.slurm", "cc_slurm_adapter.mapping",
                                   "cc_slurm_adapter.config")),
    ("cc_slurm_adapter.errors", ("cc_slurm_adapter.",)),
    # the store: errors, the Slurm record/phase types, stdlib and msgspec only
    ("cc_slurm_adapter.store", ("cc_slurm_adapter.mapping", "cc_slurm_adapter.profiles",
                                "cc_slurm_adapter.topology", "cc_slurm_adapter.config",
                                "cc_slurm_adapter.cli", "cc_slurm_adapter.convert",
                                "cc_slurm_adapter.slurm.parse", "cc_slurm_adapter.slurm.runner",
                                "cc_slurm_adapter.slurm.source", "cc_slurm_adapter.testing")),
    ("cc_slurm_adapter.log", ("cc_slurm_adapter.config", "cc_slurm_adapter.slurm")),
    # the metrics (floor 4, beside daemon/) read the daemon; nothing above or beside them
    ("cc_slurm_adapter.metrics", ("cc_slurm_adapter.cli", "cc_slurm_adapter.convert",
                                  "cc_slurm_adapter.check", "cc_slurm_adapter.testing")),
])
def test_floor_rules(prefix: str, forbidden: tuple[str, ...]) -> None:
    assert violations(prefix, forbidden) == []


def test_mapping_has_no_io_or_clock() -> None:
    for name, path in MODULES.items():
        if not name.startswith("cc_slurm_adapter.mapping"):
            continue
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for a in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert not imported & {"subprocess", "socket", "httpx", "sqlite3", "asyncio", "time",
                               "os"}, (name, imported)
        # datetime formats times that come in the record; it must not read the clock
        clock = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and node.attr in ("now", "utcnow", "today")]
        assert clock == [], (name, clock)


def test_hook_mode_does_not_load_the_heavy_modules() -> None:
    """The hook path (no -daemon) must start in milliseconds: no httpx, msgspec, Slurm layer."""
    code = ("import sys\nfrom cc_slurm_adapter import cli\n"
            "cli.main(['-config', '/nonexistent.json'])\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('httpx', 'msgspec', 'nats',"
            " 'hostlist') or m.startswith(('cc_slurm_adapter.slurm', 'cc_slurm_adapter.mapping',"
            " 'cc_slurm_adapter.config'))]\nprint(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
