"""The Lightning Trainer of a run: checkpoints, interrupt saves, loggers, evaluation callbacks, strategy."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


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
    if kw.get("strategy") == "ddp" and kw.get("accelerator") in ("cpu", "auto"):
        import torch

        if kw.get("accelerator") == "cpu" or not torch.cuda.is_available():
            from lightning.pytorch.strategies import DDPStrategy

            kw["strategy"] = DDPStrategy(process_group_backend="gloo")
    return L.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers, **kw)
