"""The forge trains real zoos; an interrupted build resumes to exactly the same zoo."""
import numpy as np
import pytest

from gmnae.cli import main
from gmnae.errors import GmnaeError
from gmnae.zoo import Zoo, verify_zoo
from gmnae.zoo.forge import BuildInterrupted, build_zoo


def test_inr_zoo_is_trained_and_split_by_image(digits_inr_zoo):
    assert verify_zoo(digits_inr_zoo.root)
    psnr = np.concatenate([digits_inr_zoo.read_meta(s)["psnr"] for s in digits_inr_zoo.splits])
    assert np.median(psnr) > 25
    images = {s: set(digits_inr_zoo.read_meta(s)["image_index"].tolist()) for s in digits_inr_zoo.splits}
    assert not (images["train"] & images.get("val", set())) and not (images["train"] & images.get("test", set()))
    meta = digits_inr_zoo.read_meta("train")
    # Every image has both seeds, with different initialisations.
    _, counts = np.unique(meta["image_index"], return_counts=True)
    assert set(counts.tolist()) == {2} and len(set(meta["init_seed"].tolist())) == len(meta["init_seed"])


def test_cnn_zoo_spreads_accuracy_and_records_hparams(digits_cnn_zoo):
    meta = {k: np.concatenate([digits_cnn_zoo.read_meta(s)[k] for s in digits_cnn_zoo.splits])
            for k in ("test_accuracy", "lr", "activation", "train_fraction")}
    acc = meta["test_accuracy"]
    assert acc.max() > 0.85 and acc.min() < 0.6  # a spread, as in the original zoo
    assert set(meta["activation"].tolist()) == {"relu", "tanh"}
    assert digits_cnn_zoo.arch.activation == "mixed" and digits_cnn_zoo.arch.n_params == 4970


@pytest.mark.parametrize("name,kw", [("digits-inr", dict(size=12, seeds=2, steps=20, block_size=8)),
                                     ("digits-cnn", dict(size=20, steps=15, block_size=8))])
def test_interrupted_build_resumes_to_same_zoo(tmp_path, name, kw):
    whole = build_zoo(name, tmp_path / "whole", progress=False, **kw)
    with pytest.raises(BuildInterrupted):
        build_zoo(name, tmp_path / "cut", progress=False, stop_after_blocks=1, **kw)
    assert (tmp_path / "cut" / ".build" / "block-00000.h5").exists()
    assert not (tmp_path / "cut" / "manifest.json").exists()
    with pytest.raises(GmnaeError, match="other settings"):
        build_zoo(name, tmp_path / "cut", progress=False, **{**kw, "steps": kw["steps"] + 1})
    resumed = build_zoo(name, tmp_path / "cut", progress=False, **kw)
    a, b = Zoo(whole), Zoo(resumed)
    assert a.splits == b.splits
    for s in a.splits:
        np.testing.assert_array_equal(a.read_params(s), b.read_params(s))
        np.testing.assert_array_equal(a.read_meta(s)["id"], b.read_meta(s)["id"])
    assert not (tmp_path / "cut" / ".build").exists()


def test_build_cli_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "z"
    assert main(["zoo", "build", "digits-cnn", "--size", "6", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["zoo", "build", "digits-cnn", "--size", "6", "--out", str(out), "--no-progress"]) == 2
    assert "already holds a finished zoo" in capsys.readouterr().err
    assert main(["zoo", "build", "nope", "--out", str(tmp_path / "n")]) == 2
