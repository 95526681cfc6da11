"""No re-export shims: every `from gmnae.<module> import name` (in gmnae, tests, benchmarks, experiments, scripts)
names something that module defines, not something it imported from elsewhere. Package `__init__.py` files,
which deliberately expose their package's API, are exempt as import targets."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("gmnae", "tests", "benchmarks", "experiments", "scripts")


def _defined(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
    return names


def _imports(path: Path):
    """(line, module, name) of every `from <gmnae module> import name` in the file, relative imports resolved."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            yield node.lineno, module, alias.name


def test_every_import_names_the_defining_module():
    cache: dict[Path, set[str]] = {}
    bad = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else []:
            for line, module, name in _imports(path):
                target = ROOT / (module.replace(".", "/") + ".py")
                if not module.startswith("gmnae") or not target.is_file() or name == "*":
                    continue  # another package, or a package __init__ (its public API)
                if name not in cache.setdefault(target, _defined(target)):
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {name} from {module}, which only imports it")
    assert not bad, "import these from the module that defines them:\n" + "\n".join(bad)


def test_no_unused_import_markers_outside_package_inits():
    marked = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "gmnae").rglob("*.py")) if p.name != "__init__.py"
              for i, line in enumerate(p.read_text().splitlines(), 1) if "noqa: F401" in line or "re-export" in line]
    assert not marked, f"re-exports left (import the name from its defining module instead): {marked}"
