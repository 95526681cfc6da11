"""experiments/: every study's config is complete, its commands resolve, and the runner writes a results file."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import yaml

from experiments import runner

ROOT = Path(__file__).resolve().parents[2]


def test_every_study_runs_as_a_module_and_names_its_doc():
    names = runner.studies()
    assert len(names) >= 9
    for name in names:
        cfg = runner.load_config(name)
        assert (ROOT / "experiments" / name / "__main__.py").is_file(), name
        assert (ROOT / cfg["doc"]).is_file(), f"{name}: {cfg['doc']} missing"
        assert f"python -m experiments.{name}" in (ROOT / cfg["doc"]).read_text(), \
            f"{cfg['doc']} does not name the command that regenerates it"
        for t in cfg["tables"].values():
            assert t.get("table"), f"{name}: a table without a table command"


def test_every_python_module_a_study_calls_exists():
    for name in runner.studies():
        for t in runner.load_config(name)["tables"].values():
            for c in runner.expand(t.get("runs"), [0], ROOT) + runner.expand(t.get("table"), [0], ROOT):
                if c.argv[:2] == [sys.executable, "-m"]:
                    assert importlib.util.find_spec(c.argv[2]) is not None, f"{name}: no module {c.argv[2]}"


def test_dry_run_prints_each_seed_once(capsys):
    assert runner.run_study("merge_finetune", ["--dry-run", "--only", "digits-inr"]) == 0
    out = capsys.readouterr().out
    for seed in (0, 1, 2):
        assert f"run_name=ft-digits-inr-s{seed}" in out
    assert runner.run_study("merge_finetune", ["--dry-run", "--only", "cnn"]) == 0
    assert "fid-digits-cnn-s1" not in capsys.readouterr().out  # the table fixes its own seeds


def test_runner_writes_results_with_commit_load_and_seeds(tmp_path, monkeypatch):
    study = tmp_path / "toy"
    study.mkdir()
    (study / "config.yaml").write_text(yaml.safe_dump({
        "title": "Toy", "doc": "docs/results/toy.md", "seeds": [3, 4],
        "tables": {"t": {"title": "A toy table",
                         "runs": [{"cmd": "python -c 'open(\"" + str(tmp_path) + "/made\", \"w\")'",
                                   "creates": str(tmp_path / "made")}],
                         "table": ["python -c 'print(\"| seed | {seed} |\")'"], "markdown": True}}}))
    monkeypatch.setattr(runner, "EXPERIMENTS", tmp_path)
    assert runner.run_study("toy", ["--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "made").exists()
    assert "| seed | 3 |" in text and "| seed | 4 |" in text
    assert "commit " in text and "load before" in text and "Seeds 3, 4." in text
    assert runner.run_study("toy", ["--out", str(tmp_path / "out"), "--seeds", "7"]) == 0  # skips the made run
    assert "| seed | 7 |" in (tmp_path / "out" / "results.md").read_text()


def test_diagnostics_import_as_a_package():
    for mod in ("experiments.rendering_pca", "experiments.ae_ceilings.ceilings",
                "experiments.decoder_or_encoder.decoder_ceiling", "experiments.decoder_or_encoder.image_regression",
                "experiments.decoder_or_encoder.aligned_regression", "experiments.merge_finetune.inr",
                "experiments.merge_finetune.cnn", "experiments.merge_barriers.study"):
        importlib.import_module(mod)


def test_ceilings_run_on_a_small_zoo(digits_inr_zoo, capsys):
    from experiments.ae_ceilings.ceilings import main

    main(str(digits_inr_zoo.root))
    out = capsys.readouterr().out
    assert "constant (train mean rendering)" in out and "top-8 principal components" in out


def test_scripts_holds_product_files_only():
    left = sorted(p.name for p in (ROOT / "scripts").iterdir())
    assert left == ["gpu_check.sh", "slurm"], left
