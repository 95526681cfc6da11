"""Downstream tasks (classify, predict-accuracy): the encoder and its baselines in one run."""
import csv
import json

import numpy as np
import pytest
import torch

from gmnae.evaluation.baselines import fit_baselines, sorted_invariant_features, statnn_features
from gmnae.config.load import load_config
from gmnae.training.predictor import WeightSpacePredictor
from gmnae.commands.train import train
from gmnae.weightspace import random_transform

from .conftest import tiny_overrides


def test_statnn_and_sorted_features_match_an_independent_computation(trained_sirens):
    arch, params = trained_sirens
    f = statnn_features(arch, params)
    w1 = params[:, :64].numpy()  # layer 0 weight: 32 x 2
    np.testing.assert_allclose(f[:, 0].numpy(), w1.mean(1), rtol=1e-10)
    np.testing.assert_allclose(f[:, 1].numpy(), w1.std(1), rtol=1e-10)
    np.testing.assert_allclose(f[:, 2:7].numpy(), np.quantile(w1, [0, .25, .5, .75, 1], axis=1).T, rtol=1e-10)
    assert f.shape[1] == 6 * 7
    # sorted |w| per tensor is invariant to hidden permutations and sign flips
    moved = random_transform(arch, params, "PD", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sorted_invariant_features(arch, moved), sorted_invariant_features(arch, params))
    assert not torch.allclose(moved, params)


def test_baselines_learn_a_planted_signal(trained_sirens):
    """Labels that are a threshold of the first-layer weight scale: StatNN and sorted features find them."""
    arch, params = trained_sirens
    params = params.float().repeat(8, 1)
    scale = torch.linspace(0.5, 2.0, len(params))[torch.randperm(len(params), generator=torch.Generator().manual_seed(0))]
    params[:, :64] *= scale[:, None]
    y = (scale > 1.25).long().numpy()
    n = len(params) * 3 // 4
    rows = fit_baselines(arch, "classify", {"train": (params[:n], y[:n]), "val": (params[n:], y[n:])})
    acc = {r["baseline"]: r["val"] for r in rows}
    assert acc["statnn"] > 0.8 and acc["sorted-invariant"] > 0.8  # chance: 0.5


@pytest.fixture(scope="module")
def classify_run(digits_inr_zoo, tmp_path_factory):
    return train(load_config(["task=classify"] + tiny_overrides(digits_inr_zoo.root, tmp_path_factory.mktemp("runs"))[:]
                             + ["model.encoder.input_scale=layer-rms"]))


def test_classify_run_reports_encoder_and_baselines(classify_run, trained_sirens):
    res = json.loads((classify_run / "results.json").read_text())
    assert res["task"] == "classify" and res["metric"] == "accuracy"
    names = [r["baseline"] for r in res["rows"]]
    assert names == ["encoder", "statnn", "raw", "sorted-invariant", "probe"]
    for r in res["rows"]:
        assert 0.0 <= r["val"] <= 1.0 and 0.0 <= r["test"] <= 1.0
    assert (classify_run / "baselines.csv").exists()
    assert "val/accuracy" in (classify_run / "csv" / "metrics.csv").read_text()
    # the checkpoint restores the predictor, its targets and the encoder's input scale; the logits are invariant
    model = WeightSpacePredictor.load_from_checkpoint(classify_run / "checkpoints" / "last.ckpt").double().eval()
    assert len(model.targets_train) > 0 and not torch.all(model.encoder.param_scale == 1)
    arch, params = trained_sirens
    moved = random_transform(arch, params, "PD", generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(params), rtol=1e-7, atol=1e-9)



def test_report_tabulates_the_encoder_and_each_baseline_of_a_task_run(classify_run, tmp_path, capsys):
    from gmnae.cli import main

    assert main(["report", str(classify_run), "--out", str(tmp_path / "table.csv")]) == 0
    with open(tmp_path / "table.csv", newline="") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    res = json.loads((classify_run / "results.json").read_text())
    assert list(rows) == [r["baseline"] for r in res["rows"]]  # encoder first, then every baseline
    for r in res["rows"]:  # one run: its own values, no std
        for split in ("val", "test"):
            assert float(rows[r["baseline"]][f"{split}/accuracy mean"]) == pytest.approx(r[split], rel=1e-6)
            assert rows[r["baseline"]][f"{split}/accuracy std"] == "nan" and rows[r["baseline"]]["n"] == "1"
    assert f"| statnn | {res['rows'][1]['val']:.4g} |" in capsys.readouterr().out
    assert main(["report", str(classify_run), "--metrics", "test/*"]) == 0  # columns by pattern
    assert capsys.readouterr().out.splitlines()[0] == "| group | row | test/accuracy | test/loss | n | seeds |"

def test_predict_accuracy_run_reports_kendall_tau(digits_cnn_zoo, tmp_path):
    run = train(load_config(["task=predict-accuracy"] + tiny_overrides(digits_cnn_zoo.root, tmp_path, "digits-cnn")))
    res = json.loads((run / "results.json").read_text())
    assert res["metric"] == "kendall_tau"
    statnn = next(r for r in res["rows"] if r["baseline"] == "statnn")
    assert statnn["val"] > 0.2  # hyperparameters leave traces in the weights' statistics (Unterthiner et al.)
    assert -1.0 <= res["rows"][0]["val"] <= 1.0
