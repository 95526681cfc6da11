"""`ZooDataModule`: everything a run needs from its zoo, read in one place.

- `prepare_data` checks the zoo against the dataset config (gmnae/data/zoo_checks.py; the train command calls it
  before Lightning starts, so bad input stops with one line before a file is written);
- train/val/test streams (`ShardStream`, gmnae/data/shard_stream.py), with mid-epoch resume state;
- `statistics_sample()`: the train networks the decoder's output statistics and the encoder's input
  scale come from (one activation's only when `dataset.activation` filters a mixed zoo);
- `task_images(split)`: a CNN zoo's task images, loaded once for the loss, the probe and the evaluation;
- `split_networks(split)` / `evaluation_pairs(...)`: an evaluation split read once for every pair type.

Activations travel as codes (weightspace/registry.py), never as names.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import ZooError
from .shard_stream import ShardStream, _collate_identity
from ..weightspace.registry import code_of
from ..weightspace.family import network_family
from ..zoo.format import Zoo


def statistics_sample(zoo: Zoo, activation: str | None = None, limit: int = 4096) -> np.ndarray:
    """The train networks the decoder's output statistics and the encoder's input scale come from: the
    first `limit` of the split, or, when a mixed zoo is filtered to one activation, the first `limit` of
    that activation only (the other activation's weights would shift both)."""
    if not activation or zoo.arch.activation != "mixed":
        return zoo.read_params("train", limit=limit)
    rows = np.nonzero(np.asarray(zoo.activations("train")) == activation)[0][:limit]
    if not len(rows):
        raise ZooError(f"zoo {zoo.root} has no {activation} networks in split 'train'")
    return zoo.read_params("train", limit=int(rows[-1]) + 1)[rows]


class ZooDataModule(L.LightningDataModule):
    """Everything a run reads from its zoo: checks, streams, statistics, task images, evaluation pairs."""

    def __init__(self, zoo_path: str, batch_size: int = 64, val_batch_size: int | None = None,
                 num_workers: int = 0, shuffle_buffer: int = 1024, pin_memory: bool | str = "auto",
                 activation: str | None = None, limit_train_networks: int | None = None, seed: int = 0,
                 data_root: str | None = None, dataset: dict | None = None, build_if_missing: bool = False):
        super().__init__()
        self.zoo_path = Path(zoo_path)
        # the config's dataset section `prepare_data` checks the zoo against (None: the zoo is only opened)
        self.dataset, self.build_if_missing = dataset, build_if_missing
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.shuffle_buffer, self.pin = num_workers, shuffle_buffer, pin_memory
        self.activation, self.limit_train = activation, limit_train_networks
        self.seed, self.data_root = seed, data_root
        self.streams: dict[str, ShardStream] = {}
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint
        self._zoo: Zoo | None = None
        self._prepared = False
        self._statistics: np.ndarray | None = None
        self._task_images: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._split_networks: dict = {}

    @classmethod
    def from_config(cls, cfg, build_zoo: bool = False) -> "ZooDataModule":
        """The datamodule of a training config; `build_zoo`: a missing built-in zoo may be built (`--build-zoo`)."""
        from omegaconf import OmegaConf

        from .zoo_checks import builds_missing_zoo

        d, ds = cfg.data, cfg.dataset
        return cls(ds.zoo, batch_size=d.batch_size, val_batch_size=d.val_batch_size, num_workers=d.num_workers,
                   shuffle_buffer=d.shuffle_buffer, pin_memory=d.pin_memory, activation=ds.get("activation"),
                   limit_train_networks=d.limit_train_networks, seed=cfg.seed, data_root=ds.get("data_root"),
                   dataset=OmegaConf.to_container(ds), build_if_missing=builds_missing_zoo(cfg, build_zoo))

    # -- the zoo, checked ---------------------------------------------------------------------
    @property
    def zoo(self) -> Zoo:
        if self._zoo is None:
            self._zoo = Zoo(self.zoo_path)
        return self._zoo

    @property
    def family(self):
        """The family of the zoo's networks (weightspace/family.py)."""
        return network_family(self.zoo.arch)

    def prepare_data(self) -> None:
        """Check the zoo against the dataset config (building a missing built-in zoo only when asked) and that
        a CNN zoo's task images are there. The train command calls this before Lightning starts anything;
        Lightning's own call is then a no-op."""
        if self._prepared:
            return
        if self.dataset is not None:
            from .zoo_checks import check_zoo

            self._zoo = check_zoo(self.zoo_path, self.dataset, self.build_if_missing)
        if self.family.classifies:  # say exactly which task files are missing before training starts
            for split in ("train", "test"):
                self.task_images(split)
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # Lightning prepares on one process per node; every process needs the checked zoo

    @property
    def arch(self):
        arch = self.zoo.arch
        return arch.with_activation(self.activation) if self.activation else arch

    # -- what the model and the evaluation read, each read once -------------------------------------
    def statistics_sample(self) -> np.ndarray:
        """The networks the decoder's output statistics and the encoder's input scale come from (only source)."""
        if self._statistics is None:
            self._statistics = statistics_sample(self.zoo, self.activation)
        return self._statistics

    def task_images(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A CNN zoo's task (images, labels) on the CPU: "train" for the loss and the probe, "test" (held out)
        for validation and the merging evaluation."""
        if split not in self._task_images:
            if not self.family.classifies:
                raise ValueError(f"zoo {self.zoo.root} holds INRs: there are no task images")
            from ..tasks import classification

            self._task_images[split] = classification.task_images(self.zoo.task, split, self.data_root)
        return self._task_images[split]

    def split_networks(self, split: str):
        """Parameters, metadata and activation codes of a whole split (an evaluation split), read once."""
        if split not in self._split_networks:
            from ..merge.pairs import SplitNetworks

            self._split_networks[split] = SplitNetworks.read(self.zoo, split)
        return self._split_networks[split]

    def evaluation_pairs(self, split: str, pairs_per_type: int, seed: int = 0, sigma: float = 0.005) -> dict:
        """Every pair type of the merging evaluation on `split`, from one read of the split."""
        from ..merge.pairs import evaluation_pair_sets

        return evaluation_pair_sets(self.split_networks(split), pairs_per_type, seed, sigma, self.activation)

    def split_rows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows kept, activation code of every row) of a split."""
        acts = np.array([code_of(a) for a in self.zoo.activations(split)], dtype=np.int64)
        rows = np.arange(len(acts))
        if self.activation:
            rows = rows[acts == code_of(self.activation)]
            if len(rows) == 0:
                raise ZooError(f"zoo {self.zoo.root} has no {self.activation} networks in split {split!r}")
        if split == "train" and self.limit_train:
            rows = rows[: self.limit_train]
        return rows, acts

    def _stream(self, split: str, train: bool) -> ShardStream:
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        key = f"{split}:{train}"
        if key not in self.streams:
            rows, acts = self.split_rows(split)
            self.streams[key] = ShardStream(
                self.zoo, split, self.batch_size if train else self.val_batch_size, rows=rows, shuffle=train,
                drop_last=train, shuffle_buffer=self.shuffle_buffer, seed=self.seed, rank=rank, world_size=world,
                activation_codes=acts)
        stream = self.streams[key]
        if train and self.trainer is not None:
            # A resumed fit trains the epoch its checkpoint recorded (Lightning's epoch counter is not
            # final yet when it asks for the loader: a save at an epoch's end still reads as that epoch).
            epoch, skip = self._resume_at or (self.trainer.current_epoch, 0)
            stream.set_epoch(epoch)
            stream.skip_batches = skip
            self._resume_at = None
        return stream

    # -- resume: the checkpoint records which epoch comes next and how many of its batches are done --
    def state_dict(self) -> dict:
        t = self.trainer
        if t is None or t.state.fn != "fit":
            return {}
        # `processed`: batches of this epoch whose optimizer step ran (a checkpoint written in
        # on_train_batch_end has not counted its batch as `completed` yet; one written on SIGTERM has).
        # Also right for a save during validation: the training counter is what resume skips.
        done = t.fit_loop.epoch_loop.batch_progress.current.processed
        epochs = t.fit_loop.epoch_progress.current
        # The epoch's training part is over -- its last batch stepped, or the save is in the epoch-end
        # validation or between epochs: resume starts the next epoch from its first batch.
        if epochs.processed == epochs.started or done >= t.num_training_batches:
            return {"train_epoch": epochs.started, "train_batches_done": 0}
        return {"train_epoch": epochs.started - 1, "train_batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        if "train_epoch" in state:
            self._resume_at = (state["train_epoch"], state["train_batches_done"])

    def _loader(self, stream: ShardStream) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        pin = on_gpu if self.pin == "auto" else bool(self.pin)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers, pin_memory=pin,
                          persistent_workers=self.num_workers > 0, collate_fn=_collate_identity)

    def train_dataloader(self):
        return self._loader(self._stream("train", True))

    def val_dataloader(self):
        return self._loader(self._stream("val", False))

    def test_dataloader(self):
        return self._loader(self._stream("test", False))
