"""The weight-space autoencoder: ScaleGMN encoder -> latent -> decoder -> decoded networks.

    model = WeightSpaceAutoencoder(arch.to_dict(), family="siren", encoder={...}, decoder={...}, optim={...})
    z = model.encode(params, activation)          # invariant latent [B, latent_dim]
    decoded = model.decode(z)                     # [B, P], one canonical representative per orbit

Loss (functional, docs/design.md §5): INR — MSE of the renderings on the coordinate grid (PSNR too);
CNN — distillation KL (temperature T, × T²) on task images, optionally plus `loss.hard_weight` × the
cross-entropy against the teacher's predicted class and `loss.logit_weight` × the MSE of centred logits; the
decoded networks' accuracy and agreement logged. Either family may add `loss.param_weight` × the invariant
parameter distance (the input weight-matched onto the decoded network's units, losses.aligned_param_distance).
"""
from __future__ import annotations

import torch
from torchmetrics import MeanMetric

from ..data.shard_stream import Batch
from .losses import aligned_param_distance, centred_logit_mse, distillation_kl, inr_render_mse, teacher_label_ce
from ..nn.decoder import build_decoder
from .module import WeightSpaceModule
from ..tasks.grid import coordinate_grid
from ..weightspace import Architecture
from ..weightspace.family import FAMILIES, network_family
from ..weightspace.registry import codes_of, encoder_symmetry


def resolve_symmetry(symmetry: str, activation: str) -> str:
    """`auto`: the encoder symmetry of the activation's group (registry), `hetero` for mixed zoos."""
    return encoder_symmetry(activation) if symmetry == "auto" else symmetry


class WeightSpaceAutoencoder(WeightSpaceModule):
    def __init__(self, arch: dict, family: str | None = None, encoder: dict | None = None, decoder: dict | None = None,
                 optim: dict | None = None, loss: dict | None = None, task: dict | None = None,
                 data_root: str | None = None, resolution: int = 28, param_stats: tuple | None = None,
                 probe: dict | None = None, kind: str | None = None):
        super().__init__()
        family = family or kind  # `kind`: the name checkpoints saved before the rename carry
        try:
            fam = network_family(family)  # "inr": what checkpoints saved before the one vocabulary call SIRENs
        except ValueError as e:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}") from e
        self.save_hyperparameters(ignore=["param_stats", "kind"])  # the statistics travel as decoder buffers
        self.hparams["family"] = fam.name
        from ..nn import EncoderConfig, FunctionProbe, ScaleGMNEncoder

        self.arch = Architecture.from_dict(arch)
        self.family = fam  # SIREN: rendering loss; CNN: distillation on task images
        enc = dict(encoder)
        enc["symmetry"] = resolve_symmetry(enc.get("symmetry", "auto"), self.arch.activation)
        self.encoder = ScaleGMNEncoder(self.arch, EncoderConfig.from_dict(enc))
        probe = dict(probe or {})
        # optional invariant branch on the network's outputs at fixed inputs, added to the ScaleGMN latent
        self.probe = (FunctionProbe(self.arch, self.encoder.latent_dim, int(probe["points"]),
                                    int(probe.get("hidden", 128))) if probe.get("points") else None)
        dec = dict(decoder)
        decoder_type = dec.pop("type", dec.pop("kind", "mlp"))  # "kind": checkpoints from before the rename
        self.decoder = build_decoder(decoder_type, self.encoder.latent_dim, self.arch.n_params, **dec)
        if param_stats is not None and hasattr(self.decoder, "set_output_statistics"):
            self.decoder.set_output_statistics(*(torch.as_tensor(x, dtype=torch.float32) for x in param_stats))
        self.optim_cfg = dict(optim)
        self.loss_cfg = dict(loss or {})
        self.task = dict(task or {})
        self.data_root = data_root
        self.register_buffer("coords", coordinate_grid(resolution), persistent=False)
        self._task_images: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": MeanMetric()
            for stage in ("train", "val", "test")
            for name in ("loss", fam.metric, *(("teacher_accuracy", "agreement") if fam.classifies else ()))
            + (("param_distance",) if (loss or {}).get("param_weight") else ())
        })
        self.image_generator: torch.Generator | None = None

    # ---- the model ------------------------------------------------------------------------
    def _activation(self, codes: torch.Tensor | None):
        """The encoder/forward activation argument: the architecture's name, or per-network codes if mixed."""
        if self.arch.activation != "mixed":
            return self.arch.activation
        return codes

    def encode(self, params: torch.Tensor, activation_codes: torch.Tensor | None = None) -> torch.Tensor:
        act = self._activation(activation_codes)
        z = self.encoder(params, activation=act)
        return z if self.probe is None else z + self.probe(params, act)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, params: torch.Tensor, activation_codes: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(params, activation_codes))

    # ---- task data (CNN zoos) -------------------------------------------------------------
    def task_images(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images the distillation loss uses: "train" for training, "test" (held out) for validation -- the
        datamodule's (loaded once per run); a module outside a Trainer (loaded from a checkpoint) loads them."""
        if split not in self._task_images:
            dm = self._trainer.datamodule if self._trainer is not None else None
            if dm is not None and hasattr(dm, "task_images"):
                x, y = dm.task_images(split)
            else:
                from ..tasks.classification import task_images

                x, y = task_images(self.task, split, self.data_root)
            self._task_images[split] = (x.to(self.device), y.to(self.device))
        return self._task_images[split]

    def _image_batch(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.task_images(split)
        if split != "train":  # validation: a fixed set, identical on every rank and every epoch
            return x[:n], y[:n]
        if self.image_generator is None:
            self.image_generator = torch.Generator().manual_seed(1000 + self.global_rank)
        idx = torch.randint(len(x), (n,), generator=self.image_generator).to(x.device)
        xb, yb = x[idx], y[idx]
        m = int(round(self.loss_cfg.get("mixup", 0.0) * n))
        if m:  # function matching: blends of two images, where the teachers' own decisions differ most
            partner = torch.randint(len(x), (m,), generator=self.image_generator).to(x.device)
            lam = torch.rand(m, 1, 1, 1, generator=self.image_generator).to(x)
            xb = torch.cat([lam * xb[:m] + (1 - lam) * x[partner], xb[m:]])  # labels: the first image's
        return xb, yb

    # ---- steps ----------------------------------------------------------------------------
    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        params, valid = batch.params, batch.valid
        act = self._activation(batch.activation)
        decoded = self(params, batch.activation)
        if not self.family.classifies:
            per_net = inr_render_mse(self.arch, params, decoded, self.coords)
            self.metrics[f"{stage}_psnr"](10 * torch.log10(1.0 / per_net.detach().clamp_min(1e-12)), valid)
        else:
            n_img = self.loss_cfg.get("task_batch", 128) if stage == "train" else self.loss_cfg.get("val_images", 512)
            x, y = self._image_batch("train" if stage == "train" else "test", n_img)
            per_net, t_logits, s_logits = distillation_kl(self.arch, params, decoded, x,
                                                          self.loss_cfg.get("temperature", 4.0), act)
            if self.loss_cfg.get("hard_weight", 0.0):
                per_net = per_net + self.loss_cfg["hard_weight"] * teacher_label_ce(t_logits, s_logits)
            if self.loss_cfg.get("logit_weight", 0.0):
                per_net = per_net + self.loss_cfg["logit_weight"] * centred_logit_mse(t_logits, s_logits)
            s_pred, t_pred = s_logits.argmax(-1), t_logits.argmax(-1)
            self.metrics[f"{stage}_accuracy"]((s_pred == y).float().mean(1), valid)
            self.metrics[f"{stage}_teacher_accuracy"]((t_pred == y).float().mean(1), valid)
            self.metrics[f"{stage}_agreement"]((s_pred == t_pred).float().mean(1), valid)
        if self.loss_cfg.get("param_weight", 0.0):
            param = aligned_param_distance(self.arch, params, decoded, act, int(self.loss_cfg.get("param_match_iter", 10)))
            self.metrics[f"{stage}_param_distance"](param.detach(), valid)
            per_net = per_net + self.loss_cfg["param_weight"] * param
        loss = (per_net * valid).sum() / valid.sum().clamp_min(1.0)
        self.metrics[f"{stage}_loss"](per_net.detach(), valid)
        self.log_stage_metrics(stage, len(batch), prog_bar=lambda key: key.endswith(("loss", "psnr")))
        return loss


def activation_code_tensor(names: list[str]) -> torch.Tensor:
    return codes_of(names)
