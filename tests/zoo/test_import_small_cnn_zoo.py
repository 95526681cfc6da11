"""Small CNN Zoo import: tiny files in the exact published formats, checked against an independent
TensorFlow-layout forward pass, the published split re-derived independently, errors, resume."""
from __future__ import annotations

import csv
import gzip
import json
import pickle
import random

import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.zoo.small_cnn_zoo_files import SMALL_CNN_ZOO_CIFAR10_ORDER
from gmnae.errors import GmnaeError
from gmnae.tasks.classification import task_images
from gmnae.weightspace import build_module, cnn_forward
from gmnae.zoo import Zoo, verify_zoo
from gmnae.zoo.import_small_cnn_zoo import import_small_cnn_zoo
from gmnae.zoo.shard_writer import ImportInterrupted
from gmnae.zoo.small_cnn_zoo_files import read_order

# The columns of the zoo's metrics.csv.gz, as its README (google-research/dnn_predict_accuracy) lists them.
COLUMNS = ["config.activation", "config.b_init", "config.dataset", "config.dnn_architecture", "config.dropout",
           "config.epochs", "config.epochs_between_checkpoints", "config.init_std", "config.l2reg",
           "config.learning_rate", "config.num_layers", "config.num_units", "config.optimizer", "config.random_seed",
           "config.train_fraction", "config.w_init", "modeldir", "step", "test_accuracy", "test_loss",
           "train_accuracy", "train_loss"]
STEPS = [0, 1, 2, 3, 20, 40, 60, 80, 86]
# layout.csv as TensorFlow lists the variables (by name: bias before kernel), TF shapes, kernels HWIO.
LAYOUT = [("sequential/conv2d/bias:0", (16,)), ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
          ("sequential/conv2d_1/bias:0", (16,)), ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
          ("sequential/conv2d_2/bias:0", (16,)), ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
          ("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (16, 10))]
N_NETS = 40


def write_layout(path, layout=LAYOUT, shuffle_lines=True):
    rows, pos = [], 0
    for name, shape in layout:
        size = int(np.prod(shape))
        rows.append((name, pos, pos + size, str(tuple(shape))))
        pos += size
    lines = list(rows)
    if shuffle_lines:  # the importer must go by start/end indices, not by line order
        random.Random(1).shuffle(lines)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["varname", "start_idx", "end_idx", "shape"])
        w.writerows(lines)
    return {name: (s, e, shape) for name, s, e, shape in [(r[0], r[1], r[2], eval(r[3])) for r in rows]}


def write_metrics(path, cols: dict[str, list], columns=COLUMNS):
    n = len(cols["step"])
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i in range(n):
            w.writerow([cols[c][i] for c in columns])


def make_zoo(root, n_nets=N_NETS, seed=0):
    """A Small CNN Zoo folder: rows in a scrambled order, row 0 a final (step 86) ReLU checkpoint."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = n_nets * len(STEPS)
    net_step = [(k, s) for k in range(n_nets) for s in STEPS]
    perm = rng.permutation(n)
    first = [i for i in perm if net_step[i] == (0, 86)][0]
    perm = np.concatenate([[first], perm[perm != first]])
    net_step = [net_step[i] for i in perm]
    acts = ["relu" if k == 0 else str(rng.choice(["relu", "tanh"])) for k in range(n_nets)]
    weights = (rng.standard_normal((n, 4970)) * 0.4).astype(np.float32)
    np.save(root / "weights.npy", weights)
    hp = {k: {"lr": float(rng.choice([1e-3, 3e-3, 1e-2])), "opt": str(rng.choice(["adam", "sgd", "rmsprop"])),
              "tf": float(rng.choice([0.1, 0.25, 0.5, 1.0])), "drop": float(rng.choice([0.0, 0.2, 0.5]))}
          for k in range(n_nets)}
    cols = {c: [] for c in COLUMNS}
    for k, s in net_step:
        h = hp[k]
        vals = {"config.activation": acts[k], "config.b_init": "zeros", "config.dataset": "cifar10",
                "config.dnn_architecture": "cnn", "config.dropout": h["drop"], "config.epochs": 86,
                "config.epochs_between_checkpoints": 20, "config.init_std": 0.05, "config.l2reg": 1e-4,
                "config.learning_rate": h["lr"], "config.num_layers": 3, "config.num_units": 16,
                "config.optimizer": h["opt"], "config.random_seed": 42, "config.train_fraction": h["tf"],
                "config.w_init": "he_normal", "modeldir": f"/placer/prod/cifar10/{k:05d}", "step": s,
                "test_accuracy": round(float(rng.uniform(0.1, 0.55)), 6), "test_loss": round(float(rng.uniform(1, 2.3)), 6),
                "train_accuracy": round(float(rng.uniform(0.1, 0.6)), 6), "train_loss": round(float(rng.uniform(1, 2.3)), 6)}
        for c in COLUMNS:
            cols[c].append(vals[c])
    write_metrics(root / "metrics.csv.gz", cols)
    layout = write_layout(root / "layout.csv")
    # The published order file: a header line "0" that pandas wrote, then a permutation of the rows.
    order = [0] + [int(i) for i in rng.permutation(n)]
    (root / "order.csv").write_text("\n".join(map(str, order)) + "\n")
    return {"weights": weights, "cols": cols, "layout": layout, "order": order, "acts": acts, "net_step": net_step}


@pytest.fixture(scope="module")
def zoo_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("small-cnn-zoo") / "cifar10"
    return root, make_zoo(root)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """CIFAR-10 python-version batches (tiny): pickled dicts with b'data' uint8 [N, 3072] and b'labels'."""
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(3)
    for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 7)]:
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(root / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return root.parent


@pytest.fixture(scope="module")
def imported(zoo_src, tmp_path_factory):
    """The mixed (relu + tanh) zoo, published split, imported once through the CLI."""
    src, _ = zoo_src
    out = tmp_path_factory.mktemp("zoos") / "cifar10-cnn-all"
    assert main(["zoo", "import", "small-cnn-zoo", "--src", str(src), "--activation", "all", "--out", str(out),
                 "--order", str(src / "order.csv"), "--no-progress"]) == 0
    return Zoo(out)


# ---- an independent TensorFlow-layout forward pass ----------------------------------------------
def tf_forward(row: np.ndarray, layout: dict, activation: str, images_nchw: np.ndarray) -> np.ndarray:
    """Keras Sequential semantics on the raw TF vector: NHWC, HWIO kernels, 'valid' padding, stride 2, GAP, dense."""
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]

    def var(name):
        s, e, shape = layout[f"sequential/{name}:0"]
        return row[s:e].astype(np.float64).reshape(shape)

    x = images_nchw.astype(np.float64).transpose(0, 2, 3, 1)  # NHWC
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = var(f"{layer}/kernel"), var(f"{layer}/bias")
        kh, kw, _, co = k.shape
        oh, ow = (x.shape[1] - kh) // 2 + 1, (x.shape[2] - kw) // 2 + 1
        y = np.zeros((x.shape[0], oh, ow, co))
        for i in range(kh):
            for j in range(kw):
                y += x[:, i:i + 2 * oh:2, j:j + 2 * ow:2, :] @ k[i, j]
        x = act(y + b)
    feats = x.mean(axis=(1, 2))
    return feats @ var("dense/kernel") + var("dense/bias")


def test_imported_networks_compute_the_tensorflow_logits(imported, zoo_src, cifar_root):
    _, z = zoo_src
    x, _ = task_images(imported.task, "test", cifar_root)  # grayscale [-1, 1], as the zoo was trained
    assert x.shape == (7, 1, 32, 32)
    params = torch.from_numpy(imported.read_params("test"))
    meta = imported.read_meta("test")
    acts = imported.activations("test")
    assert set(acts) == {"relu", "tanh"}
    ours = cnn_forward(imported.arch, params.double(), x.double(), activation=acts).numpy()
    for i, r in enumerate(meta["source_row"]):
        ref = tf_forward(z["weights"][r], z["layout"], z["acts"][z["net_step"][r][0]], x.numpy())
        np.testing.assert_allclose(ours[i], ref, rtol=1e-6, atol=1e-6)
        if i < 3:  # the plain nn.Module built from the flat vector agrees as well
            net = build_module(imported.arch, params[i].double(), activation=acts[i])
            np.testing.assert_allclose(net(x.double()).detach().numpy(), ref, rtol=1e-6, atol=1e-6)


def test_manifest_metadata_and_verify(imported, zoo_src):
    _, z = zoo_src
    m = imported.manifest
    assert m["task"]["name"] == "cifar10" and m["task"]["kind"] == "classification"
    assert imported.arch.activation == "mixed" and "mixed" in imported.arch.name
    assert imported.arch.n_params == 4970 and imported.arch.layers[0].stride == 2
    assert m["import"]["split"] == "published" and "header=None" in m["import"]["split_procedure"]
    meta = imported.read_meta("train")
    for c in COLUMNS + ["source_row", "activation", "published_index"]:
        assert c in meta, c
    r = int(meta["source_row"][0])
    assert meta["config.optimizer"][0] == z["cols"]["config.optimizer"][r]
    assert meta["test_accuracy"][0] == pytest.approx(z["cols"]["test_accuracy"][r])
    assert meta["step"].dtype == np.int64 and (meta["step"] == 86).all()
    assert list(meta["activation"]) == list(meta["config.activation"])
    assert verify_zoo(imported.root) == {s: imported.count(s) for s in imported.splits}
    assert not (imported.root / ".build").exists()


# ---- the published split ---------------------------------------------------------------------
def nfn_split(order_lines: list[str], steps: list[int], acts: list[str], activation: str | None):
    """Re-derivation from the published description (data/README.md), on plain Python lists."""
    idcs = [int(v) for v in order_lines]                 # header=None: the first line is an index too
    final = [i for i in idcs if steps[i] == 86]          # reorder, keep step == 86, renumber
    n = len(final)
    test_split_point = int(0.5 * n)
    trainval = list(range(test_split_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    positions = {"train": trainval[:val_point], "val": trainval[val_point:], "test": list(range(test_split_point, n))}
    return {s: [(final[p], p) for p in ps if activation is None or acts[final[p]] == activation]
            for s, ps in positions.items()}


@pytest.mark.parametrize("activation", ["relu", "tanh", "all"])
def test_published_split_matches_the_published_procedure(zoo_src, tmp_path, activation):
    src, z = zoo_src
    out = tmp_path / activation
    import_small_cnn_zoo(src, out, activation=activation, order=src / "order.csv", progress=False)
    zoo = Zoo(out)
    lines = (src / "order.csv").read_text().split()
    expected = nfn_split(lines, z["cols"]["step"], z["cols"]["config.activation"],
                         None if activation == "all" else activation)
    for s in ("train", "val", "test"):
        meta = zoo.read_meta(s)
        got = list(zip(meta["source_row"].tolist(), meta["published_index"].tolist()))
        assert got == expected[s], s
        rows = meta["source_row"]
        from gmnae.zoo.small_cnn_zoo_files import layout_permutation, read_layout
        perm = layout_permutation(read_layout(src / "layout.csv"), zoo.arch, 4970)
        np.testing.assert_array_equal(zoo.read_params(s), z["weights"][rows][:, perm])
    # The quirk: row 0 (a final ReLU checkpoint here) is imported twice.
    all_rows = np.concatenate([zoo.read_meta(s)["source_row"] for s in zoo.splits])
    assert (all_rows == 0).sum() == (0 if activation == "tanh" else 2)
    assert zoo.manifest["import"]["final_checkpoints_used_twice"] == 1
    assert zoo.arch.activation == ("mixed" if activation == "all" else activation)


def test_shipped_order_file_is_the_published_one():
    order = read_order(SMALL_CNN_ZOO_CIFAR10_ORDER)
    assert len(order) == 270_001 and order[0] == 0 and (order == 0).sum() == 2
    np.testing.assert_array_equal(np.sort(order[1:]), np.arange(270_000))
    assert (SMALL_CNN_ZOO_CIFAR10_ORDER.parent / "README.md").read_text().count("Allan Zhou") >= 1


def test_shipped_order_refuses_a_zoo_of_another_size(zoo_src, tmp_path, capsys):
    src, _ = zoo_src
    assert main(["zoo", "import", "small-cnn-zoo", "--src", str(src), "--out", str(tmp_path / "z"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "order file" in err and "--split clean" in err and "360 rows" in err


# ---- clean split, all steps -------------------------------------------------------------------
def test_clean_split_all_steps_groups_networks(zoo_src, tmp_path):
    src, z = zoo_src
    out = import_small_cnn_zoo(src, tmp_path / "all", activation="all", split="clean", all_steps=True, progress=False)
    zoo = Zoo(out)
    seen, net_split = [], {}
    for s in zoo.splits:
        meta = zoo.read_meta(s)
        seen += meta["source_row"].tolist()
        for k in range(0, len(meta["step"]), 9):  # 9 checkpoints per network, consecutive, by step
            assert meta["step"][k:k + 9].tolist() == STEPS
            assert len(set(meta["modeldir"][k:k + 9])) == 1
            net_split[meta["modeldir"][k]] = s
    assert sorted(seen) == list(range(N_NETS * 9))  # every row once: no duplicates
    assert set(zoo.splits) == {"train", "val", "test"}
    # The step-86 ReLU import puts each network in the same split.
    relu = Zoo(import_small_cnn_zoo(src, tmp_path / "relu", activation="relu", split="clean", progress=False))
    for s in relu.splits:
        meta = relu.read_meta(s)
        assert all(net_split[d] == s for d in meta["modeldir"])
        assert set(meta["activation"]) == {"relu"} and (meta["step"] == 86).all()


def test_published_all_steps_follows_the_final_checkpoints(zoo_src, tmp_path):
    src, z = zoo_src
    zoo = Zoo(import_small_cnn_zoo(src, tmp_path / "z", activation="relu", order=src / "order.csv",
                                   all_steps=True, progress=False))
    expected = nfn_split((src / "order.csv").read_text().split(), z["cols"]["step"],
                         z["cols"]["config.activation"], "relu")
    for s in zoo.splits:
        meta = zoo.read_meta(s)
        finals = meta["source_row"][meta["step"] == 86].tolist()
        assert finals == [r for r, _ in expected[s]]
        assert len(meta["step"]) == 9 * len(finals)


# ---- errors ------------------------------------------------------------------------------------
def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_files_are_named(tmp_path, zoo_src, capsys):
    src = _copy(zoo_src[0], tmp_path / "src")
    (src / "layout.csv").unlink()
    (src / "metrics.csv.gz").unlink()
    assert main(["zoo", "import", "small-cnn-zoo", "--src", str(src), "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "metrics.csv.gz, layout.csv" in err and "cifar10.tar.xz" in err


def test_layout_not_matching_the_weight_width(tmp_path, zoo_src):
    src = _copy(zoo_src[0], tmp_path / "src")
    w = np.load(src / "weights.npy")
    np.save(src / "weights.npy", np.concatenate([w, w[:, :1]], axis=1))
    with pytest.raises(GmnaeError, match=r"layout.csv describes 4970 parameters.*have 4971 columns"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)


def test_layout_with_wrong_shapes(tmp_path, zoo_src):
    src = _copy(zoo_src[0], tmp_path / "src")
    bad = [(n, (10, 16) if n == "sequential/dense/kernel:0" else s) for n, s in LAYOUT]
    write_layout(src / "layout.csv", bad)
    with pytest.raises(GmnaeError, match=r"sequential/dense/kernel:0 has TensorFlow shape \(10, 16\).*\(16, 10\)"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)
    fewer = [(n, s) for n, s in LAYOUT if not n.startswith("sequential/conv2d_2")] + \
            [("sequential/conv2d_2/weights:0", (3, 3, 16, 16)), ("sequential/conv2d_2/bias:0", (16,))]
    write_layout(src / "layout.csv", fewer)
    with pytest.raises(GmnaeError, match="neither a kernel nor a bias"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)


@pytest.mark.parametrize("column", ["step", "config.activation", "test_accuracy"])
def test_missing_metrics_columns(tmp_path, zoo_src, column):
    src = _copy(zoo_src[0], tmp_path / "src")
    write_metrics(src / "metrics.csv.gz", zoo_src[1]["cols"], [c for c in COLUMNS if c != column])
    with pytest.raises(GmnaeError, match=rf"metrics.csv.gz lacks the column\(s\) {column}"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)


def test_metrics_and_weights_of_different_lengths(tmp_path, zoo_src):
    src = _copy(zoo_src[0], tmp_path / "src")
    np.save(src / "weights.npy", np.load(src / "weights.npy")[:-9])
    with pytest.raises(GmnaeError, match=r"has 360 rows but .*weights.npy has 351"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)


def test_corrupt_inputs(tmp_path, zoo_src):
    src = _copy(zoo_src[0], tmp_path / "src")
    (src / "metrics.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(GmnaeError, match="metrics.csv.gz cannot be read"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)
    src2 = _copy(zoo_src[0], tmp_path / "src2")
    (src2 / "weights.npy").write_bytes((src2 / "weights.npy").read_bytes()[:5000])
    with pytest.raises(GmnaeError, match="weights.npy is not a readable .npy"):
        import_small_cnn_zoo(src2, tmp_path / "z2", split="clean", progress=False)


def test_nan_rows_stop_the_import_or_are_left_out(tmp_path, zoo_src):
    src = _copy(zoo_src[0], tmp_path / "src")
    z = zoo_src[1]
    bad = next(r for r, (k, s) in enumerate(z["net_step"]) if s == 86 and z["acts"][k] == "relu" and r != 0)
    w = np.load(src / "weights.npy")
    w[bad, 100] = np.nan
    np.save(src / "weights.npy", w)
    with pytest.raises(GmnaeError, match=rf"weights.npy row {bad} \(step 86, .*\) has NaN/Inf.*--skip-nonfinite"):
        import_small_cnn_zoo(src, tmp_path / "z", split="clean", progress=False)
    assert not (tmp_path / "z" / "manifest.json").exists() and not list((tmp_path / "z").glob("*.tmp*"))
    # Resuming the same import with --skip-nonfinite finishes it without that network.
    zoo = Zoo(import_small_cnn_zoo(src, tmp_path / "z", split="clean", skip_nonfinite=True, progress=False))
    rows = np.concatenate([zoo.read_meta(s)["source_row"] for s in zoo.splits])
    assert bad not in rows and zoo.manifest["import"]["skipped_nonfinite"] == 1
    assert len(rows) == sum(1 for k, s in z["net_step"] if s == 86 and z["acts"][k] == "relu") - 1
    verify_zoo(zoo.root)


# ---- resume --------------------------------------------------------------------------------------
def test_interrupted_import_resumes(tmp_path, zoo_src):
    src, _ = zoo_src
    args = ["zoo", "import", "small-cnn-zoo", "--src", str(src), "--activation", "all", "--order",
            str(src / "order.csv"), "--shard-rows", "8", "--no-progress"]
    out = tmp_path / "resumed"
    with pytest.raises(ImportInterrupted):
        import_small_cnn_zoo(src, out, activation="all", order=src / "order.csv", shard_rows=8, progress=False,
                             stop_after_shards=2)
    assert not (out / "manifest.json").exists()
    first = sorted(out.glob("*.h5"))
    assert len(first) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in first}
    # Other settings are refused while the unfinished import is there.
    assert main(args[:-3] + ["--shard-rows", "16", "--no-progress", "--out", str(out)]) == 2
    assert main(args + ["--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in first} == stamps  # finished shards were not redone
    fresh = import_small_cnn_zoo(src, tmp_path / "fresh", activation="all", order=src / "order.csv", shard_rows=8,
                                 progress=False)
    a, b = Zoo(out), Zoo(fresh)
    for s in b.splits:
        np.testing.assert_array_equal(a.read_params(s), b.read_params(s))
        np.testing.assert_array_equal(a.read_meta(s)["source_row"], b.read_meta(s)["source_row"])
        assert [x.sha256 for x in a.shards(s)] == [x.sha256 for x in b.shards(s)]
    assert len(a.shards("test")) > 1
    # A finished zoo is not overwritten.
    with pytest.raises(GmnaeError, match="already holds a finished zoo"):
        import_small_cnn_zoo(src, out, activation="all", order=src / "order.csv", shard_rows=8, progress=False)


def test_default_names_and_summary(zoo_src, tmp_path, monkeypatch, capsys):
    src, _ = zoo_src
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "import", "small-cnn-zoo", "--src", str(src), "--activation", "tanh", "--split", "clean",
                 "--no-progress"]) == 0
    zoo = Zoo(tmp_path / "zoo" / "cifar10-cnn-tanh")
    assert zoo.name == "cifar10-cnn-tanh" and zoo.arch.activation == "tanh" and "tanh" in zoo.arch.name
    assert "imported" in capsys.readouterr().out
    info = json.loads((zoo.root / "manifest.json").read_text())["import"]
    assert info["split"] == "clean" and info["counts"]["test"] == zoo.count("test")


def test_read_metrics_types(tmp_path, monkeypatch):
    from gmnae.zoo import small_cnn_zoo_files as mod

    monkeypatch.setattr(mod, "METRICS_CHUNK_ROWS", 4)  # a column turns out to be text after its first chunk
    rows = [[str(i), str(i), f"{0.5 * i}", "" if i == 3 else f"{0.1 * i:.3f}", "relu", str(i) if i < 6 else "x7"]
            for i in range(10)]
    with gzip.open(tmp_path / "m.csv.gz", "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "step", "config.dropout", "test_accuracy", "config.activation", "late_text"])
        w.writerows(rows)
    m = mod.read_metrics(tmp_path / "m.csv.gz")
    assert list(m) == ["step", "config.dropout", "test_accuracy", "config.activation", "late_text"]  # index skipped
    assert m["step"].dtype == np.int64 and m["config.dropout"].dtype == np.float64
    assert np.isnan(m["test_accuracy"][3]) and m["test_accuracy"][4] == pytest.approx(0.4)
    assert m["late_text"].dtype == object and list(m["late_text"][[0, 6]]) == ["0", "x7"]
    assert list(m["config.activation"]) == ["relu"] * 10
