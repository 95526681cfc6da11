"""`gmnae zoo build | info | verify`."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ..weightspace.registry import ACTIVATIONS
from .format import Zoo
from .verify import verify_zoo


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    from .catalogue import forged

    p.add_argument("name", help="built-in zoo: " + "; ".join(f"{z.name} ({z.help})" for z in forged()))
    p.add_argument("--out", help="zoo folder (default zoo/NAME)")
    p.add_argument("--src", help="fmnist-inr / mnist-inr: folder with the four IDX files, gzipped or not "
                                 "(fmnist-inr default: /usr/share/datasets/fashion-mnist, from "
                                 "`apt-get install dataset-fashion-mnist`)")
    p.add_argument("--size", type=int, help="INR zoos: number of images; CNN zoos: number of networks")
    p.add_argument("--seeds", type=int, help="INR zoos: INRs per image (digits-inr 2, mnist5k-inr 1)")
    p.add_argument("--init", choices=("independent", "shared"),
                   help="mnist5k-inr: every INR from its own random init (default) or all from one")
    p.add_argument("--steps", type=int, help="training steps per network")
    p.add_argument("--block-size", type=int, dest="block_size", help="networks trained together per block")
    p.add_argument("--seed", type=int, help="zoo seed (default 0)")
    p.add_argument("--activations", nargs="+", choices=ACTIVATIONS, metavar="ACT",
                   help=f"CNN zoos: activations drawn per network, any of {', '.join(ACTIVATIONS)} "
                        "(default relu tanh; one gives a single-activation zoo)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true")


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a scheduler's stop), raised where the build is, so it stops the way Ctrl-C stops it."""


@contextlib.contextmanager
def resumable(what: str):
    """Ctrl-C or SIGTERM during `what` (a build or import that resumes when rerun): one line saying so, and the
    exit code of the signal (130, 143)."""
    def on_sigterm(signum, frame):
        raise Terminated()

    in_main = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        yield
    except KeyboardInterrupt as e:
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"gmnae: {how}; the {what} resumes where it stopped: run the same command again", file=sys.stderr)
        raise SystemExit(143 if isinstance(e, Terminated) else 130) from None
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def run_build(args) -> int:
    from ..errors import GmnaeError
    from .catalogue import forged
    from .forge import IDX_ZOOS, build_zoo

    for flag in ("size", "seeds", "steps", "block_size", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:  # 0 would silently mean "all" (--size) or divide by zero (--block-size)
            raise GmnaeError(f"--{flag.replace('_', '-')} {value}: must be at least 1 (leave it out for the default)")

    activations = getattr(args, "activations", None)
    drawing = [z.name for z in forged() if "activations" in z.forge_config.__dataclass_fields__]
    if activations and args.name not in drawing:  # only a forge that draws activations takes them
        raise GmnaeError(f"--activations is for the CNN zoos that draw each network's activation "
                         f"({', '.join(drawing)}); {args.name} is not one")
    if getattr(args, "src", None) and args.name not in IDX_ZOOS:
        raise GmnaeError(f"--src is for the zoos fitted to IDX image files ({', '.join(IDX_ZOOS)}); "
                         f"{args.name} ships its own images")
    with resumable("build"):
        out = build_zoo(args.name, args.out, progress=not args.no_progress, threads=args.threads, size=args.size,
                        seeds=args.seeds, steps=args.steps, block_size=args.block_size, seed=args.seed,
                        init=getattr(args, "init", None), src=getattr(args, "src", None),
                        activations=tuple(activations) if activations else None)
    counts = verify_zoo(out)
    print(f"verified {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("zoo", help="zoo folder")


def run_info(args) -> int:
    print(Zoo(args.zoo).summary())
    return 0


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("zoo", help="zoo folder")
    p.add_argument("--no-finite-check", action="store_true", help="only checksums and shapes")


def run_verify(args) -> int:
    counts = verify_zoo(args.zoo, check_finite=not args.no_finite_check)
    print(f"ok: {args.zoo}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " networks, checksums match, all finite")
    return 0
