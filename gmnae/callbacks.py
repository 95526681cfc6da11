"""Lightning callbacks: checkpoint on interruption, and the evaluation callbacks built from the config."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class CheckpointOnInterrupt(L.Callback):
    """Save `last.ckpt` when a run is stopped by SIGTERM (pre-emption, `kill`, scancel) or Ctrl-C.

    Lightning stops at the end of the current step on SIGTERM; without this, everything since the
    last epoch-end checkpoint would be lost. Every rank enters `on_exception` (Lightning broadcasts
    the signal), so the checkpoint's collective is safe.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and trainer.state.fn == "fit":
            trainer.save_checkpoint(str(self.path))
            if trainer.is_global_zero:
                print(f"interrupted at step {trainer.global_step}: saved {self.path}; resume with --resume "
                      f"{self.path.parent.parent}", flush=True)


def build_callbacks(cfg, run_dir: Path) -> list[L.Callback]:
    """Evaluation callbacks the config asks for."""
    callbacks: list[L.Callback] = []
    try:
        from .evaluation_callback import InterpolationCallback
    except ImportError:
        return callbacks
    if cfg.evaluation.enabled:
        callbacks.append(InterpolationCallback.from_config(cfg, run_dir))
    return callbacks
