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


class SaveRunConfig(L.Callback):
    """Write the run's `config.yaml` when training or validation starts, i.e. after Lightning restored
    the checkpoint: a resume whose checkpoint does not load leaves the saved config as it was."""

    def __init__(self, cfg, path: Path):
        self.cfg, self.path = cfg, Path(path)
        self.done = False

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero and not self.done:
            from ..config.load import save_config

            save_config(self.cfg, self.path)
        self.done = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate":
            self._save(trainer)


class InterpolationCallback(L.Callback):
    """Merging evaluation while a model trains (and once more at the end of fit).

    Every `every_n_val_epochs` validation epochs: interpolation curves of naive, weight matching,
    `ae` and `ae-endpoints` paths on fixed seeded validation pairs (`gmnae.evaluation.merge_evaluation`), which, like the
    task images, come from the run's `ZooDataModule` (`trainer.datamodule`; without one, from the
    zoo the config names). Each rank
    computes its share of the pairs and the shares are gathered, so all ranks log the same
    scalars (a checkpoint may monitor them); figures, CSV and `report.html` are written by rank 0
    only. Every rank runs the same collectives in the same order, never inside a rank-0 branch.
    """

    def __init__(self, evaluation_factory, run_dir: Path, every_n_val_epochs: int = 5, title: str = "",
                 config_yaml: str = ""):
        self.factory, self.run_dir = evaluation_factory, Path(run_dir)  # factory: trainer -> MergeEvaluation
        self.every = every_n_val_epochs
        self.title, self.config_yaml = title, config_yaml
        self.evaluation = None
        self._val_epochs = 0
        self.last_result = None
        self._last_step = -1

    @staticmethod
    def from_config(cfg, run_dir: Path) -> "InterpolationCallback":
        from omegaconf import OmegaConf

        def evaluation(trainer: L.Trainer):
            from ..data.datamodule import ZooDataModule
            from .merge_evaluation import MergeEvaluation
            from ..zoo.format import Zoo

            dm = getattr(trainer, "datamodule", None)
            if isinstance(dm, ZooDataModule):
                return MergeEvaluation.from_datamodule(dm, cfg, "val")
            return MergeEvaluation.from_config(Zoo(cfg.dataset.zoo), cfg, "val")

        return InterpolationCallback(evaluation, run_dir, cfg.evaluation.every_n_val_epochs, f"gmnae · {run_dir.name}",
                                     OmegaConf.to_yaml(cfg))

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, log_scalars: bool):
        import torch

        if self.evaluation is None:
            self.evaluation = self.factory(trainer)
        result = self.evaluation.run(pl_module, trainer.global_rank, trainer.world_size, gather=pl_module.all_gather)
        self.last_result, self._last_step = result, trainer.global_step
        scalars = result.scalars()
        if log_scalars:
            for key, value in scalars.items():  # identical on every rank: no sync needed
                pl_module.log(key, torch.tensor(value), on_step=False, on_epoch=True, sync_dist=False)
        if trainer.is_global_zero:
            from .report import write_evaluation

            pngs = write_evaluation(self.run_dir / "eval", result, self.title, pl_module, self.config_yaml,
                                    trainer.global_step, trainer.current_epoch,
                                    sample=(self.evaluation.pair_sets[next(iter(self.evaluation.pair_sets))].arch,
                                            self.evaluation.sample_networks()[1]), split=self.evaluation.split)
            self._to_tensorboard(trainer, scalars if not log_scalars else {}, pngs)
            from tqdm import tqdm

            # tqdm.write clears the progress bar first, so the table does not glue onto it
            tqdm.write(f"[interpolation] step {trainer.global_step}: {len(self.evaluation.pair_sets)} pair types in "
                       f"{result.seconds:.1f}s\n{result.table()}")

    @staticmethod
    def _to_tensorboard(trainer, scalars: dict, pngs: dict) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                import io

                import numpy as np
                from PIL import Image

                for key, value in scalars.items():
                    logger.experiment.add_scalar(key, value, trainer.global_step)
                for name, png in pngs.items():
                    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                    logger.experiment.add_image(f"interp/{name}", img, trainer.global_step, dataformats="HWC")
                logger.experiment.flush()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._val_epochs += 1
        if self.every and self._val_epochs % self.every == 0:
            self._evaluate(trainer, pl_module, log_scalars=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_step != trainer.global_step and not trainer.interrupted:
            self._evaluate(trainer, pl_module, log_scalars=False)


def build_callbacks(cfg, run_dir: Path) -> list[L.Callback]:
    """Evaluation callbacks the config asks for."""
    if not cfg.evaluation.enabled:
        return []
    return [InterpolationCallback.from_config(cfg, run_dir)]
