"""The package's layers (docs/design.md, "Layers"): no module imports from a package above its own layer,
lazy imports inside functions included, so there is no import loop between packages."""
from __future__ import annotations

import ast
from pathlib import Path

import gmnae

PACKAGE = Path(gmnae.__file__).resolve().parent
# Lowest first. Modules of one layer may import each other; the top-level utilities (errors, threads, quiet)
# sit below everything, cli above everything.
LAYERS = [
    {"errors", "threads", "quiet", "__init__"},
    {"weightspace"},
    {"config", "tasks"},
    {"nn", "zoo"},
    {"merge"},
    {"data"},
    {"training"},
    {"evaluation"},
    {"commands"},
    {"cli", "__main__"},
]


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"gmnae.{top} has no layer: add it to LAYERS here and to docs/design.md")


def imported_tops(source: str, parts: tuple[str, ...]) -> set[str]:
    """The top-level gmnae names (package or module) that a file at gmnae/<parts>.py imports, wherever the
    import statement is (module level or inside a function)."""
    pkg = list(parts[:-1])
    tops = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                names = base + (node.module.split(".") if node.module else [])
                if names:
                    tops.add(names[0])
                else:  # `from . import x` at the top of the package
                    tops.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "gmnae":
                rest = node.module.split(".")[1:]
                tops.update(rest[:1] or [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gmnae."):
                    tops.add(a.name.split(".")[1])
    return tops


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own_top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        own = layer_of(own_top)
        for top in imported_tops(path.read_text(), path.relative_to(PACKAGE).with_suffix("").parts):
            if top == "__version__":
                continue
            if layer_of(top) > own:
                upward.append(f"{path.relative_to(PACKAGE)} imports gmnae.{top}")
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_the_layer_check_sees_lazy_relative_and_absolute_imports():
    lazy = "def f():\n    from ..evaluation.report import write\n"
    assert imported_tops(lazy, ("training", "losses")) == {"evaluation"}
    assert imported_tops("from . import digits\n", ("tasks", "inr_targets")) == {"tasks"}
    assert imported_tops("from .errors import GmnaeError\n", ("cli",)) == {"errors"}
    assert imported_tops("import gmnae.commands.train\nfrom gmnae import zoo\n", ("data", "x")) == {"commands", "zoo"}
    assert layer_of("evaluation") > layer_of("training") > layer_of("data") > layer_of("merge")
