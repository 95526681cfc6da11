"""`gmnae train`: train a weight-space autoencoder on a zoo.

    gmnae train                                   # dataset=digits-inr, built first if missing
    gmnae train dataset=digits-cnn trainer.max_epochs=5 optim.lr=3e-4
    gmnae train --resume runs/digits-inr-scalegmn-small-s0      # continue from its last.ckpt
    gmnae train trainer=ddp trainer.devices=2                   # Lightning launches 2 processes
    torchrun --nproc_per_node=2 -m gmnae train trainer=ddp trainer.devices=2
    srun gmnae train trainer=slurm ...                          # see scripts/slurm/train.sbatch

Every run gets a folder `runs/<name>/` with the resolved `config.yaml`, `checkpoints/`
(`last.ckpt` and the best by validation loss), `tensorboard/`, `csv/metrics.csv` and the reports.
A resume appends to the logs and writes `config.yaml` only once its checkpoint has loaded;
`mode=validate ckpt_path=…` writes into `RUN/validate-<checkpoint>-<time>/`, never into the run.
Bad input (unknown dataset, missing zoo, architecture mismatch, corrupt shard) stops with one line
before any training starts. A missing zoo is built only with `--build-zoo` (`make train`).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import load_config
from .errors import ConfigError, GmnaeError, ZooError, check_writable
from .weightspace import named_architecture
from .zoo.format import MANIFEST, Zoo, missing_zoo_hint

RUN_DIR_ENV = "GMNAE_RUN_DIR"
VERIFY_FULL_BYTES = 1 << 30  # checksum every shard before training when the zoo is smaller than this


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (config from the run)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="sweep: key=a,b,c values are run one after another, every combination in its own run "
                        "(gmnae/sweep.py); the runs and a sweep.json land in runs_dir/<name>-sweep/")
    p.add_argument("--build-zoo", action="store_true",
                   help="build a built-in dataset's zoo (digits-inr, digits-cnn) at its default path when it is "
                        "missing (what `make train` does); otherwise a missing zoo stops the run")
    from .config import available

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (f"datasets: {', '.join(available('dataset'))} (dataset=NAME; default digits-inr)\n"
                f"models: {', '.join(available('model'))}   trainers: {', '.join(available('trainer'))}\n"
                f"experiments (recipes): {', '.join(available('experiment'))} (experiment=NAME)\n"
                "overrides: key=value, any dotted key of configs/train.yaml (gmnae train --print-config shows them)\n"
                "sweeps: gmnae train -m seed=0,1,2 model.encoder.symmetry=permutation,sign runs every combination;\n"
                "  a literal list stays in brackets (model.decoder.hidden=[64,128]); gmnae report SWEEP_DIR tabulates\n"
                "run folder: runs_dir/run_name (default runs/<dataset>-<model>-s<seed>, or <experiment>-s<seed>;\n"
                "  -vN when taken): config.yaml, checkpoints/, tensorboard/, csv/metrics.csv, report.html; its path\n"
                "  is printed when the run starts")


def _external_launch() -> bool:
    """True when another launcher (torchrun, srun, a Lightning parent) started several processes."""
    return any(int(os.environ.get(k, "1")) > 1 for k in ("WORLD_SIZE", "SLURM_NTASKS")) or "LOCAL_RANK" in os.environ


def resolve_run_dir(cfg: DictConfig, ckpt: Path | None = None) -> Path:
    """The run folder, identical in every process of a run.

    An explicit run_name is used as is. Otherwise <dataset>-<model>-s<seed> (<experiment>-s<seed>), plus the SLURM job id
    under SLURM (so a requeued job finds its own folder). A single-process start that would reuse
    a taken folder gets the next free -vN, and exports the choice so processes that Lightning
    launches later inherit it instead of choosing again. A validation gets a folder of its own.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if cfg.mode == "validate":
        return _validation_dir(cfg, ckpt)
    runs, name = Path(cfg.runs_dir), run_name(cfg)
    path = runs / name
    if not cfg.run_name and not _external_launch() and cfg.ckpt_path is None and cfg.mode == "fit":
        v = 1
        while (path / "config.yaml").exists():
            v += 1
            path = runs / f"{name}-v{v}"
        os.environ[RUN_DIR_ENV] = str(path)
    return path


def run_name(cfg: DictConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    name = f"{default_stem(cfg)}-s{cfg.seed}"
    return name + (f"-job{os.environ['SLURM_JOB_ID']}" if os.environ.get("SLURM_JOB_ID") else "")


def default_stem(cfg: DictConfig) -> str:
    """A run's default name less its seed: the experiment recipe's name, else <dataset>-<model>."""
    return cfg.choices.get("experiment") or f"{cfg.choices.dataset}-{cfg.choices.model}"


def _validation_dir(cfg: DictConfig, ckpt: Path) -> Path:
    """`RUN/validate-<checkpoint>-<UTC time>/` beside the run the checkpoint belongs to (else in runs_dir):
    a validation never writes into the run's own config or logs. Processes started by an outside
    launcher (torchrun, srun) cannot share one clock reading: they use `validate-<checkpoint>[-job<id>]`."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path(cfg.runs_dir)
    name = f"validate-{ckpt.stem}"
    if _external_launch():
        return run / (name + (f"-job{os.environ['SLURM_JOB_ID']}" if os.environ.get("SLURM_JOB_ID") else ""))
    path = run / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    while path.exists():  # two validations in one second
        path = path.with_name(path.name + "-2")
    os.environ[RUN_DIR_ENV] = str(path)  # Lightning-launched ranks inherit it
    return path


def resolve_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint to start from, checked to be whole: a truncated file stops here, before a file is written."""
    if cfg.ckpt_path is None:
        if cfg.mode == "validate":
            raise ConfigError("mode=validate needs ckpt_path=PATH (a .ckpt written by gmnae train), "
                              "or --resume RUN mode=validate for the run's last.ckpt")
        return None
    if cfg.ckpt_path == "last":
        path = Path(cfg.runs_dir) / run_name(cfg) / "checkpoints" / "last.ckpt"
        if not path.exists():
            raise GmnaeError(f"no checkpoint to resume at {path}; start the run without ckpt_path=last")
    else:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise GmnaeError(f"ckpt_path {path} is not a file; pass a .ckpt written by gmnae train")
    try:  # torch checkpoints are zip files: a whole one has its directory and every member's CRC right
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        bad = str(e)
    if bad:
        raise GmnaeError(f"checkpoint {path} is damaged or truncated ({bad}); resume from another one with "
                         f"ckpt_path=PATH (e.g. a best-*.ckpt beside it)")
    return path.resolve()


def builds_missing_zoo(cfg: DictConfig, build_zoo: bool) -> bool:
    """Whether a missing zoo is built here: only when the user asked (`--build-zoo`, which `make train`
    passes), for a built-in dataset at the zoo path its file names -- a moved or mistyped path, an
    empty folder elsewhere or a resume from another folder must not start a build of many minutes."""
    ds = cfg.dataset
    if not (build_zoo and ds.get("build")) or _external_launch():
        return False
    from .config import dataset_file

    return Path(ds.zoo) == Path(dataset_file(cfg.choices.dataset).zoo).absolute()


def check_dataset(cfg: DictConfig, build_zoo: bool = False) -> Zoo:
    """Open the dataset's zoo -- building a missing built-in one only when asked -- and check it against the config."""
    ds = cfg.dataset
    root = Path(ds.zoo)
    if root.is_file():
        raise ZooError(f"dataset.zoo {root} is a file, not a zoo folder; point dataset.zoo at the folder "
                       f"that holds {MANIFEST}")
    if not (root / MANIFEST).exists():
        if builds_missing_zoo(cfg, build_zoo):
            from .zoo.forge import build_zoo as build

            print(f"zoo {root} is missing: building it (gmnae zoo build {ds.build}); interrupted builds resume")
            build(ds.build, root)
        elif ds.get("build"):
            raise ZooError(f"no zoo at {root} (no {MANIFEST}); build it with `gmnae zoo build {ds.build} --out {root}` "
                           f"(or `make train` for the default path), or point dataset.zoo at your zoo")
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
    from .datamodule import statistics_sample

    sample = statistics_sample(zoo, cfg.dataset.get("activation"))  # decoder output / encoder input statistics
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
    from lightning.pytorch.loggers import TensorBoardLogger

    from .callbacks import CheckpointOnInterrupt, build_callbacks
    from .csv_log import AppendingCSVLogger
    from .quiet import quiet_lightning

    quiet_lightning()  # tips and known-harmless warnings (gmnae/quiet.py)
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
               AppendingCSVLogger(save_dir=str(run_dir), name="csv", version="")]
    kw = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if v is not None}
    if kw.get("strategy") == "ddp" and kw.get("accelerator") in ("cpu", "auto"):
        import torch

        if kw.get("accelerator") == "cpu" or not torch.cuda.is_available():
            from lightning.pytorch.strategies import DDPStrategy

            kw["strategy"] = DDPStrategy(process_group_backend="gloo")
    return L.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers, **kw)


def check_checkpoint_fits(model, ckpt: Path) -> None:
    """Load the checkpoint's weights into the model before Lightning starts: Lightning creates the run's
    log files before it restores, so a model built with other settings must be refused here."""
    import torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
    except Exception as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # torch: header, then causes
        raise GmnaeError(f"cannot resume from {ckpt} ({detail[:200]}); the run folder is unchanged; "
                         "use the settings the run was trained with") from e


def prepare(cfg: DictConfig, build_zoo: bool = False) -> tuple[Path, Zoo, Path | None]:
    """Everything that can fail on bad input, before Lightning starts anything or a file is written."""
    zoo = check_dataset(cfg, build_zoo)
    check_task_data(cfg, zoo)
    ckpt = resolve_checkpoint(cfg)
    run_dir = resolve_run_dir(cfg, ckpt)
    check_writable(run_dir, f"run folder {run_dir} (runs_dir={cfg.runs_dir})")
    return run_dir, zoo, ckpt


def train(cfg: DictConfig, build_zoo: bool = False) -> Path:
    exported = RUN_DIR_ENV in os.environ
    try:
        return _train(cfg, build_zoo)
    finally:
        if not exported:  # the choice was for this run's processes only
            os.environ.pop(RUN_DIR_ENV, None)


def _train(cfg: DictConfig, build_zoo: bool) -> Path:
    import lightning as L
    import torch

    from .callbacks import SaveRunConfig
    from .threads import apply_threads

    devices = cfg.trainer.get("devices", 1)
    cpu_ranks = devices if cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int) else 1
    # the `threads` key, else GMNAE_THREADS / OMP_NUM_THREADS / the CPUs and load, shared by CPU DDP ranks
    apply_threads(cfg.threads, processes=cpu_ranks)
    run_dir, zoo, ckpt = prepare(cfg, build_zoo)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0:
        print(f"{'validation' if cfg.mode == 'validate' else 'run'} folder: {run_dir}", flush=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    model = build_model(cfg, zoo)
    if ckpt:
        check_checkpoint_fits(model, ckpt)
    dm = build_datamodule(cfg)
    # config.yaml is written once the checkpoint has been restored: a resume that fails leaves the run as it was
    saved = SaveRunConfig(cfg, run_dir / "config.yaml")
    trainer = build_trainer(cfg, run_dir, (saved,))
    ckpt_path = str(ckpt) if ckpt else None
    if cfg.mode == "validate":
        metrics = trainer.validate(model, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
        if trainer.is_global_zero:
            (run_dir / "validate_metrics.json").write_text(json.dumps(metrics[0], indent=2))
            print(json.dumps(metrics[0]))
            print(f"validation folder: {run_dir}")
    else:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        baselines = None
        if cfg.task != "autoencode" and cfg.baselines and trainer.is_global_zero and not ckpt_path:
            baselines = run_baselines(cfg, zoo, run_dir)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        except SIGTERMException:
            raise SystemExit(143) from None  # 128 + SIGTERM: schedulers see the run was stopped
        except Exception as e:
            if ckpt and not saved.done:  # Lightning could not restore the checkpoint into this model
                raise GmnaeError(f"cannot resume from {ckpt} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                 "the run folder is unchanged; resume with the settings the run was trained with") from e
            raise
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
    if args.multirun:
        from .sweep import run_sweep

        if args.resume:
            raise ConfigError("--resume continues one run; resume a sweep's runs one by one "
                              "(gmnae train --resume SWEEP_DIR/RUN)")
        return run_sweep(overrides, print_config=args.print_config, build_zoo=args.build_zoo)
    base = None
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"{saved} does not exist: --resume takes a run folder made by gmnae train")
        base = OmegaConf.load(saved)
        # mode=fit: a config saved by an older validation must not turn the resume into one
        overrides = [f"run_name={run_dir.name}", f"runs_dir={run_dir.parent}", "ckpt_path=last", "mode=fit", *overrides]
    cfg = load_config(overrides, base=base, base_origin=str(saved) if base is not None else "")
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    train(cfg, build_zoo=args.build_zoo)
    return 0
