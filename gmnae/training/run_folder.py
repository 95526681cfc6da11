"""A run's folder and the checkpoint it starts from: naming, `-vN` for taken names, validation folders, resume.

    runs/<dataset>-<model>-s<seed>/        (or <experiment>-s<seed>, or run_name)
      config.yaml  checkpoints/last.ckpt  checkpoints/best-*.ckpt  tensorboard/  csv/metrics.csv  eval/

Every process of a run must agree on the folder: the first one chooses and exports it in
`GMNAE_RUN_DIR`, which processes Lightning launches later inherit.
"""
from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError, GmnaeError
from ..threads import external_launch

RUN_DIR_ENV = "GMNAE_RUN_DIR"


def resolve_run_dir(cfg: DictConfig, ckpt: Path | None = None) -> Path:
    """The run folder, identical in every process of a run.

    An explicit run_name is used as is. Otherwise <dataset>-<model>-s<seed> (<experiment>-s<seed>), plus the SLURM job id
    under SLURM (so a requeued job finds its own folder). A single-process start that would reuse
    a taken (non-empty) folder gets the next free -vN, and exports the choice so processes that Lightning
    launches later inherit it instead of choosing again. A validation gets a folder of its own.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if cfg.mode == "validate":
        return _validation_dir(cfg, ckpt)
    runs, name = Path(cfg.runs_dir), run_name(cfg)
    path = runs / name
    if not cfg.run_name and not external_launch() and cfg.ckpt_path is None and cfg.mode == "fit":
        v = 1
        while path.exists() and any(path.iterdir()):  # anything in it is another run's (even a failed start's)
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
    if external_launch():
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
