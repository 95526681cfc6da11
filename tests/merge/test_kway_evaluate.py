"""`gmnae evaluate` shows the K-way section: table in its output, summary.json and report.html."""
import json

import pytest
import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.cli import main
from gmnae.evaluation.kway_eval import kway_groups
from gmnae.tasks.grid import coordinate_grid
from gmnae.tasks.inr_targets import inr_targets
from gmnae.weightspace import forward


def test_evaluate_has_the_kway_section(inr_autoencoder_run, digits_inr_zoo, tmp_path, capsys):
    ckpt = inr_autoencoder_run / "checkpoints" / "last.ckpt"
    assert main(["evaluate", str(ckpt), "--split", "train", "--pairs", "2", "--lambdas", "3", "--kway", "2,4",
                 "--kway-groups", "3", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "K-way merges on the train split: psnr (dB)" in out and "mergemany" in out and "ae-endpoints" in out
    assert "K=4 (sine): no group of 4" in out  # the fixture zoo has 2 seeds per image
    kway = json.loads((tmp_path / "summary.json").read_text())["kway"]
    by = {r["method"]: r for r in kway["rows"]}
    assert set(by) == {"naive", "mergemany", "mergemany-wm", "ae", "ae-endpoints", "parents decoded"}
    assert all(r["k"] == 2 and r["groups"] == 3 for r in kway["rows"])
    html = (tmp_path / "report.html").read_text()
    assert "K-way merges on the train split" in html and html.index("K-way merges") < html.index("<h2>Config")

    # the ae number is the PSNR of dec(mean latent) against the group's image, computed here directly
    model = WeightSpaceAutoencoder.load_from_checkpoint(ckpt).eval()
    g = kway_groups(digits_inr_zoo, "train", 2, 3)
    meta = digits_inr_zoo.read_meta("train")
    target = inr_targets(digits_inr_zoo.task, {k: v[g.rows[:, 0]] for k, v in meta.items()}).double()
    with torch.no_grad():
        flat = g.nets.reshape(6, -1).float()
        z = model.encoder(flat, activation="sine")
        z = z + model.probe(flat, "sine") if model.probe is not None else z
        merged = model.decoder(z.view(3, 2, -1).mean(1)).double()
    img = forward(digits_inr_zoo.arch, merged, coordinate_grid(28, dtype=torch.float64))[..., 0]
    psnr = 10 * torch.log10(1 / (img - target).pow(2).mean(1))
    assert by["ae"]["merged_mean"] == pytest.approx(float(psnr.mean()), abs=1e-3)
    assert "--kway" in _err(capsys, ["evaluate", str(ckpt), "--kway", "1,2"])


def _err(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err.strip()
