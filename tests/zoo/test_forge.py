"""The forge trains real zoos; an interrupted build resumes to exactly the same zoo."""
import json

import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.errors import GmnaeError
from gmnae.tasks import mnist5k
from gmnae.weightspace import build_module
from gmnae.zoo import Zoo, verify_zoo
from gmnae.zoo.forge import build_zoo
from gmnae.zoo.shard_writer import BuildInterrupted


@pytest.fixture(scope="module")
def mnist5k_cnn_zoo(tmp_path_factory) -> Zoo:
    """24 CNNs trained briefly on the 5k MNIST digits, the Small CNN Zoo's hyperparameters drawn per network."""
    out = tmp_path_factory.mktemp("zoos") / "mnist5k-cnn"
    # One thread: these small grouped convs gain little from two and stall badly on a busy machine.
    build_zoo("mnist5k-cnn", out, progress=False, threads=1, size=24, steps=150, block_size=24)
    return Zoo(out)


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


def _all_meta(zoo: Zoo) -> dict[str, np.ndarray]:
    metas = [zoo.read_meta(s) for s in zoo.splits]
    return {k: np.concatenate([m[k] for m in metas]) for k in metas[0]}


def test_mnist5k_cnn_zoo_mirrors_the_small_cnn_zoo(mnist5k_cnn_zoo):
    zoo = mnist5k_cnn_zoo
    assert verify_zoo(zoo.root)
    assert zoo.arch.n_params == 4970 and zoo.arch.activation == "mixed" and tuple(zoo.arch.image_size) == (28, 28)
    assert all(l.padding == "valid" for l in zoo.arch.layers if l.layer_type == "conv")  # Keras' default, as the zoo
    assert zoo.task["name"] == "mnist5k" and (zoo.task["n_train"], zoo.task["n_test"]) == (4000, 1000)
    recipe = json.loads((zoo.root / "manifest.json").read_text())["recipe"]
    assert "log-uniform [0.0005, 0.05]" == recipe["hyperparameters"]["lr"] and recipe["sources"]
    meta = _all_meta(zoo)
    acc = meta["test_accuracy"]
    assert acc.max() > 0.6 and acc.min() < 0.3  # a spread, far above chance at the top
    assert set(meta["activation"].tolist()) == {"relu", "tanh"}
    assert set(meta["train_fraction"].tolist()) <= {0.1, 0.25, 0.5, 1.0}
    assert set(meta["optimizer"].tolist()) <= {"adam", "rmsprop", "sgd"}
    assert ((5e-4 <= meta["lr"]) & (meta["lr"] <= 5e-2)).all() and ((0 <= meta["dropout"]) & (meta["dropout"] <= 0.7)).all()
    for key in ("l2", "init_std", "initializer", "seed", "test_loss", "train_accuracy", "train_loss"):
        assert len(meta[key]) == len(acc)


def test_mnist5k_cnn_test_accuracy_reproduces_from_the_shard(mnist5k_cnn_zoo):
    """Each stored network, reloaded as a plain nn.Module, scores exactly its stored held-out accuracy."""
    x, y = mnist5k.classification_images("test", mnist5k_cnn_zoo.task["split_seed"])
    for split in mnist5k_cnn_zoo.splits:
        params = torch.from_numpy(mnist5k_cnn_zoo.read_params(split))
        meta = mnist5k_cnn_zoo.read_meta(split)
        for flat, act, stored in zip(params, meta["activation"], meta["test_accuracy"]):
            with torch.no_grad():
                hits = (build_module(mnist5k_cnn_zoo.arch, flat, str(act))(x).argmax(-1) == y).sum().item()
            assert hits == round(stored * len(y))  # the same count of correct digits


@pytest.mark.parametrize("name,kw", [("digits-inr", dict(size=12, seeds=2, steps=20, block_size=8)),
                                     ("digits-cnn", dict(size=20, steps=15, block_size=8)),
                                     ("mnist5k-cnn", dict(size=6, steps=3, block_size=4, threads=1))])
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
    assert main(["zoo", "build", "mnist5k-cnn", "--size", "2", "--steps", "1", "--threads", "1",
                 "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out


def test_mnist5k_inr_zoo_renders_its_digits(tmp_path):
    """A real build: each INR, rendered independently, matches its own MNIST digit far better than others'."""
    import torch

    from gmnae.tasks import mnist5k
    from gmnae.tasks.grid import coordinate_grid
    from gmnae.weightspace import siren_render

    zoo = Zoo(build_zoo("mnist5k-inr", tmp_path / "z", progress=False, size=40, steps=120, block_size=20))
    meta = zoo.read_meta("train")
    params = torch.from_numpy(zoo.read_params("train"))
    render = siren_render(zoo.arch, params, coordinate_grid(28)).squeeze(-1).detach()
    own = mnist5k.inr_targets()[torch.from_numpy(meta["image_index"])]
    mse_own = (render - own).pow(2).mean(1)
    np.testing.assert_allclose(mse_own.numpy(), meta["mse"], rtol=1e-4)
    mse_other = (render - own.roll(1, 0)).pow(2).mean(1)
    assert float(mse_own.max()) < float(mse_other.min())
    assert np.median(meta["psnr"]) > 25
    np.testing.assert_array_equal(meta["label"], mnist5k.labels().numpy()[meta["image_index"]])
    assert len(set(meta["label"].tolist())) >= 8  # --size takes a shuffled subset, not the sorted file's first class
    assert zoo.task["fit"]["steps"] == 120 and len(set(meta["init_seed"].tolist())) == len(meta["init_seed"])


def test_mnist5k_inr_shared_init_starts_every_network_from_one_draw(tmp_path):
    from gmnae.zoo.inr_forge import MNIST5kINRConfig, MNIST5kINRForge

    shared = MNIST5kINRForge(MNIST5kINRConfig(size=6, init="shared"))
    init = shared.initial_params(shared.init_seeds(np.arange(6)))
    assert (init == init[0]).all()
    indep = MNIST5kINRForge(MNIST5kINRConfig(size=6))
    init = indep.initial_params(indep.init_seeds(np.arange(6)))
    assert not (init[1] == init[0]).all()
    # the published init: zero hidden biases, first layer within +-1/2
    from gmnae.weightspace import unflatten

    layers = unflatten(indep.arch, init)
    assert (layers[0][1] == 0).all() and (layers[1][1] == 0).all() and float(layers[0][0].abs().max()) <= 0.5
    with pytest.raises(GmnaeError, match="--init"):
        MNIST5kINRForge(MNIST5kINRConfig(init="nope"))
