"""`gmnae evaluate CKPT`: the training callback's merging evaluation, standalone, on a checkpoint.

    gmnae evaluate runs/digits-inr-scalegmn-small-s0/checkpoints/last.ckpt --split test --pairs 100

Prints the barrier table (method x pair type) and the K-way merge table (gmnae/evaluation/kway_eval.py:
K networks of one image / task merged by naive averaging, MergeMany and the autoencoder, next to
their parents' mean) and writes CSV, PNG and `report.html` to --out (default:
<run>/evaluate-<split>/). The run's `config.yaml` supplies the dataset (zoo, task data).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import GmnaeError
from ..weightspace.family import network_family


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a checkpoint written by gmnae train (e.g. runs/NAME/checkpoints/last.ckpt)")
    p.add_argument("--split", default="test", help="zoo split the pairs come from (default test)")
    p.add_argument("--pairs", type=int, help="pairs per pair type (default: the run's evaluation.pairs_per_type)")
    p.add_argument("--lambdas", type=int, help="points on the interpolation grid")
    p.add_argument("--zoo", help="zoo folder (default: the run's dataset.zoo)")
    p.add_argument("--config", help="run config (default: config.yaml of the checkpoint's run folder)")
    p.add_argument("--out", help="output folder (default <run>/evaluate-<split>)")
    p.add_argument("--device", default="auto", help="cpu, cuda (gpu), cuda:N or auto (default: cuda when there is one)")
    p.add_argument("--finetune", type=int, metavar="STEPS",
                   help="also every method's midpoint on independent pairs after STEPS fine-tune steps towards the "
                        "pair's mean function (default: the run's evaluation.finetune_steps)")
    p.add_argument("--fidelity-networks", type=int, default=1000, metavar="N",
                   help="CNN zoos: fidelity (own vs similar-accuracy vs another teacher, Kendall τ of accuracies, "
                        "latent-blind decoder) on up to N networks of the split, shown first (default 1000; 0: skip)")
    p.add_argument("--kway", default="2,4,8", help="K-way merge section: group sizes K (default 2,4,8; none: skip)")
    p.add_argument("--kway-groups", type=int, default=16, help="groups per K of the K-way section (default 16)")


def resolve_device(name: str) -> str:
    """cpu, cuda[:N] (gpu is an alias) or auto; a GPU that is not there is said so, not found out later."""
    import torch

    name = "cuda" + name[3:] if name.startswith("gpu") else name
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GmnaeError(f"--device {name}: this machine has no CUDA GPU torch can use; pass --device cpu (or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise GmnaeError(f"--device {name}: use cpu, cuda (or gpu), cuda:N or auto")
    return name


def run(args) -> int:
    import torch
    from omegaconf import OmegaConf

    from ..training.autoencoder import WeightSpaceAutoencoder
    from ..config.load import rename_legacy_keys
    from ..evaluation.merge_evaluation import MergeEvaluation
    from ..evaluation.kway_eval import KWayEvaluation, parse_ks
    from ..evaluation.report import write_evaluation
    from ..zoo.format import Zoo

    ckpt = Path(args.ckpt)
    if not ckpt.exists():
        raise GmnaeError(f"checkpoint {ckpt} does not exist; pass a .ckpt written by gmnae train")
    cfg_path = Path(args.config) if args.config else ckpt.parent.parent / "config.yaml"
    if not cfg_path.exists():
        raise GmnaeError(f"no run config at {cfg_path}; pass --config RUN/config.yaml")
    cfg = rename_legacy_keys(OmegaConf.load(cfg_path), "", str(cfg_path))  # a run saved before a key was renamed
    if args.pairs:
        cfg.evaluation.pairs_per_type = args.pairs
    if args.lambdas:
        cfg.evaluation.lambdas = args.lambdas
    if args.finetune is not None:
        if args.finetune < 0:
            raise GmnaeError(f"--finetune {args.finetune}: the number of steps must be >= 0")
        cfg.evaluation.finetune_steps = args.finetune
    device = resolve_device(args.device)
    try:
        model = WeightSpaceAutoencoder.load_from_checkpoint(ckpt, map_location=device)
    except Exception as e:  # a truncated or foreign file
        raise GmnaeError(f"cannot load {ckpt} as a gmnae checkpoint of this version ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else e!r})") from e
    zoo_path = Path(args.zoo or cfg.dataset.zoo)
    if not args.zoo and not (zoo_path / "manifest.json").is_file():
        raise GmnaeError(f"the run's zoo {zoo_path} (dataset.zoo in {cfg_path}) is not there; "
                         "if it moved, pass --zoo DIR")
    zoo = Zoo(zoo_path)
    if zoo.arch.layers != model.arch.layers:
        raise GmnaeError(f"zoo {zoo.root} holds {zoo.arch.describe()}, the checkpoint was trained on "
                         f"{model.arch.describe()}; pass --zoo")
    try:
        kway_ks = parse_ks(args.kway)
    except ValueError as e:
        raise GmnaeError(f"--kway {args.kway}: {e}; pass sizes like 2,4,8 (or none)") from e
    evaluation = MergeEvaluation.from_config(zoo, cfg, args.split)
    result = evaluation.run(model.eval())
    if network_family(zoo.arch).classifies and args.fidelity_networks:
        from ..evaluation.fidelity import zoo_split_fidelity

        result.reconstruction.update(zoo_split_fidelity(model, zoo, args.split, cfg.dataset.get("data_root"),
                                                        args.fidelity_networks, cfg.dataset.get("activation")))
    kway = (KWayEvaluation(zoo, args.split, kway_ks, args.kway_groups, cfg.seed, cfg.evaluation.max_iter,
                           cfg.dataset.get("data_root"), cfg.dataset.get("activation")).run(model)
            if kway_ks else None)
    out = Path(args.out) if args.out else ckpt.parent.parent / f"evaluate-{args.split}"
    pair_type = next(iter(evaluation.pair_sets))
    ckpt_meta = torch.load(ckpt, map_location="cpu", weights_only=False)
    write_evaluation(out / "eval", result, f"gmnae evaluate · {ckpt}", model, OmegaConf.to_yaml(cfg),
                     ckpt_meta.get("global_step", 0), ckpt_meta.get("epoch", 0),
                     sample=(evaluation.pair_sets[pair_type].arch, evaluation.sample_networks()[1]), split=args.split,
                     metrics_csv=ckpt.parent.parent / "csv" / "metrics.csv", extra_html=kway.html() if kway else "")
    summary = {"barriers": result.summary(), "reconstruction": result.reconstruction}
    if kway:
        summary["kway"] = {"rows": kway.rows, "notes": kway.notes}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(result.table())
    if kway:
        print(kway.table())
    for k, v in result.reconstruction.items():
        if "fidelity_" not in k:  # in the table above
            print(f"{k}: {v:.4f}")
    print(f"report: {out / 'report.html'}")
    return 0
