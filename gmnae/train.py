"""`gmnae train`: train a weight-space autoencoder on a zoo.

    gmnae train                                   # dataset=digits-inr, built first if missing
    gmnae train dataset=digits-cnn trainer.max_epochs=5 optim.lr=3e-4
    gmnae train --resume runs/digits-inr-scalegmn-small-s0      # continue from its last.ckpt
    gmnae train trainer=ddp trainer.devices=2                   # Lightning launches 2 processes
    torchrun --nproc_per_node=2 -m gmnae train trainer=ddp trainer.devices=2
    srun gmnae train trainer=slurm ...                          # see scripts/slurm/train.sbatch

Every run gets a folder `runs/<name>/` with the resolved `config.yaml`, `checkpoints/`
(`last.ckpt` and the best by validation loss), `tensorboard/`, `csv/metrics.csv` and the reports.
Bad input (unknown dataset, missing zoo, architecture mismatch, corrupt shard) stops with one line
before any training starts.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import load_config, save_config
from .errors import ConfigError, GmnaeError, ZooError
from .weightspace import named_architecture
from .zoo.format import MANIFEST, Zoo, missing_zoo_hint

RUN_DIR_ENV = "GMNAE_RUN_DIR"
VERIFY_FULL_BYTES = 1 << 30  # checksum every shard before training when the zoo is smaller than this


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (config from the run)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.epilog = "Overrides: key=value (dataset=NAME model=NAME trainer=NAME, any dotted key of configs/train.yaml)"


def _external_launch() -> bool:
    """True when another launcher (torchrun, srun, a Lightning parent) started several processes."""
    return any(int(os.environ.get(k, "1")) > 1 for k in ("WORLD_SIZE", "SLURM_NTASKS")) or "LOCAL_RANK" in os.environ


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The run folder, identical in every process of a run.

    An explicit run_name is used as is. Otherwise <dataset>-<model>-s<seed>, plus the SLURM job id
    under SLURM (so a requeued job finds its own folder). A single-process start that would reuse
    a taken folder gets the next free -vN, and exports the choice so processes that Lightning
    launches later inherit it instead of choosing again.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    runs = Path(cfg.runs_dir)
    name = cfg.run_name or f"{cfg.choices.dataset}-{cfg.choices.model}-s{cfg.seed}"
    if not cfg.run_name and os.environ.get("SLURM_JOB_ID"):
        name += f"-job{os.environ['SLURM_JOB_ID']}"
    path = runs / name
    if not cfg.run_name and not _external_launch() and cfg.ckpt_path is None and cfg.mode == "fit":
        v = 1
        while (path / "config.yaml").exists():
            v += 1
            path = runs / f"{name}-v{v}"
        os.environ[RUN_DIR_ENV] = str(path)
    return path


def check_dataset(cfg: DictConfig, build_missing: bool = True) -> Zoo:
    """Open the dataset's zoo — building it when it is a built-in one — and check it against the config."""
    ds = cfg.dataset
    root = Path(ds.zoo)
    if not (root / MANIFEST).exists():
        if ds.get("build") and build_missing and not _external_launch():
            from .zoo.forge import build_zoo

            print(f"zoo {root} is missing: building it (gmnae zoo build {ds.build}); interrupted builds resume")
            build_zoo(ds.build, root)
        elif ds.get("build"):
            raise ZooError(f"{missing_zoo_hint(root)} (build it before a multi-process launch)")
        else:
            raise ZooError(missing_zoo_hint(root))
    zoo = Zoo(root)
    if ds.get("architecture"):
        want = named_architecture(ds.architecture)
        if zoo.arch.layers != want.layers or zoo.arch.family != want.family:
            raise ZooError(f"zoo {root} holds {zoo.arch.describe()} but dataset {ds.name} expects "
                           f"{want.describe()}; point dataset.zoo at the right zoo")
    if ds.kind != ("inr" if zoo.arch.family == "siren" else "cnn"):
        raise ZooError(f"zoo {root} holds {zoo.arch.family} networks but dataset {ds.name} is of kind {ds.kind}; "
                       "point dataset.zoo at the right zoo")
    for split in ("train", "val"):
        if split not in zoo.splits:
            raise ZooError(f"zoo {root} has no {split!r} split (it has {', '.join(zoo.splits)}); rebuild or re-import it")
    size = sum(s.path.stat().st_size for sp in zoo.splits for s in zoo.shards(sp) if s.path.exists())
    if size < VERIFY_FULL_BYTES:
        from .zoo.verify import verify_zoo

        verify_zoo(root)
    else:
        _check_structure(zoo)
    return zoo


def _check_structure(zoo: Zoo) -> None:
    """Large zoos: every shard exists and opens with the right shape (checksums: `gmnae zoo verify`)."""
    for split in zoo.splits:
        for shard in zoo.shards(split):
            f = zoo._open(shard)
            with f:
                if f["params"].shape != (shard.count, zoo.arch.n_params):
                    raise ZooError(f"shard {shard.path} holds {f['params'].shape}, manifest says "
                                   f"({shard.count}, {zoo.arch.n_params}); rebuild or re-import the zoo")


def check_task_data(cfg: DictConfig, zoo: Zoo) -> None:
    """CNN zoos need task images; say exactly which files are missing before training starts."""
    if cfg.dataset.kind != "cnn":
        return
    from .tasks.classification import task_images

    for split in ("train", "test"):
        task_images(zoo.task, split, cfg.dataset.get("data_root"))


def build_model(cfg: DictConfig, zoo: Zoo):
    import torch

    from .autoencoder import WeightSpaceAutoencoder

    arch = zoo.arch.with_activation(cfg.dataset.activation) if cfg.dataset.get("activation") else zoo.arch
    sample = zoo.read_params("train", limit=4096)  # decoder output / encoder input statistics (checkpointed)
    probe = OmegaConf.to_container(cfg.model.probe) if cfg.model.get("probe") else None
    if cfg.task != "autoencode":
        model = build_predictor(cfg, zoo, arch, probe)
    else:
        model = WeightSpaceAutoencoder(param_stats=(sample.mean(0), sample.std(0)), probe=probe,
            arch=arch.to_dict(), kind=cfg.dataset.kind,
            encoder=OmegaConf.to_container(cfg.model.encoder), decoder=OmegaConf.to_container(cfg.model.decoder),
            optim=OmegaConf.to_container(cfg.optim), loss=OmegaConf.to_container(cfg.loss), task=zoo.task,
            data_root=cfg.dataset.get("data_root"), resolution=cfg.dataset.get("resolution", 28))
    model.encoder.set_input_scale(torch.from_numpy(sample))
    if model.probe is not None and arch.family != "siren":  # CNN probes: a seeded set of training images
        from .tasks.classification import task_images

        images = task_images(zoo.task, "train", cfg.dataset.get("data_root"))[0]
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[:len(model.probe.inputs)]
        model.probe.set_inputs(images[pick])
    return model


def task_targets(cfg: DictConfig, zoo: Zoo) -> dict:
    """The downstream task's target of every network, per split (the label or the stored test accuracy)."""
    from .predictor import TARGET_KEY

    key = TARGET_KEY[cfg.task]
    out = {}
    for split in ("train", "val", "test"):
        if split not in zoo.splits:
            continue
        meta = zoo.read_meta(split)
        if key not in meta:
            raise ZooError(f"zoo {zoo.root} has no {key!r} per network: task={cfg.task} needs it "
                           f"({'an INR zoo with labels' if key == 'label' else 'a CNN zoo with test accuracies'})")
        out[split] = meta[key]
    return out


def build_predictor(cfg: DictConfig, zoo: Zoo, arch, probe):
    from .predictor import WeightSpacePredictor

    targets = task_targets(cfg, zoo)
    n_classes = int(max(t.max() for t in targets.values())) + 1 if cfg.task == "classify" else 1
    return WeightSpacePredictor(arch=arch.to_dict(), task=cfg.task, encoder=OmegaConf.to_container(cfg.model.encoder),
                                optim=OmegaConf.to_container(cfg.optim), n_classes=n_classes, probe=probe,
                                targets=targets)


def run_baselines(cfg: DictConfig, zoo: Zoo, run_dir: Path, probe_points: int = 64) -> list[dict]:
    """Fit the downstream baselines on this run's splits; write `baselines.csv` in the run folder."""
    import csv

    import numpy as np
    import torch

    from .baselines import fit_baselines, probe_inputs

    targets = task_targets(cfg, zoo)
    splits = {}
    for split, y in targets.items():
        params = torch.from_numpy(zoo.read_params(split))
        codes = None
        if zoo.arch.activation == "mixed":
            from .weightspace import ACTIVATIONS

            codes = torch.tensor([ACTIVATIONS.index(a) for a in zoo.activations(split)])
        splits[split] = (params, y, codes)
    images = None
    if zoo.arch.family != "siren":
        from .tasks.classification import task_images

        images = task_images(zoo.task, "train", cfg.dataset.get("data_root"))[0]
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


def build_datamodule(cfg: DictConfig):
    from .datamodule import ZooDataModule

    d = cfg.data
    return ZooDataModule(cfg.dataset.zoo, batch_size=d.batch_size, val_batch_size=d.val_batch_size,
                         num_workers=d.num_workers, shuffle_buffer=d.shuffle_buffer, pin_memory=d.pin_memory,
                         activation=cfg.dataset.get("activation"), limit_train_networks=d.limit_train_networks,
                         seed=cfg.seed, data_root=cfg.dataset.get("data_root"))


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks_extra=()):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .callbacks import CheckpointOnInterrupt, build_callbacks

    import warnings

    # The datamodule records how far into an epoch a checkpoint was written and skips those batches
    # on resume (ZooDataModule.state_dict), which Lightning's check of the loader itself cannot see.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    # No version counter: there is one last.ckpt, the newest, whatever checkpoint settings a resumed
    # run uses (with it, a resume with other settings writes last-v1.ckpt and last.ckpt goes stale).
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}-{step:06d}",
                           monitor=cfg.checkpoint.monitor, mode=cfg.checkpoint.mode,
                           save_top_k=cfg.checkpoint.save_top_k, save_last=True, enable_version_counter=False)
    callbacks_steps = []
    if cfg.checkpoint.get("every_n_train_steps"):
        callbacks_steps.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                                               every_n_train_steps=cfg.checkpoint.every_n_train_steps,
                                               enable_version_counter=False))
    evaluation = build_callbacks(cfg, run_dir) if cfg.task == "autoencode" else []  # merging needs a decoder
    callbacks = [ckpt, *callbacks_steps, CheckpointOnInterrupt(run_dir / "checkpoints" / "last.ckpt"),
                 LearningRateMonitor(logging_interval="step"), *evaluation, *callbacks_extra]
    loggers = [TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False),
               CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    kw = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if v is not None}
    if kw.get("strategy") == "ddp" and kw.get("accelerator") in ("cpu", "auto"):
        import torch

        if kw.get("accelerator") == "cpu" or not torch.cuda.is_available():
            from lightning.pytorch.strategies import DDPStrategy

            kw["strategy"] = DDPStrategy(process_group_backend="gloo")
    return L.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers, **kw)


def prepare(cfg: DictConfig) -> tuple[Path, Zoo]:
    """Everything that can fail on bad input, before Lightning starts anything."""
    zoo = check_dataset(cfg)
    check_task_data(cfg, zoo)
    return resolve_run_dir(cfg), zoo


def train(cfg: DictConfig) -> Path:
    exported = RUN_DIR_ENV in os.environ
    try:
        return _train(cfg)
    finally:
        if not exported:  # the choice was for this run's processes only
            os.environ.pop(RUN_DIR_ENV, None)


def _train(cfg: DictConfig) -> Path:
    import lightning as L
    import torch

    run_dir, zoo = prepare(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    model = build_model(cfg, zoo)
    dm = build_datamodule(cfg)
    trainer = build_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        save_config(cfg, run_dir / "config.yaml")
    ckpt_path = cfg.ckpt_path
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.exists():
            raise GmnaeError(f"no checkpoint to resume at {last}; start the run without ckpt_path=last")
        ckpt_path = str(last)
    if cfg.mode == "validate":
        metrics = trainer.validate(model, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
        if trainer.is_global_zero:
            out = run_dir / "validate_metrics.json"
            out.write_text(json.dumps(metrics[0], indent=2))
            print(json.dumps(metrics[0]))
    else:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        baselines = None
        if cfg.task != "autoencode" and cfg.baselines and trainer.is_global_zero and not ckpt_path:
            baselines = run_baselines(cfg, zoo, run_dir)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        except SIGTERMException:
            raise SystemExit(143) from None  # 128 + SIGTERM: schedulers see the run was stopped
        if cfg.task != "autoencode":
            write_task_results(cfg, trainer, model, dm, run_dir, baselines)
        if trainer.is_global_zero:
            print(f"run folder: {run_dir}")
    return run_dir


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


def run(args) -> int:
    overrides = list(args.extra)
    base = None
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"{saved} does not exist: --resume takes a run folder made by gmnae train")
        base = OmegaConf.load(saved)
        overrides = [f"run_name={run_dir.name}", f"runs_dir={run_dir.parent}", "ckpt_path=last", *overrides]
    cfg = load_config(overrides, base=base)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    if cfg.mode not in ("fit", "validate"):
        raise ConfigError(f"mode={cfg.mode!r}: use fit or validate")
    if cfg.task not in ("autoencode", "classify", "predict-accuracy"):
        raise ConfigError(f"task={cfg.task!r}: use autoencode, classify or predict-accuracy")
    train(cfg)
    return 0
