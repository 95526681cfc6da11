"""`gmnae train -m` sweeps and `gmnae report` tables: real runs on a fixture zoo, numbers against numpy."""
import csv
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from gmnae.cli import main
from gmnae.commands.sweep import combinations, parse_sweep, split_values, summary

from .conftest import gmnae_cmd, run_cmd, tiny_overrides

ONE_EPOCH = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def test_values_split_at_top_level_commas_only():
    assert split_values("seed=0,1,2") == ("seed", ["0", "1", "2"])
    assert split_values("model.decoder.hidden=[64,128]") == ("model.decoder.hidden", ["[64,128]"])
    assert split_values("model.decoder.hidden=[64,128],[32,32]") == ("model.decoder.hidden", ["[64,128]", "[32,32]"])
    assert split_values("run_name='a,b'") == ("run_name", ["'a,b'"])
    fixed, axes = parse_sweep(["seed=0,1", "optim.lr=1e-3", "model.encoder.symmetry=permutation,sign"])
    assert fixed == ["optim.lr=1e-3"] and list(axes) == ["seed", "model.encoder.symmetry"]
    assert combinations(axes) == [{"seed": "0", "model.encoder.symmetry": "permutation"},
                                  {"seed": "0", "model.encoder.symmetry": "sign"},
                                  {"seed": "1", "model.encoder.symmetry": "permutation"},
                                  {"seed": "1", "model.encoder.symmetry": "sign"}]
    assert summary({"seed": "1", "dataset.zoo": "/a b/c"}) == "seed=1,dataset.zoo=_a_b_c"


@pytest.mark.parametrize("args,says", [
    (["seed=0,,1"], "sweep override 'seed=0,,1' has an empty value"),
    (["model.decoder.hidden=[1,2"], "has an unclosed bracket; a literal list is written whole in brackets"),
    (["seed=0,1", "seed=2,3"], "sweep: seed is swept twice"),
    (["run_name=a,b"], "sweep: run_name cannot be swept"),
    (["seed=0,1", "model.encoder.symetry=permutation,sign"],
     "command line: unknown config key 'model.encoder.symetry' (= 'permutation'); the nearest valid key is "
     "'model.encoder.symmetry' (sweep run seed=0,model.encoder.symetry=permutation)"),
    (["seed=0,1", "optim.lr=1e-3,abc"], "command line: optim.lr = 'abc' is not a number"),
])
def test_bad_sweep_is_one_line_before_anything_runs(tmp_path, capsys, args, says):
    assert main(["train", "-m", *args, f"runs_dir={tmp_path}/runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_sweep_into_a_folder_that_cannot_be_written_is_one_line(capsys):
    assert main(["train", "-m", "seed=0,1", "runs_dir=/proc/gmnae-runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert "sweep folder /proc/gmnae-runs/" in err and "cannot write in /proc" in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def seed_sweep(digits_inr_zoo, tmp_path_factory):
    """`gmnae train -m seed=0,1` on the fixture zoo: two real one-epoch runs, each its own process."""
    runs = tmp_path_factory.mktemp("sweep")
    proc = run_cmd(gmnae_cmd("train", "-m", "seed=0,1", *tiny_overrides(digits_inr_zoo.root, runs), *ONE_EPOCH))
    return runs / "digits-inr-scalegmn-small-sweep", proc.stdout


def test_sweep_runs_every_value_named_by_its_override(seed_sweep):
    folder, out = seed_sweep
    manifest = json.loads((folder / "sweep.json").read_text())
    names = [r["name"] for r in manifest["runs"]]
    assert names == ["digits-inr-scalegmn-small-seed=0", "digits-inr-scalegmn-small-seed=1"]
    assert [r["status"] for r in manifest["runs"]] == ["done", "done"] and manifest["axes"] == {"seed": ["0", "1"]}
    for seed, name in enumerate(names):
        run = folder / name
        assert f"seed: {seed}\n" in (run / "config.yaml").read_text()
        assert f"run_name: {name}\n" in (run / "config.yaml").read_text()
        assert (run / "checkpoints" / "last.ckpt").exists()
        assert f"  {name}: done" in out
    assert "sweep: 2 of 2 runs done" in out
    # the two seeds trained different networks (the seed reached each process)
    psnr = [_final(folder / n, "val/psnr") for n in names]
    assert psnr[0] != psnr[1]


def _final(run, column):
    """The last logged value of a metrics.csv column, read with pandas (not the code under test)."""
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    return float(frame[column].dropna().iloc[-1])


def test_report_prints_mean_and_std_over_the_seeds(seed_sweep, tmp_path, capsys):
    folder, _ = seed_sweep
    assert main(["report", str(folder), "--out", str(tmp_path / "table.csv")]) == 0
    printed = capsys.readouterr().out
    runs = sorted(p for p in folder.iterdir() if (p / "config.yaml").exists())
    with open(tmp_path / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["n"] == "2" and rows[0]["seeds"] == "0,1" and rows[0]["row"] == "encoder"
    for metric in ("val/psnr", "val/loss"):
        values = np.array([_final(r, metric) for r in runs])
        mean, std = values.mean(), values.std(ddof=1)
        assert float(rows[0][f"{metric} mean"]) == pytest.approx(mean, rel=1e-12)
        assert float(rows[0][f"{metric} std"]) == pytest.approx(std, rel=1e-9)
        assert f"{mean:.4g} ± {std:.2g}" in printed


@pytest.mark.slow  # ~30 s on 2 busy cores: two more processes that import Lightning
def test_failed_runs_do_not_stop_the_sweep_and_report_names_them(seed_sweep, tmp_path, capsys):
    """Both runs of a sweep fail (no zoo): the second still runs; the report names both and still
    aggregates the good sweep."""
    cmd = gmnae_cmd("train", "-m", "seed=0,1", f"dataset.zoo={tmp_path}/missing", f"runs_dir={tmp_path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = tmp_path / "digits-inr-scalegmn-small-sweep"
    manifest = json.loads((failed / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["failed", "failed"]
    assert all("gmnae: error: no zoo at" in r["error"] for r in manifest["runs"])
    assert "sweep: 0 of 2 runs done" in proc.stdout and proc.stdout.count("FAILED (exit 2): gmnae: error: no zoo") == 2
    assert main(["report", str(seed_sweep[0]), str(failed)]) == 0
    out, err = capsys.readouterr()
    skipped = [line for line in err.splitlines() if line.startswith("gmnae report: skipped")]
    assert len(skipped) == 2 and "digits-inr-scalegmn-small-seed=1: sweep run failed (gmnae: error: no zoo" in skipped[1]
    assert "| all runs | encoder |" in out and "| 2 | 0,1 |" in out


def test_print_config_shows_every_combination_and_writes_nothing(tmp_path, capsys):
    """A swept group leaves the shared name (it is in each run's summary); the seed stays when not swept."""
    assert main(["train", "-m", "--print-config", "model=scalegmn-small,scalegmn-inr", "optim.lr=1e-3,3e-4",
                 f"runs_dir={tmp_path}/runs"]) == 0
    out = capsys.readouterr().out
    names = [line[:-1] for line in out.splitlines() if line.startswith("digits-inr-s0-")]
    assert names == ["digits-inr-s0-model=scalegmn-small,optim.lr=1e-3", "digits-inr-s0-model=scalegmn-small,optim.lr=3e-4",
                     "digits-inr-s0-model=scalegmn-inr,optim.lr=1e-3", "digits-inr-s0-model=scalegmn-inr,optim.lr=3e-4"]
    assert out.count("  name: scalegmn-inr\n") == 2 and out.count("  lr: 0.0003\n") == 2
    assert not (tmp_path / "runs").exists()
