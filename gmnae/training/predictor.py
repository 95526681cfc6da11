"""Downstream tasks that show whether an encoder reads weights: the ScaleGMN paper's own benchmarks.

    gmnae train task=classify dataset=mnist5k-inr            # the digit from the INR's weights (accuracy)
    gmnae train task=predict-accuracy dataset=mnist5k-cnn    # a CNN's test accuracy from its weights (Kendall tau)

The same invariant encoder as the autoencoder (ScaleGMN, plus the optional function probe), then a
small MLP head: logits over the classes (cross-entropy), or one number (MSE against the stored
test accuracy). Targets come from the zoo's metadata by each batch's row index, so DDP sharding
and resume work as for the autoencoder. The baselines (gmnae/evaluation/baselines.py) are fitted on the same
split at the start of the run and logged beside the encoder's numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.regression import KendallRankCorrCoef

from ..data.shard_stream import Batch
from .module import WeightSpaceModule
from ..weightspace import Architecture

TASKS = ("classify", "predict-accuracy")
TARGET_KEY = {"classify": "label", "predict-accuracy": "test_accuracy"}


class WeightSpacePredictor(WeightSpaceModule):
    def __init__(self, arch: dict, task: str, encoder: dict, optim: dict, n_classes: int = 10,
                 head_hidden: int = 128, probe: dict | None = None, targets: dict | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["targets"])  # targets travel as buffers
        from .autoencoder import resolve_symmetry
        from ..nn import EncoderConfig, FunctionProbe, ScaleGMNEncoder

        if task not in TASKS:
            raise ValueError(f"task {task!r}; expected one of {TASKS}")
        self.arch, self.task = Architecture.from_dict(arch), task
        enc = dict(encoder)
        enc["symmetry"] = resolve_symmetry(enc.get("symmetry", "auto"), self.arch.activation)
        self.encoder = ScaleGMNEncoder(self.arch, EncoderConfig.from_dict(enc))
        probe = dict(probe or {})
        latent = self.encoder.latent_dim
        self.probe = (FunctionProbe(self.arch, latent, int(probe["points"]), int(probe.get("hidden", 128)))
                      if probe.get("points") else None)
        n_out = n_classes if task == "classify" else 1
        self.head = nn.Sequential(nn.Linear(latent, head_hidden), nn.LayerNorm(head_hidden), nn.SiLU(),
                                  nn.Linear(head_hidden, n_out))
        for split in ("train", "val", "test"):
            t = torch.as_tensor((targets or {}).get(split, []),
                                dtype=torch.long if task == "classify" else torch.float32)
            self.register_buffer(f"targets_{split}", t)
        self.optim_cfg = dict(optim)
        names = ("loss", "accuracy") if task == "classify" else ("loss",)
        self.metrics = nn.ModuleDict({f"{s}_{n}": MeanMetric() for s in ("train", "val", "test") for n in names})
        if task == "predict-accuracy":
            self.tau = nn.ModuleDict({s: KendallRankCorrCoef() for s in ("val", "test")})

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for split in ("train", "val", "test"):  # sizes come from the checkpoint, not from construction
            key = f"{prefix}targets_{split}"
            if key in state_dict:
                setattr(self, f"targets_{split}", torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, params: torch.Tensor, activation=None) -> torch.Tensor:
        act = self.arch.activation if self.arch.activation != "mixed" else activation
        z = self.encoder(params, activation=act)
        return z if self.probe is None else z + self.probe(params, act)

    def forward(self, params: torch.Tensor, activation=None) -> torch.Tensor:
        out = self.head(self.encode(params, activation))
        return out if self.task == "classify" else out.squeeze(-1)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        target = getattr(self, f"targets_{stage}")[batch.index]
        out = self(batch.params, batch.activation)
        valid = batch.valid
        if self.task == "classify":
            per_net = F.cross_entropy(out, target, reduction="none")
            self.metrics[f"{stage}_accuracy"]((out.argmax(-1) == target).float(), valid)
        else:
            per_net = (out - target).pow(2)
            if stage != "train":
                keep = valid > 0
                self.tau[stage](out[keep].detach(), target[keep])
        loss = (per_net * valid).sum() / valid.sum().clamp_min(1.0)
        self.metrics[f"{stage}_loss"](per_net.detach(), valid)
        self.log_stage_metrics(stage, len(batch))
        if stage != "train" and self.task == "predict-accuracy":
            self.log(f"{stage}/kendall_tau", self.tau[stage], on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss
