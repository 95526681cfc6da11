"""The optimiser every gmnae module uses: torch's fused AdamW where it applies, and gradient clipping that still
happens under bf16-mixed (where Lightning's plugin refuses to clip for a fused optimiser)."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from gmnae.training.module import WeightSpaceModule
from gmnae.training.optim import fused_adamw_applies


class _Regression(WeightSpaceModule):
    """A real WeightSpaceModule on a linear regression whose gradients are far above the clip value."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 1)
        self.optim_cfg = {"lr": 1e-3}
        self.metrics = torch.nn.ModuleDict()
        self.grad_norms: list[float] = []

    def _step(self, batch, stage):
        x, y = batch
        return ((self.lin(x).float() - y) ** 2).mean() * 1e4

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        optimizer.step(closure=optimizer_closure)  # runs backward and clipping; the gradients stay until zero_grad
        self.grad_norms.append(torch.cat([p.grad.flatten() for p in self.parameters()]).norm().item())


@pytest.mark.parametrize("precision,algorithm", [("bf16-mixed", "norm"), ("bf16-mixed", "value"), ("32-true", "norm")])
def test_fused_adamw_clips_gradients(tmp_path, precision, algorithm):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True) + 5.0), batch_size=8)
    module = _Regression()
    trainer = L.Trainer(max_steps=3, accelerator="cpu", precision=precision, gradient_clip_val=0.5,
                        gradient_clip_algorithm=algorithm, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, data)
    assert trainer.optimizers[0].defaults["fused"] is True
    assert len(module.grad_norms) == 3
    bound = 0.5 * (1 + 1e-5) if algorithm == "norm" else 0.5 * 9 ** 0.5 * (1 + 1e-5)  # 9 parameters, each <= 0.5
    assert all(n <= bound for n in module.grad_norms), module.grad_norms


def test_fused_adamw_applies_where_torch_has_it():
    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert fused_adamw_applies(cpu, "bf16-mixed") and fused_adamw_applies(cpu, "32-true")
    assert not fused_adamw_applies(cpu, "16-mixed")      # fp16's GradScaler: Lightning must unscale before clipping
    assert not fused_adamw_applies([], "32-true")
    assert not fused_adamw_applies([torch.nn.Parameter(torch.zeros(3, device="meta"))], "32-true")
