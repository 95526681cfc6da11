"""The interpolation callback: numbers, files, TensorBoard, DDP agreement; `gmnae evaluate`."""
import csv
import json
from html.parser import HTMLParser

import pytest
import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.cli import main
from gmnae.config.load import load_config
from gmnae.evaluation.merge_evaluation import MergeEvaluation, _local_indices, _reassemble
from gmnae.merge.barriers import barrier
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import siren_render
from gmnae.commands.train import train

from ..training.conftest import gmnae_cmd, run_cmd, tiny_overrides

EVAL = {"evaluation.enabled": "true", "evaluation.every_n_val_epochs": 1, "evaluation.pairs_per_type": 3,
        "evaluation.lambdas": 5, "evaluation.max_iter": 20, "evaluation.reconstructions": 3}


@pytest.fixture(scope="module")
def eval_run(digits_inr_zoo, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train(load_config(tiny_overrides(digits_inr_zoo.root, runs, run_name="eval", **EVAL)))


def test_round_robin_shards_reassemble():
    n, world = 7, 3
    shards = []
    for rank in range(world):
        idx, real = _local_indices(n, rank, world)
        assert len(idx) == 3 and real == len(range(rank, n, world))
        shards.append(idx * 10)
    assert _reassemble(torch.stack(shards), n, world).tolist() == [i * 10 for i in range(n)]


def test_run_writes_csv_png_html(eval_run):
    ev = eval_run / "eval"
    rows = list(csv.DictReader(open(ev / "barriers.csv")))
    kinds = {r["kind"] for r in rows}
    methods = {r["method"] for r in rows}
    assert kinds == {"orbit-P", "orbit-D", "orbit-PD", "independent"}
    assert methods == {"naive", "wm", "wm-signed", "ae", "ae-endpoints"}
    assert {r["step"] for r in rows} == {"3", "6"}  # each validation epoch; the end of fit adds none
    curves = list(csv.DictReader(open(ev / "curves.csv")))
    assert len(curves) == 4 * 5 * 5 * 2  # kinds x methods x lambdas x metrics (target and endpoint)
    assert (ev / "curves.png").read_bytes()[:4] == b"\x89PNG" and (ev / "reconstructions.png").exists()

    class Parser(HTMLParser):
        tags, images = [], 0

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.images += tag == "img" and dict(attrs)["src"].startswith("data:image/png;base64,")

    p = Parser()
    p.feed((eval_run / "report.html").read_text())
    assert "table" in p.tags and p.images >= 2
    assert "Fidelity: does the decoded network reproduce its own input?" in (eval_run / "report.html").read_text()


def test_barriers_match_curves_and_naive_orbit_is_worse(eval_run):
    """Weight matching undoes the planted transforms of orbit pairs: their barriers drop below naive."""
    rows = [r for r in csv.DictReader(open(eval_run / "eval" / "barriers.csv")) if r["step"] == "6"]
    by = {(r["kind"], r["method"]): float(r["barrier_mean"]) for r in rows}
    assert by[("orbit-PD", "wm-signed")] < by[("orbit-PD", "naive")]
    assert by[("orbit-P", "wm")] < by[("orbit-P", "naive")]


def test_tensorboard_has_scalars_and_images(eval_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(eval_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "interp/independent/ae/barrier" in scalars and "interp/orbit-PD/wm-signed/barrier" in scalars
    assert "recon/psnr_decoded_vs_original" in scalars
    assert {"recon/fidelity_psnr_own", "recon/fidelity_psnr_other", "recon/fidelity_blind_psnr_own",
            "interp/independent/ae/mid_mse"} <= set(scalars)
    assert {"interp/curves", "interp/reconstructions"} <= set(acc.Tags()["images"])


def test_callback_scalars_match_standalone_evaluation(eval_run, digits_inr_zoo):
    model = WeightSpaceAutoencoder.load_from_checkpoint(eval_run / "checkpoints" / "last.ckpt")
    cfg = load_config(tiny_overrides(digits_inr_zoo.root, eval_run.parent, **EVAL))
    result = MergeEvaluation.from_config(digits_inr_zoo, cfg).run(model)
    rows = [r for r in csv.DictReader(open(eval_run / "eval" / "barriers.csv")) if r["step"] == "6"]
    for r in rows:
        curves = result.curves[r["kind"]][r["method"]][r["metric"]]
        assert float(r["barrier_mean"]) == pytest.approx(float(barrier(curves).mean()), rel=1e-4, abs=1e-6)
        mid = curves[:, len(result.lambdas) // 2]  # 5 points: λ = 0.5 is the middle one
        assert float(r["mid_" + r["metric"] + "_mean"]) == pytest.approx(float(mid.mean()), rel=1e-4, abs=1e-7)
    # fidelity, by hand: decoded INRs of the independent pairs against their own and another image's rendering
    ps = MergeEvaluation.from_config(digits_inr_zoo, cfg).pair_sets["independent"]
    nets = torch.cat([ps.a, ps.b])
    with torch.no_grad():
        z = model.encode(nets)
        grid = coordinate_grid(28)
        orig, rec, blind = (siren_render(digits_inr_zoo.arch, p, grid)[..., 0].double()
                            for p in (nets, model.decode(z), model.decode(z.mean(0, keepdim=True))))
    n = len(ps)
    other = [(i + 1) % (2 * n) for i in range(2 * n)]  # the next network: the next pair's, so another image
    assert n > 1 and (ps.index_a != ps.index_b).all()
    db = lambda u, v: float((10 * torch.log10(1 / (u - v).pow(2).mean(-1))).mean())  # noqa: E731
    fid = result.fidelity()[""]
    assert fid["psnr_own"] == pytest.approx(db(rec, orig), abs=1e-4)
    assert fid["psnr_other"] == pytest.approx(db(rec, orig[other]), abs=1e-4)
    assert fid["blind_psnr_own"] == pytest.approx(db(blind.expand_as(orig), orig), abs=1e-4)
    assert "fidelity (own vs another network's original)" in result.table()


def test_evaluate_command(eval_run, tmp_path, capsys):
    ckpt = eval_run / "checkpoints" / "last.ckpt"
    assert main(["evaluate", str(ckpt), "--split", "test", "--pairs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "loss barrier" in out and "wm-signed" in out and "ae-endpoints" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {r["method"] for r in summary["barriers"]} >= {"naive", "ae"}
    assert (tmp_path / "report.html").exists()
    assert main(["evaluate", str(tmp_path / "missing.ckpt")]) == 2


def test_callback_under_two_process_ddp_equals_one_process(digits_cnn_zoo, tmp_path):
    """Same checkpoint, same pairs: the gathered 2-rank evaluation equals the 1-process one."""
    base = tiny_overrides(digits_cnn_zoo.root, tmp_path, "digits-cnn", run_name="ddp-eval",
                          **{**EVAL, "trainer.max_epochs": 1, "dataset.activation": "relu"})
    run_cmd(gmnae_cmd("train", *base, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"), timeout=300)
    rows = [r for r in csv.DictReader(open(tmp_path / "ddp-eval" / "eval" / "barriers.csv"))]
    assert {r["kind"] for r in rows} == {"orbit-P", "orbit-S", "orbit-PS", "independent"}
    model = WeightSpaceAutoencoder.load_from_checkpoint(tmp_path / "ddp-eval" / "checkpoints" / "last.ckpt")
    cfg = load_config(base)
    single = MergeEvaluation.from_config(digits_cnn_zoo, cfg).run(model)
    for r in rows:
        curves = single.curves[r["kind"]][r["method"]][r["metric"]]
        assert float(r["barrier_mean"]) == pytest.approx(float(barrier(curves).mean()), rel=1e-4, abs=1e-6), r


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_evaluate_on_a_gpu_that_is_not_there(eval_run, capsys):
    assert main(["evaluate", str(eval_run / "checkpoints" / "last.ckpt"), "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: this machine has no CUDA GPU" in err and "--device cpu" in err and len(err.splitlines()) == 1


def test_evaluate_when_the_zoo_moved(eval_run, tmp_path, capsys):
    cfg = (eval_run / "config.yaml").read_text()
    zoo = next(line.split(": ", 1)[1] for line in cfg.splitlines() if line.strip().startswith("zoo: "))
    (tmp_path / "config.yaml").write_text(cfg.replace(zoo, str(tmp_path / "moved")))
    args = ["evaluate", str(eval_run / "checkpoints" / "last.ckpt"), "--config", str(tmp_path / "config.yaml"),
            "--pairs", "2", "--lambdas", "3", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"the run's zoo {tmp_path / 'moved'}" in err and "pass --zoo DIR" in err and len(err.splitlines()) == 1
    assert main([*args, "--zoo", zoo]) == 0


def test_report_reads_as_a_report(eval_run):
    """Training curves and the barrier history as figures (not a CSV dump), the pair kinds explained,
    the reconstruction table with its split and units."""
    text = (eval_run / "report.html").read_text()
    for heading in ("Training curves", "Barrier history", "Reconstruction quality on the val split",
                    "Loss barriers on the val split"):
        assert f"<h2>{heading}" in text, heading
    assert 'alt="training curves"' in text and 'alt="barrier history"' in text and "<pre>step,epoch" not in text
    assert "<b>P</b> permutes hidden neurons" in text and "<b>independent</b>" in text
    assert "<td>dB</td>" in text


def test_no_best_highlight_for_an_autoencoder_worse_than_the_mean_network():
    from gmnae.evaluation.merge_evaluation import EvaluationResult
    from gmnae.evaluation.report import barrier_table_html

    lam = torch.linspace(0, 1, 5)
    bump = lambda h: (h * torch.sin(torch.pi * lam)).repeat(3, 1)  # noqa: E731 - barrier h on every pair
    curves = {"independent": {"naive": {"mse": bump(0.5)}, "wm": {"mse": bump(0.2)}, "ae": {"mse": bump(0.01)}}}
    good = {"psnr_decoded_vs_original": 20.0, "psnr_baseline_mean_network_vs_original": 10.0}
    bad = {"psnr_decoded_vs_original": 8.0, "psnr_baseline_mean_network_vs_original": 10.0}
    table = lambda recon: barrier_table_html(EvaluationResult(lam, curves, {"independent": "mse"},  # noqa: E731
                                                              {"independent": False}, recon))
    assert '<th>ae</th><td class="best">' in table(good)
    assert '<th>wm</th><td class="best">' in table(bad) and '<th>ae</th><td class="best">' not in table(bad)
    assert "not ranked" in table(bad)
