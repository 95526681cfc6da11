"""The Lightning Trainer of a run: checkpoints, interrupt saves, loggers, evaluation callbacks, strategy."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# bf16 autocast pays on CPUs with native bf16 matmuls (AMX, avx512_bf16) only for wide encoders: a training step
# of the published widths (d = 128, 256) is 1.05-1.4x faster, of scalegmn-small (d = 32) 0.82-1.07x (docs/performance.md).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
BF16_MIN_WIDTH = 128


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native bf16 matmul features of this CPU (empty: bf16 is emulated, slower than fp32)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return [f for f in BF16_CPU_FLAGS if f in flags]


def resolve_precision(precision: str, on_gpu: bool, encoder_width: int, bf16_flags: list[str]) -> tuple[str, str | None]:
    """`trainer.precision` as Lightning gets it, and a one-line note for the user (or None).

    auto: bf16-mixed on a CPU with native bf16 matmuls for encoders at least BF16_MIN_WIDTH wide, else 32-true
    (GPUs: 32-true; set trainer.precision=bf16-mixed there yourself). An explicit bf16 on a CPU without them is kept,
    with a note that it is slower there."""
    precision = str(precision)
    if precision != "auto":
        if precision.startswith("bf16") and not on_gpu and not bf16_flags:
            return precision, (f"note: trainer.precision={precision} on a CPU without {'/'.join(BF16_CPU_FLAGS)}: "
                               "bf16 is emulated here and slower than 32-true")
        return precision, None
    if not on_gpu and bf16_flags and encoder_width >= BF16_MIN_WIDTH:
        return "bf16-mixed", (f"precision: bf16-mixed (auto: this CPU has {bf16_flags[0]} and the encoder is "
                              f"d = {encoder_width} wide; trainer.precision=32-true turns it off)")
    return "32-true", None


def launcher_rank() -> int:
    """This process's global rank as the launcher (torchrun, srun via Lightning, Lightning's own spawn) set it
    before any process group exists: rank 0 does the run's console output and file writes."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def _on_gpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks_extra=()):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from ..evaluation.callbacks import CheckpointOnInterrupt, build_callbacks
    from ..training.csv_log import AppendingCSVLogger
    from ..quiet import quiet_lightning

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
    kw["precision"], note = resolve_precision(kw.get("precision", "auto"), _on_gpu(kw.get("accelerator", "auto")),
                                              int(cfg.model.get("encoder", {}).get("d", 0) or 0), cpu_bf16_flags())
    if note and launcher_rank() == 0:
        print(f"gmnae: {note}", flush=True)
    if kw.get("strategy") == "ddp" and kw.get("accelerator") in ("cpu", "auto"):
        import torch

        if kw.get("accelerator") == "cpu" or not torch.cuda.is_available():
            from lightning.pytorch.strategies import DDPStrategy

            kw["strategy"] = DDPStrategy(process_group_backend="gloo")
    return L.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers, **kw)
