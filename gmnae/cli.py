"""`gmnae` command line: train, evaluate, merge, report, zoo (build | info | verify | export | import).

    gmnae zoo build digits-inr            # train the built-in INR zoo (resumable)
    gmnae train dataset=digits-inr        # OmegaConf overrides as key=value
    gmnae train -m seed=0,1,2             # a sweep: one run per combination
    gmnae report runs/<sweep>             # its table: mean ± std over seeds
    gmnae merge a.pt b.pt --method wm-signed --out merged.pt
    gmnae evaluate runs/<run>/checkpoints/last.ckpt

Each subcommand lives in its own module with `add_arguments(parser)` and `run(args)`; modules are
imported only when their command runs, so `gmnae zoo info` does not pay for Lightning's import.
The benchmarks are not part of the installed package: `make bench` (`python -m benchmarks` in the checkout).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import GmnaeError

# command -> (module, help)
COMMANDS = {
    "train": ("gmnae.commands.train", "train an autoencoder: gmnae train dataset=NAME key=value ..."),
    "evaluate": ("gmnae.commands.evaluate", "interpolation/barrier evaluation of a trained checkpoint"),
    "merge": ("gmnae.commands.merge", "merge networks: weight matching (two), MergeMany or the autoencoder (K)"),
    "report": ("gmnae.commands.report", "one table of runs' final metrics, mean ± std over seeds: gmnae report RUN|SWEEP ..."),
}
ZOO_COMMANDS = {
    "build": ("gmnae.zoo.commands", "build", "train a built-in zoo of the catalogue, resumably (the names: gmnae zoo build -h)"),
    "info": ("gmnae.zoo.commands", "info", "architecture, counts and metric summary of a zoo"),
    "verify": ("gmnae.zoo.commands", "verify", "recompute checksums, reject NaN/Inf parameters"),
    "export": ("gmnae.zoo.export", "export", "one network as a state dict file for gmnae merge: ZOO --index I --out a.pt"),
}
IMPORT_COMMANDS = {
    "small-cnn-zoo": ("gmnae.zoo.import_small_cnn_zoo", "import the CIFAR-10 Small CNN Zoo (Unterthiner et al.)"),
    "mnist-inr": ("gmnae.zoo.import_mnist_inr", "import the DWSNets MNIST-INR zoo"),
}


def _version() -> str:
    from . import __version__

    return __version__


def _attach(sub, name, module, help, prefix=""):
    p = sub.add_parser(name, help=help, description=help)
    mod = importlib.import_module(module)
    getattr(mod, f"add_{prefix}arguments")(p)
    p.set_defaults(_run=getattr(mod, f"run{('_' + prefix.rstrip('_')) if prefix else ''}"))
    return p


def _zoo_epilog() -> str:
    """The catalogue's zoos and how to get each, for `gmnae --help` (imports the catalogue: only when asked)."""
    from .zoo.catalogue import CATALOGUE

    width = max(len(z.name) for z in CATALOGUE)
    lines = ["zoos (gmnae train dataset=NAME; a missing built-in one is built with --build-zoo):"]
    lines += [f"  {z.name:<{width}}  {z.how_to_get().replace('`', '')}" for z in CATALOGUE]
    return "\n".join(lines)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    asks_help = not argv or argv[0] in ("-h", "--help")
    parser = argparse.ArgumentParser(prog="gmnae", description=__doc__.split("\n\n")[0],
                                     epilog=_zoo_epilog() if asks_help else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gmnae {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join([*COMMANDS, "zoo"]) + "}")
    # Import only the module of the command being run (argv[0]), but list every command in --help.
    wanted = argv[0] if argv else None
    for name, (module, help) in COMMANDS.items():
        if name == wanted:
            _attach(sub, name, module, help)
        else:
            sub.add_parser(name, help=help, add_help=False)
    zoo = sub.add_parser("zoo", help="build, inspect, verify and import zoos")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True,  # the usage line lists them when none is given
                              metavar="{" + ",".join([*ZOO_COMMANDS, "import"]) + "}")
    zwanted = argv[1] if len(argv) > 1 and wanted == "zoo" else None
    for name, (module, fn, help) in ZOO_COMMANDS.items():
        if name == zwanted:
            _attach(zsub, name, module, help, prefix=f"{fn}_")
        else:
            zsub.add_parser(name, help=help, add_help=False)
    imp = zsub.add_parser("import", help="import a published zoo from files on disk")
    isub = imp.add_subparsers(dest="import_command", required=True, metavar="{" + ",".join(IMPORT_COMMANDS) + "}")
    iwanted = argv[2] if len(argv) > 2 and zwanted == "import" else None
    for name, (module, help) in IMPORT_COMMANDS.items():
        if name == iwanted:
            _attach(isub, name, module, help)
        else:
            isub.add_parser(name, help=help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, rest = parser.parse_known_args(argv)
    if not hasattr(args, "_run"):
        parser.parse_args(argv)  # prints the sub-command's usage
        return 2
    args.extra = rest  # `gmnae train` takes free key=value overrides
    from .threads import apply_threads

    apply_threads()  # torch threads from the CPUs we may use and the machine's load (gmnae/threads.py)
    if rest and not getattr(args, "_accepts_overrides", False) and args.command != "train":
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not in Python's flush at exit
        return code
    except BrokenPipeError:
        # the reader stopped early (`gmnae report runs/ | head -1`): not an error. Point stdout at devnull so
        # that Python's final flush does not raise again (the recipe of the `signal` module's documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except GmnaeError as e:
        print(f"gmnae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmnae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
