"""argparse stays in the command layer: no library function takes an argparse Namespace.

The command layer is gmnae/commands/, gmnae/cli.py and gmnae/zoo/commands.py, plus the entry points that cli.py's
command tables name in other modules (`add_[X_]arguments(parser)` / `run[_X](args)`, e.g. the zoo importers) and the
`main()` of a `python -m` module. Outside it: no parameter called `args`, no `argparse` annotation, no argparse use
in any other function. Inside it: `args` is never handed to a function imported from below the command layer (spell
the options out as keywords, e.g. `resolve_architecture(path, state, arch=..., zoo=...)`)."""
from __future__ import annotations

import ast
from pathlib import Path

from gmnae import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gmnae"
COMMAND_MODULES = {"gmnae/cli.py", "gmnae/zoo/commands.py"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_command_module(rel: str) -> bool:
    return rel.startswith("gmnae/commands/") or rel in COMMAND_MODULES


def _entry_points() -> dict[str, set[str]]:
    """module file -> its entry-point function names, from cli.py's command tables."""
    out: dict[str, set[str]] = {}
    for module, _ in [*cli.COMMANDS.values(), *cli.IMPORT_COMMANDS.values()]:
        out.setdefault(module.replace(".", "/") + ".py", set()).update({"add_arguments", "run"})
    for module, fn, _ in cli.ZOO_COMMANDS.values():
        out.setdefault(module.replace(".", "/") + ".py", set()).update({f"add_{fn}_arguments", f"run_{fn}"})
    return out


def _has_main_guard(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _takes_namespace(fn) -> bool:
    params = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return any(p.arg == "args" or (p.annotation is not None and "argparse" in ast.unparse(p.annotation)) for p in params)


def _uses_argparse(fn) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "argparse" for n in ast.walk(fn)) or _takes_namespace(fn)


def _library_names(tree: ast.Module, rel: str) -> set[str]:
    """Names the module imports from gmnae modules outside the command layer."""
    package = rel[: -len(".py")].split("/")[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = "/".join(base + (node.module.split(".") if node.module else []))
            if module.startswith("gmnae") and not _is_command_module(module + ".py") \
                    and not module.startswith("gmnae/commands"):
                names |= {a.asname or a.name for a in node.names}
    return names


def _passes_args(call: ast.Call) -> bool:
    return any(isinstance(a, ast.Name) and a.id == "args" for a in [*call.args, *(k.value for k in call.keywords)])


def test_no_library_function_takes_an_argparse_namespace():
    entry = _entry_points()
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = _rel(path)
        if _is_command_module(rel):
            continue
        tree = ast.parse(path.read_text())
        allowed = entry.get(rel, set()) | ({"main"} if _has_main_guard(tree) else set())
        for fn in _functions(tree):
            if fn.name not in allowed and _uses_argparse(fn):
                bad.append(f"{rel}:{fn.lineno} {fn.name}()")
    assert not bad, ("these library functions take or use argparse objects; give them typed keyword arguments "
                     "and keep argparse in gmnae/commands/: " + ", ".join(bad))


def test_commands_hand_typed_arguments_to_the_library():
    entry = _entry_points()
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = _rel(path)
        tree = ast.parse(path.read_text())
        if not (_is_command_module(rel) or rel in entry or _has_main_guard(tree)):
            continue
        library = _library_names(tree, rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _passes_args(node):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in library:
                    bad.append(f"{rel}:{node.lineno} {name}(args…)")
    assert not bad, "the argparse Namespace is handed to library code: " + ", ".join(bad)
