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
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..config.load import load_config, parse_overrides
from ..evaluation.downstream_results import run_baselines, write_task_results
from ..errors import ConfigError, GmnaeError, check_writable
from ..training.model_builder import build_model
from ..training.run_folder import RUN_DIR_ENV, check_checkpoint_fits, resolve_checkpoint, resolve_run_dir
from .trainer_setup import build_trainer, launcher_rank  # build_trainer: a module attribute tests instrument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (config from the run)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--config-dir", metavar="DIR", action="append", default=[],
                   help="your own config folder (train.yaml, dataset/, model/, trainer/, experiment/), read before "
                        "the shipped configs; repeatable; also $GMNAE_CONFIG_PATH (docs/configuration.md)")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="sweep: key=a,b,c values are run one after another, every combination in its own run "
                        "(gmnae/commands/sweep.py); the runs and a sweep.json land in runs_dir/<name>-sweep/")
    from ..zoo.catalogue import buildable

    p.add_argument("--build-zoo", action="store_true",
                   help=f"build a built-in dataset's zoo ({', '.join(z.name for z in buildable())}) at its default "
                        "path when it is missing (what `make train` does); otherwise a missing zoo stops the run")
    from ..config.load import available

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    try:
        available("dataset")
    except ConfigError:  # a missing $GMNAE_CONFIG_PATH folder: reported in one line when the command runs
        return
    p.epilog = (f"datasets: {', '.join(available('dataset'))} (dataset=NAME; default digits-inr)\n"
                f"models: {', '.join(available('model'))}   trainers: {', '.join(available('trainer'))}\n"
                f"experiments (recipes): {', '.join(available('experiment'))} (experiment=NAME)\n"
                "overrides: key=value, any dotted key of gmnae/configs/train.yaml (gmnae train --print-config shows them)\n"
                "sweeps: gmnae train -m seed=0,1,2 model.encoder.symmetry=permutation,sign runs every combination;\n"
                "  a literal list stays in brackets (model.decoder.hidden=[64,128]); gmnae report SWEEP_DIR tabulates\n"
                "run folder: runs_dir/run_name (default runs/<dataset>-<model>-s<seed>, or <experiment>-s<seed>;\n"
                "  -vN when taken): config.yaml, checkpoints/, tensorboard/, csv/metrics.csv, report.html; its path\n"
                "  is printed when the run starts")


def prepare(cfg: DictConfig, build_zoo: bool = False) -> tuple[Path, "ZooDataModule", Path | None]:
    """Everything that can fail on bad input, before Lightning starts anything or a file is written: the
    datamodule's zoo checks (`prepare_data`), the checkpoint, the run folder."""
    from ..data.datamodule import ZooDataModule  # lightning: imported when a run starts, not for --help

    dm = ZooDataModule.from_config(cfg, build_zoo)
    dm.prepare_data()
    ckpt = resolve_checkpoint(cfg)
    run_dir = resolve_run_dir(cfg, ckpt)
    check_writable(run_dir, f"run folder {run_dir} (runs_dir={cfg.runs_dir})")
    return run_dir, dm, ckpt


def train(cfg: DictConfig, build_zoo: bool = False, note: str | None = None) -> Path:
    """`note`: a line for the user, shown once the input checks passed (so an error stays the only line)."""
    exported = RUN_DIR_ENV in os.environ
    try:
        return _train(cfg, build_zoo, note)
    finally:
        if not exported:  # the choice was for this run's processes only
            os.environ.pop(RUN_DIR_ENV, None)


def _in_checkpoint_restore(error: BaseException) -> bool:
    """Whether `error` was raised while Lightning restored a checkpoint (its checkpoint connector)."""
    import traceback

    return any("checkpoint_connector" in frame.filename for frame in traceback.extract_tb(error.__traceback__))


def _train(cfg: DictConfig, build_zoo: bool, note: str | None = None) -> Path:
    from ..evaluation.callbacks import SaveRunConfig
    from ..threads import apply_threads

    devices = cfg.trainer.get("devices", 1)
    cpu_ranks = devices if cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int) else 1
    # the `threads` key, else GMNAE_THREADS / OMP_NUM_THREADS / the CPUs and load, shared by CPU DDP ranks
    apply_threads(cfg.threads, processes=cpu_ranks)
    run_dir, dm, ckpt = prepare(cfg, build_zoo)
    rank0 = launcher_rank() == 0
    if rank0:
        if note:
            print(note, file=sys.stderr, flush=True)
        print(f"{'validation' if cfg.mode == 'validate' else 'run'} folder: {run_dir}", flush=True)
    # config.yaml is written once the checkpoint has been restored: a resume that fails leaves the run as it was
    saved = SaveRunConfig(cfg, run_dir / "config.yaml")
    made_here = rank0 and not run_dir.exists()
    try:
        return _fit_or_validate(cfg, run_dir, dm, ckpt, saved)
    except BaseException:
        if made_here and not saved.done:  # stopped before it started: no half-made folder for a later run to reuse
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _fit_or_validate(cfg: DictConfig, run_dir: Path, dm, ckpt: Path | None, saved) -> Path:
    import lightning as L
    import torch

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    model = build_model(cfg, dm)
    if ckpt:
        check_checkpoint_fits(model, ckpt)
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
            baselines = run_baselines(cfg, dm, run_dir)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        except SIGTERMException:
            raise SystemExit(143) from None  # 128 + SIGTERM: schedulers see the run was stopped
        except Exception as e:
            if ckpt and not saved.done and _in_checkpoint_restore(e):  # not a typo's error, nor a data error
                raise GmnaeError(f"cannot resume from {ckpt} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                 "the run folder is unchanged; resume with the settings the run was trained with") from e
            raise
        if cfg.task != "autoencode":
            write_task_results(cfg, trainer, model, dm, run_dir, baselines)
        if trainer.is_global_zero:
            print(f"run folder: {run_dir}")
    _close_process_group()
    return run_dir


def _close_process_group() -> None:
    """End a finished DDP run's process group here, on every rank. Left to interpreter exit, gloo's worker
    threads can abort the process after all its work is done ("terminate called without an active exception",
    exit -6; seen once in ~20 two-process CPU runs). Only after success: on an error a collective cleanup could
    wait for ranks that are gone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _validated_run(overrides: list[str]) -> Path | None:
    """`mode=validate ckpt_path=RUN/checkpoints/X.ckpt`: RUN, when it holds the config.yaml gmnae train saved
    (else None: the config is composed from the config files as for a new run)."""
    given = dict(item.lstrip("+").split("=", 1) for item in overrides if "=" in item)
    if given.get("mode") != "validate" or not given.get("ckpt_path"):
        return None
    ckpt = Path(given["ckpt_path"]).expanduser()
    run = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run / "config.yaml").is_file():
        return None
    return run


def _trainer_for_this_machine(cfg: DictConfig, overrides: list[str],
                              base: DictConfig | None) -> tuple[DictConfig, str | None]:
    """(config, note). A GPU trainer on a machine without a CUDA GPU: the CPU trainer and a note saying so when the
    GPU was only a default (the dataset's or a recipe's trainer); one line saying what to add when the command
    line or the saved run asked for it."""
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda"):
        return cfg, None
    import torch

    if torch.cuda.is_available():
        return cfg, None
    groups, rest = parse_overrides(overrides)
    if "trainer" in groups or any(r.startswith("trainer.accelerator=") for r in rest) or base is not None:
        raise ConfigError(f"trainer={cfg.choices.trainer} (accelerator {cfg.trainer.accelerator}): this machine has "
                          "no CUDA GPU; add trainer=cpu")
    chosen_by = f"experiment={cfg.choices.experiment}" if cfg.choices.get("experiment") else \
        f"dataset={cfg.choices.dataset}"
    note = (f"gmnae: no CUDA GPU here: training with trainer=cpu instead of trainer={cfg.choices.trainer} "
            f"(the default of {chosen_by}); add trainer=cpu to the command to silence this")
    return load_config([*overrides, "trainer=cpu"]), note


def run(args) -> int:
    from ..config.load import add_config_dir

    for folder in reversed(args.config_dir):  # the first --config-dir is searched first
        add_config_dir(folder)
    overrides = list(args.extra)
    if args.multirun:
        from .sweep import run_sweep

        if args.resume:
            raise ConfigError("--resume continues one run; resume a sweep's runs one by one "
                              "(gmnae train --resume SWEEP_DIR/RUN)")
        return run_sweep(overrides, print_config=args.print_config, build_zoo=args.build_zoo)
    base, saved = None, None
    validated = _validated_run(overrides) if not args.resume else None
    if validated is not None:  # the checkpoint's run knows its model and zoo: validate with its settings
        saved = validated / "config.yaml"
        base = OmegaConf.load(saved)
        overrides = [f"runs_dir={validated.parent}", f"run_name={validated.name}", *overrides]
        print(f"settings from {saved} (the checkpoint's run), with the command line's keys over them", file=sys.stderr)
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"{saved} does not exist: --resume takes a run folder made by gmnae train")
        base = OmegaConf.load(saved)
        # mode=fit: a config saved by an older validation must not turn the resume into one
        overrides = [f"run_name={run_dir.name}", f"runs_dir={run_dir.parent}", "ckpt_path=last", "mode=fit", *overrides]
    cfg = load_config(overrides, base=base, base_origin=str(saved) if saved is not None else "")
    cfg, note = _trainer_for_this_machine(cfg, overrides, base)
    if args.print_config:
        if note:
            print(note, file=sys.stderr)
        print(OmegaConf.to_yaml(cfg))
        return 0
    train(cfg, build_zoo=args.build_zoo, note=note)
    return 0
