"""Downstream tasks (`task=classify`, `task=predict-accuracy`): the baselines fitted on the run's splits
(`baselines.csv`) and the encoder's scores next to them (`results.json`)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ..training.model_builder import task_targets


def run_baselines(cfg: DictConfig, dm, run_dir: Path, probe_points: int = 64) -> list[dict]:
    """Fit the downstream baselines on this run's splits; write `baselines.csv` in the run folder."""
    import csv

    import torch

    from .baselines import fit_baselines, probe_inputs

    zoo = dm.zoo
    targets = task_targets(cfg, zoo)
    splits = {}
    for split, y in targets.items():
        params = torch.from_numpy(zoo.read_params(split))
        codes = None
        if zoo.arch.activation == "mixed":
            from ..weightspace.registry import codes_of

            codes = codes_of(zoo.activations(split))
        splits[split] = (params, y, codes)
    images = dm.task_images("train")[0] if dm.family.classifies else None
    rows = fit_baselines(zoo.arch, cfg.task, splits, probe=probe_inputs(zoo.arch, images, probe_points), seed=cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "baselines.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    metric = "accuracy" if cfg.task == "classify" else "Kendall tau"
    print(f"baselines ({metric}; fitted on train): " + "; ".join(
        f"{r['baseline']} " + " ".join(f"{s} {r[s]:.3f}" for s in splits if s != "train") for r in rows))
    return rows


def write_task_results(cfg: DictConfig, trainer, model, dm, run_dir: Path, baselines) -> None:
    """The encoder's val and test scores next to the baselines: `results.json` in the run folder."""
    metric = "accuracy" if cfg.task == "classify" else "kendall_tau"
    row = {"baseline": "encoder", "model": "ScaleGMN" + (" + probe" if getattr(model, "probe", None) else "")}
    for split in ("val", "test"):
        if split == "test" and "test" not in dm.zoo.splits:
            continue
        run = trainer.validate if split == "val" else trainer.test
        row[split] = run(model, datamodule=dm, verbose=False)[0][f"{split}/{metric}"]
    if trainer.is_global_zero:
        table = [row, *(baselines or [])]
        (run_dir / "results.json").write_text(json.dumps({"task": cfg.task, "metric": metric, "rows": table}, indent=2))
        print(f"{cfg.task} ({metric}): " + "; ".join(
            f"{r['baseline']} val {r.get('val', float('nan')):.3f} test {r.get('test', float('nan')):.3f}" for r in table))
