"""`trainer.precision=bf16-mixed` on CPU (Lightning's autocast): a short run trains, checkpoints, and its
losses follow the fp32 run's from the same seed to within bf16 error."""
import csv

import pytest
import torch

from gmnae.config.load import load_config
from gmnae.commands.train import train

from .conftest import tiny_overrides


def _losses(run_dir):
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


@pytest.mark.parametrize("dataset,zoo", [("digits-cnn", "digits_cnn_zoo"), ("digits-inr", "digits_inr_zoo")])
def test_bf16_mixed_training_follows_fp32(request, dataset, zoo, tmp_path):
    root = request.getfixturevalue(zoo).root
    runs = {}
    for precision in ("32-true", "bf16-mixed"):
        over = tiny_overrides(root, tmp_path / precision, dataset, **{"trainer.precision": precision,
                                                                      "trainer.max_epochs": 1})
        runs[precision] = train(load_config(over))
    ckpt = torch.load(runs["bf16-mixed"] / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3
    assert all(v.dtype != torch.bfloat16 for v in ckpt["state_dict"].values())  # fp32 weights, bf16 compute only
    fp32, bf16 = _losses(runs["32-true"]), _losses(runs["bf16-mixed"])
    assert len(fp32) == len(bf16) == 3 and all(torch.isfinite(torch.tensor(bf16)))
    # same seed, same batches: the first loss differs only by bf16 rounding of the forward (u = 2^-8, a few
    # dozen roundings -> a few percent); later steps add the rounding of the updates
    assert abs(bf16[0] - fp32[0]) <= 0.05 * abs(fp32[0])
    assert all(abs(b - f) <= 0.15 * abs(f) for b, f in zip(bf16, fp32))
