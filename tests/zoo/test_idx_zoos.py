"""`gmnae zoo build fmnist-inr | mnist-inr --src DIR`: one SIREN per image of a (tiny) IDX set, split as the
published INR zoos, labels with each INR, the images stored in the zoo; bad input writes nothing."""
import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.tasks.grid import coordinate_grid
from gmnae.tasks.inr_targets import inr_targets
from gmnae.weightspace import siren_render
from gmnae.zoo import Zoo, verify_zoo
from tests.tasks.test_idx_datasets import write_idx_set


@pytest.fixture(scope="module")
def idx_zoo(tmp_path_factory):
    src = tmp_path_factory.mktemp("fashion")
    data = write_idx_set(src, n_train=36, n_test=8, gz=True)
    out = tmp_path_factory.mktemp("zoos") / "fmnist-inr"
    assert main(["zoo", "build", "fmnist-inr", "--src", str(src), "--out", str(out), "--steps", "60",
                 "--block-size", "16", "--no-progress"]) == 0
    return Zoo(out), data


def test_every_image_gets_one_inr_in_the_published_split(idx_zoo):
    zoo, data = idx_zoo
    assert verify_zoo(zoo.root) == {"train": 33, "val": 3, "test": 8}  # val: 1/12 of a set this small
    seen = {"train": [], "test": []}
    for split in zoo.splits:
        meta = zoo.read_meta(split)
        sets = meta["mnist_set"].astype(str)
        assert set(sets) == ({"test"} if split == "test" else {"train"})  # the test images are the test split
        for s, i, label in zip(sets, meta["image_index"], meta["label"]):
            seen[s].append(i)
            assert label == data[s][1][i]
    assert sorted(seen["train"]) == list(range(36)) and sorted(seen["test"]) == list(range(8))


def test_inrs_render_their_own_image(idx_zoo):
    """Each INR is closer to its own image than to any other: the fit, the targets and the labels line up."""
    zoo, data = idx_zoo
    meta, params = zoo.read_meta("train"), torch.from_numpy(zoo.read_params("train"))
    stored = inr_targets(zoo.task, meta, zoo.root)  # what training compares against: the images in the zoo folder
    expected = torch.from_numpy(data["train"][0][meta["image_index"]].reshape(len(params), -1) / 255.0).float()
    torch.testing.assert_close(stored, expected)
    with torch.no_grad():
        renders = siren_render(zoo.arch, params, coordinate_grid(28)).squeeze(-1)
    err = torch.cdist(renders, expected)
    assert (err.argmin(1) == torch.arange(len(params))).all()
    assert np.median(meta["psnr"]) > 13  # random noise images: far above the constant-image 7.8 dB


def test_bad_idx_input_stops_before_anything_is_written(tmp_path, capsys):
    src = tmp_path / "src"
    write_idx_set(src, gz=False)
    path = src / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    out = tmp_path / "z"
    assert main(["zoo", "build", "fmnist-inr", "--src", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "t10k-images-idx3-ubyte" in err and "truncated" in err
    assert "apt-get install dataset-fashion-mnist" in err and "--src" in err
    assert not out.exists()


def test_mnist_inr_builds_from_the_users_files_and_src_is_only_for_idx_zoos(tmp_path, capsys):
    src = tmp_path / "MNIST" / "raw"
    write_idx_set(src, n_train=12, n_test=4, gz=False)
    out = tmp_path / "mnist-inr"
    assert main(["zoo", "build", "mnist-inr", "--src", str(tmp_path), "--out", str(out), "--steps", "5",
                 "--no-progress"]) == 0
    zoo = Zoo(out)
    assert zoo.name == "mnist-inr" and zoo.task["name"] == "mnist" and sum(verify_zoo(out).values()) == 16
    capsys.readouterr()
    assert main(["zoo", "build", "digits-inr", "--src", str(tmp_path), "--out", str(tmp_path / "d"),
                 "--no-progress"]) == 2
    assert "--src is for" in capsys.readouterr().err
    assert main(["zoo", "build", "mnist-inr", "--out", str(tmp_path / "m2"), "--no-progress"]) == 2
    assert "no MNIST folder given" in capsys.readouterr().err and not (tmp_path / "m2").exists()
