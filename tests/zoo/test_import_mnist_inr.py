"""MNIST-INR import from DWSNets state-dict folders: parameters, splits (by path / splits JSON), targets
from a local MNIST copy, errors, resume."""
from __future__ import annotations

import json
import shutil
from collections import OrderedDict

import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.errors import GmnaeError
from gmnae.tasks.grid import coordinate_grid
from gmnae.tasks.inr_targets import inr_targets
from gmnae.weightspace import Architecture, siren_render
from gmnae.zoo import Zoo, verify_zoo
from gmnae.zoo.inr_forge import siren_init
from gmnae.zoo.import_mnist_inr import import_mnist_inr
from gmnae.zoo.shard_writer import ImportInterrupted
from tests.tasks.test_mnist import write_idx, write_png

ARCH = Architecture.siren()
N_TRAIN_IMAGES, N_TEST_IMAGES = 40, 12
TRAIN_IDX, TEST_IDX = list(range(0, 36, 1)), [0, 2, 3, 5, 7, 11]


def state_dict(flat: torch.Tensor) -> OrderedDict:
    """The DWSNets INR's state dict: seq.{0,1,2}.{weight,bias}, PyTorch shapes."""
    sd, pos = OrderedDict(), 0
    for i, l in enumerate(ARCH.layers):
        sd[f"seq.{i}.weight"] = flat[pos:pos + l.n_out * l.n_in].reshape(l.n_out, l.n_in).clone()
        pos += l.n_out * l.n_in
        sd[f"seq.{i}.bias"] = flat[pos:pos + l.n_out].clone()
        pos += l.n_out
    return sd


def make_dwsnets(root, seed=0):
    """INR folders + an MNIST copy whose images are the INRs' renderings (quantised to uint8)."""
    rng = np.random.default_rng(seed)
    mnist = {s: [rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)]
             for s, n in (("train", N_TRAIN_IMAGES), ("test", N_TEST_IMAGES))}
    inrs = {}
    coords = coordinate_grid(28)
    for s, word, idxs in (("train", "training", TRAIN_IDX), ("test", "testing", TEST_IDX)):
        params = siren_init(ARCH, [1000 * (s == "test") + i for i in idxs])
        params[:, -33:] *= 0.2  # keep the renderings near 0.5, inside [0, 1]
        with torch.no_grad():
            render = siren_render(ARCH, params, coords).squeeze(-1).clamp(0, 1)
        for j, i in enumerate(idxs):
            label = int(mnist[s][1][i])
            mnist[s][0][i] = np.round(render[j].numpy() * 255).astype(np.uint8).reshape(28, 28)
            name = f"mnist_png_{word}_{label}_{i}"
            (root / name / "checkpoints").mkdir(parents=True)
            # A random permutation of the key order would still be read right; keep DWSNets' order here.
            torch.save(state_dict(params[j]), root / name / "checkpoints" / "model_final.pth")
            inrs[name] = params[j].numpy()
    return inrs, {s: tuple(v) for s, v in mnist.items()}


@pytest.fixture(scope="module")
def dws(tmp_path_factory):
    base = tmp_path_factory.mktemp("dwsnets")
    src = base / "mnist-inrs"
    inrs, data = make_dwsnets(src)
    write_idx(base / "mnist", data)
    return src, inrs, data, base / "mnist"


def test_import_by_path_without_images(dws, tmp_path):
    src, inrs, _, _ = dws
    out = tmp_path / "mnist-inr"
    assert main(["zoo", "import", "mnist-inr", "--src", str(src.parent), "--out", str(out), "--no-progress"]) == 0
    zoo = Zoo(out)
    assert zoo.arch.family == "siren" and zoo.arch.n_params == 1185 and zoo.arch.output_offset == 0.5
    assert zoo.task["name"] == "mnist" and zoo.task["target"] == "inr-rendering"
    assert {s: zoo.count(s) for s in zoo.splits} == {"train": 33, "val": 3, "test": 6}  # val = 36 / 12
    for s in zoo.splits:
        meta, params = zoo.read_meta(s), zoo.read_params(s)
        for i, p in enumerate(meta["path"]):
            np.testing.assert_array_equal(params[i], inrs[p.split("/")[0]])
        assert list(meta["image_index"]) == sorted(meta["image_index"])
        assert set(meta["mnist_set"]) == {"test" if s == "test" else "train"}
        assert inr_targets(zoo.task, meta, zoo.root) is None  # the loss uses the INR's own rendering
    assert verify_zoo(out)["test"] == 6


@pytest.mark.parametrize("layout", ["idx", "png"])
def test_import_with_images_gives_targets(dws, tmp_path, layout):
    src, _, data, mnist_dir = dws
    if layout == "png":
        mnist_dir = tmp_path / "mnist_png"
        write_png(mnist_dir, data)
    out = import_mnist_inr(src, tmp_path / "z", images=mnist_dir, progress=False)
    zoo = Zoo(out)
    assert zoo.task["target"] == "mnist-images" and (out / zoo.task["images"]).is_file()
    for s in zoo.splits:
        meta = zoo.read_meta(s)
        targets = inr_targets(zoo.task, meta, zoo.root)
        assert targets.shape == (zoo.count(s), 784)
        mset = "test" if s == "test" else "train"
        expect = data[mset][0][meta["image_index"]].reshape(-1, 784) / 255.0
        np.testing.assert_allclose(targets.numpy(), expect, atol=1e-7)
        np.testing.assert_array_equal(meta["label"], data[mset][1][meta["image_index"]])
        # The stored INRs render their images (up to uint8 rounding): row-by-row grid convention holds.
        render = siren_render(zoo.arch, torch.from_numpy(zoo.read_params(s)), coordinate_grid(28)).squeeze(-1)
        assert ((render - targets).pow(2).mean(1) < 1e-5).all()
        assert (meta["psnr"] > 50).all()


def test_splits_json(dws, tmp_path):
    src, inrs, _, _ = dws
    names = sorted(inrs)
    rng = np.random.default_rng(1)
    chosen = [names[i] for i in rng.permutation(len(names))[:20]]
    spec = {s: {"path": [f"data/mnist-inrs/{n}/checkpoints/model_final.pth" for n in part],
                "label": [n.split("_")[-2] for n in part]}
            for s, part in (("train", chosen[:12]), ("val", chosen[12:15]), ("test", chosen[15:]))}
    (tmp_path / "splits.json").write_text(json.dumps(spec))
    zoo = Zoo(import_mnist_inr(src, tmp_path / "z", splits=tmp_path / "splits.json", progress=False))
    for s in ("train", "val", "test"):
        assert [p.split("/")[0] for p in zoo.read_meta(s)["path"]] == [p.split("/")[2] for p in spec[s]["path"]]
    assert zoo.manifest["import"]["not_in_splits_file"] == len(names) - 20
    spec["test"]["path"].append("data/mnist-inrs/mnist_png_testing_4_9999/checkpoints/model_final.pth")
    spec["test"]["label"].append("4")
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(GmnaeError, match=r"lists 1 INR\(s\) that are not in --src .*\(first: data/mnist-inrs/mnist_png_testing_4_9999/"):
        import_mnist_inr(src, tmp_path / "z2", splits=tmp_path / "bad.json", progress=False)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_errors(dws, tmp_path):
    src, inrs, data, mnist_dir = dws
    with pytest.raises(GmnaeError, match="no INRs in"):
        import_mnist_inr(tmp_path, tmp_path / "z", progress=False)
    bad = _copy(src, tmp_path / "bad")
    victim = sorted(inrs)[3]
    torch.save({"seq.0.weight": torch.zeros(32, 3), "seq.0.bias": torch.zeros(32)},
               bad / victim / "checkpoints" / "model_final.pth")
    with pytest.raises(GmnaeError, match=rf"{victim}.*is not the MNIST-INR SIREN"):
        import_mnist_inr(bad, tmp_path / "z1", progress=False)
    (bad / victim / "checkpoints" / "model_final.pth").write_bytes(b"garbage")
    with pytest.raises(GmnaeError, match=rf"{victim}.*cannot be read as a PyTorch state dict"):
        import_mnist_inr(bad, tmp_path / "z2", progress=False)
    (bad / victim / "checkpoints" / "model_final.pth").unlink()
    with pytest.raises(GmnaeError, match=rf"1 INR folder\(s\) .* lack checkpoints/model_final.pth \(first: {victim}\)"):
        import_mnist_inr(bad, tmp_path / "z3", progress=False)
    # An MNIST copy whose labels disagree with the INR folders is refused.
    wrong = {s: (img, (lab + 1) % 10) for s, (img, lab) in data.items()}
    write_idx(tmp_path / "wrong", wrong)
    with pytest.raises(GmnaeError, match="do not match the images"):
        import_mnist_inr(src, tmp_path / "z4", images=tmp_path / "wrong", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GmnaeError, match="no MNIST images"):
        import_mnist_inr(src, tmp_path / "z5", images=tmp_path / "empty", progress=False)
    nan = _copy(src, tmp_path / "nan")
    sd = torch.load(nan / victim / "checkpoints" / "model_final.pth")
    sd["seq.1.bias"][0] = float("nan")
    torch.save(sd, nan / victim / "checkpoints" / "model_final.pth")
    with pytest.raises(GmnaeError, match=rf"{victim}.*NaN/Inf"):
        import_mnist_inr(nan, tmp_path / "z6", progress=False)
    zoo = Zoo(import_mnist_inr(nan, tmp_path / "z6", skip_nonfinite=True, progress=False))
    assert sum(zoo.count(s) for s in zoo.splits) == len(inrs) - 1


def test_interrupted_import_resumes(dws, tmp_path):
    src, _, _, mnist_dir = dws
    out = tmp_path / "z"
    with pytest.raises(ImportInterrupted):
        import_mnist_inr(src, out, images=mnist_dir, shard_rows=8, progress=False, stop_after_shards=2)
    assert len(list(out.glob("*.h5"))) == 2 and not (out / "manifest.json").exists()
    assert main(["zoo", "import", "mnist-inr", "--src", str(src), "--images", str(mnist_dir), "--out", str(out),
                 "--shard-rows", "8", "--no-progress"]) == 0
    fresh = Zoo(import_mnist_inr(src, tmp_path / "fresh", images=mnist_dir, shard_rows=8, progress=False))
    zoo = Zoo(out)
    for s in fresh.splits:
        assert [x.sha256 for x in zoo.shards(s)] == [x.sha256 for x in fresh.shards(s)]
    assert zoo.task["images_sha256"] == fresh.task["images_sha256"]


def test_orbit_dataset_with_augmented_folders_and_splits_file(dws, tmp_path):
    """The autoencoder paper's orbit sets: `mnist_png_testing_6_3665_augmented_{i}` folders, listed by a
    splits file with the authors' absolute paths; also folder names that say nothing (label from the file)."""
    src, inrs, _, _ = dws
    orbit = tmp_path / "orbit"
    names = sorted(inrs)[:3]
    listed = []
    for n in names:
        for i in range(2):
            (orbit / f"{n}_augmented_{i}").mkdir(parents=True)
            shutil.copytree(src / n / "checkpoints", orbit / f"{n}_augmented_{i}" / "checkpoints")
            listed.append(f"/home/someone/orbits/{n}_augmented_{i}/checkpoints/model_final.pth")
    shutil.copytree(src / names[0] / "checkpoints", orbit / "inr-0042" / "checkpoints")
    spec = {"train": {"path": listed[:4] + ["/data/inr-0042/checkpoints/model_final.pth"],
                      "label": [n.split("_")[-2] for n in names for _ in range(2)][:4] + [7]},
            "test": {"path": listed[4:], "label": [names[2].split("_")[-2]] * 2}}
    (tmp_path / "splits.json").write_text(json.dumps(spec))
    # without the splits file the _augmented_{i} folders are found too
    by_path = Zoo(import_mnist_inr(orbit, tmp_path / "by-path", progress=False))
    assert sum(by_path.count(s) for s in by_path.splits) == 6
    zoo = Zoo(import_mnist_inr(orbit, tmp_path / "z", splits=tmp_path / "splits.json", progress=False))
    assert {s: zoo.count(s) for s in zoo.splits} == {"train": 5, "test": 2}
    meta = zoo.read_meta("train")
    assert list(meta["source"]) == [p.split("/orbits/")[-1] for p in listed[:4]] + ["inr-0042/checkpoints/model_final.pth"]
    assert list(meta["augmented"]) == [0, 1, 0, 1, -1] and meta["label"][-1] == 7
    assert meta["image_index"][0] == int(names[0].split("_")[-1])
    np.testing.assert_array_equal(zoo.read_params("train")[1], inrs[names[0]])


def test_orbit_folders_named_train_parse_and_copies_of_one_image_share_a_split(dws, tmp_path):
    """`mnist_png_train_<label>_<index>_augmented_<k>` (the orbit datasets' spelling): set, image and copy come
    from the name, and without a splits file the validation draw takes whole images."""
    src, inrs, _, _ = dws
    orbit = tmp_path / "orbit"
    names = [n for n in sorted(inrs) if "_training_" in n][:12]
    for n in names:
        label, index = n.split("_")[-2:]
        for k in range(3):
            shutil.copytree(src / n / "checkpoints", orbit / f"mnist_png_train_{label}_{index}_augmented_{k}" / "checkpoints")
    zoo = Zoo(import_mnist_inr(orbit, tmp_path / "z", val_size=6, progress=False))
    split_of = {}
    for s in zoo.splits:
        meta = zoo.read_meta(s)
        assert set(meta["mnist_set"]) <= {"train"} and set(meta["augmented"]) <= {0, 1, 2}
        for index in meta["image_index"]:
            split_of.setdefault(int(index), set()).add(s)
    assert sorted(split_of) == sorted(int(n.split("_")[-1]) for n in names)  # image indices from the names
    assert all(len(splits) == 1 for splits in split_of.values()), split_of  # a copy never crosses a split
    assert zoo.count("val") == 6 and zoo.count("train") == 30


def test_corrupt_checkpoint_and_zero_shard_rows_are_one_line(dws, tmp_path, capsys):
    src, inrs, _, _ = dws
    bad = _copy(src, tmp_path / "bad")
    victim = sorted(inrs)[3]
    (bad / victim / "checkpoints" / "model_final.pth").write_bytes(b"garbage")  # torch: 6 lines
    assert main(["zoo", "import", "mnist-inr", "--src", str(bad), "--out", str(tmp_path / "z"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and victim in err and "cannot be read as a PyTorch state dict" in err, err
    assert main(["zoo", "import", "mnist-inr", "--src", str(src), "--out", str(tmp_path / "z0"),
                 "--shard-rows", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gmnae: error: --shard-rows 0: must be at least 1 (default 8192)", err
    assert not (tmp_path / "z0").exists()  # no .build/ left to be mistaken for an unfinished import
