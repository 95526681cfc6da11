"""`gmnae merge` end to end on state-dict files, and its one-line errors."""
import csv

import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.merge.matching import match_weights
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import forward, unflatten


def _save(arch, flat, path, prefix="seq", dtype=torch.float32):
    sd = {}
    for i, (w, b) in enumerate(unflatten(arch, flat)):
        sd[f"{prefix}.{i}.weight"] = w.clone().to(dtype)
        sd[f"{prefix}.{i}.bias"] = b.clone().to(dtype)
    torch.save(sd, path)
    return sd


@pytest.fixture
def inr_files(tmp_path, digits_inr_zoo):
    """Two INRs of one image in MNIST-INR's key layout (seq.{0,1,2}.{weight,bias})."""
    meta = digits_inr_zoo.read_meta("train")
    i = int(np.nonzero(meta["seed_index"] == 0)[0][0])
    j = int(np.nonzero((meta["image_index"] == meta["image_index"][i]) & (meta["seed_index"] == 1))[0][0])
    p = torch.from_numpy(digits_inr_zoo.read_params("train"))
    _save(digits_inr_zoo.arch, p[i], tmp_path / "a.pth")
    _save(digits_inr_zoo.arch, p[j], tmp_path / "b.pth")
    return digits_inr_zoo.arch, p[i].double(), p[j].double(), tmp_path


def _flat(sd):
    return torch.cat([v.reshape(-1).double() for v in sd.values()])


def test_merge_mnist_inr_layout(inr_files, capsys):
    arch, a, b, d = inr_files
    rc = main(["merge", str(d / "a.pth"), str(d / "b.pth"), "--method", "wm-signed", "--alpha", "0.25",
               "--out", str(d / "merged.pt"), "--curve", str(d / "curve.csv")])
    assert rc == 0
    merged = torch.load(d / "merged.pt")
    assert list(merged) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
    assert merged["seq.0.weight"].dtype == torch.float32 and merged["seq.1.weight"].shape == (32, 32)
    aligned = match_weights(arch, a, b, "wm-signed").aligned
    torch.testing.assert_close(_flat(merged), (0.75 * a + 0.25 * aligned).float().double())
    rows = list(csv.reader(open(d / "curve.csv")))
    assert rows[0] == ["lambda", "naive:mse_endpoint", "wm-signed:mse_endpoint"] and len(rows) == 26
    assert float(rows[1][1]) < 1e-12  # λ = 0 is A itself
    assert "barrier" in capsys.readouterr().out


def test_merge_alpha_one_is_function_of_b(inr_files):
    arch, a, b, d = inr_files
    assert main(["merge", str(d / "a.pth"), str(d / "b.pth"), "--alpha", "1", "--out", str(d / "m.pt")]) == 0
    merged = _flat(torch.load(d / "m.pt"))
    x = coordinate_grid(28, dtype=torch.float64)
    torch.testing.assert_close(forward(arch, merged[None], x), forward(arch, b.float().double()[None], x),
                               rtol=1e-5, atol=1e-5)


def test_merge_cnn_with_zoo_and_png(tmp_path, digits_cnn_zoo, capsys):
    acts = np.array(digits_cnn_zoo.activations("train"))
    p = torch.from_numpy(digits_cnn_zoo.read_params("train"))[torch.from_numpy(acts == "relu")]
    arch = digits_cnn_zoo.arch.with_activation("relu")
    _save(arch, p[0], tmp_path / "a.pt", prefix="net")
    _save(arch, p[1], tmp_path / "b.pt", prefix="net")
    args = ["merge", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "m.pt"), "--points", "5"]
    assert main(args + ["--arch", str(digits_cnn_zoo.root), "--activation", "relu", "--method", "wm-scale",
                        "--curve", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert list(torch.load(tmp_path / "m.pt")) == [f"net.{i}.{k}" for i in range(4) for k in ("weight", "bias")]
    assert main(args + ["--arch", "digits-cnn-relu", "--curve", str(tmp_path / "c.csv")]) == 0
    header = next(csv.reader(open(tmp_path / "c.csv")))
    assert header == ["lambda", "naive:loss", "naive:accuracy", "wm:loss", "wm:accuracy"]


def test_merge_leaky_relu_cnns(tmp_path, digits_leaky_cnn_zoo, capsys):
    """LeakyReLU, added as one registry row: positive-scale matching merges its networks end to end."""
    arch = digits_leaky_cnn_zoo.arch
    p = torch.from_numpy(digits_leaky_cnn_zoo.read_params("train")).double()
    _save(arch, p[0], tmp_path / "a.pt", prefix="net", dtype=torch.float64)
    _save(arch, p[1], tmp_path / "b.pt", prefix="net", dtype=torch.float64)
    args = ["merge", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "m.pt"),
            "--arch", str(digits_leaky_cnn_zoo.root), "--points", "5"]
    assert main(args + ["--method", "wm-scale", "--alpha", "0.5", "--curve", str(tmp_path / "c.csv")]) == 0
    aligned = match_weights(arch, p[0], p[1], "wm-scale").aligned
    torch.testing.assert_close(_flat(torch.load(tmp_path / "m.pt")), 0.5 * p[0] + 0.5 * aligned)
    header = next(csv.reader(open(tmp_path / "c.csv")))
    assert header == ["lambda", "naive:loss", "naive:accuracy", "wm-scale:loss", "wm-scale:accuracy"]
    err = _error(capsys, args + ["--method", "wm-signed"])
    assert "wm-signed" in err and "leaky_relu" in err


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmnae: error:") and "\n" not in err
    return err


def test_merge_errors(inr_files, tmp_path, capsys):
    arch, a, b, d = inr_files
    out = ["--out", str(d / "m.pt")]
    A, B = str(d / "a.pth"), str(d / "b.pth")
    # unreadable file
    (d / "junk.pt").write_text("not a checkpoint")
    err = _error(capsys, ["merge", str(d / "junk.pt"), B] + out)
    assert "junk.pt" in err and "torch.save(model.state_dict()" in err
    assert "no such file" in _error(capsys, ["merge", str(d / "missing.pt"), B] + out)
    # NaN weights
    sd = torch.load(B)
    sd["seq.2.weight"][0, 3] = float("nan")
    torch.save(sd, d / "nan.pth")
    err = _error(capsys, ["merge", A, str(d / "nan.pth")] + out)
    assert "nan.pth" in err and "seq.2.weight" in err and "NaN" in err
    # mismatched architectures
    small = {k: v for k, v in torch.load(B).items()}
    small["seq.1.weight"], small["seq.1.bias"] = torch.zeros(16, 32), torch.zeros(16)
    small["seq.2.weight"] = torch.zeros(1, 16)
    torch.save(small, d / "small.pth")
    err = _error(capsys, ["merge", A, str(d / "small.pth")] + out)
    assert "small.pth" in err and "same architecture" in err and "seq.1.weight" in err
    # not inferable -> asks for --arch; wrong method for the activation; bad alpha
    torch.save({"w": torch.zeros(3, 3)}, d / "odd.pt")
    assert "--arch" in _error(capsys, ["merge", str(d / "odd.pt"), str(d / "odd.pt")] + out)
    assert "wm-scale" in _error(capsys, ["merge", A, B, "--method", "wm-scale"] + out)
    assert "--alpha" in _error(capsys, ["merge", A, B, "--alpha", "1.5"] + out)
    assert "--arch" in _error(capsys, ["merge", A, B, "--arch", "small-cnn-relu"] + out)
    assert ".csv or a .png" in _error(capsys, ["merge", A, B, "--curve", str(d / "c.txt")] + out)
    assert not (d / "m.pt").exists()


def test_merge_checks_its_output_path_first(inr_files, capsys):
    arch, a, b, d = inr_files
    A, B = str(d / "a.pth"), str(d / "b.pth")
    (d / "folder").mkdir()
    assert "--out" in (err := _error(capsys, ["merge", A, B, "--out", str(d / "folder")])) and "is a folder" in err
    assert "cannot write in /proc" in _error(capsys, ["merge", A, B, "--out", "/proc/gmnae/merged.pt"])
    (d / "c.csv").mkdir()
    assert "is a folder" in _error(capsys, ["merge", A, B, "--out", str(d / "m.pt"), "--curve", str(d / "c.csv")])
    before = (d / "b.pth").read_bytes()
    err = _error(capsys, ["merge", A, B, "--out", B])
    assert "is one of the inputs" in err and "--force" in err
    assert (d / "b.pth").read_bytes() == before
    assert main(["merge", A, B, "--out", B, "--force"]) == 0  # asked for: replaces B
    assert (d / "b.pth").read_bytes() != before


def test_merge_finetune_moves_the_midpoint_towards_the_parents_function(inr_files, capsys):
    """`--finetune S` equals the library's fine-tune of the written midpoint, and brings it closer to the
    parents' mean rendering; a negative step count is refused before anything is written."""
    from gmnae.merge.finetune import finetune_to_function
    from gmnae.weightspace import siren_render

    arch, a, b, d = inr_files
    assert main(["merge", str(d / "a.pth"), str(d / "b.pth"), "--method", "naive", "--out", str(d / "mid.pt")]) == 0
    assert main(["merge", str(d / "a.pth"), str(d / "b.pth"), "--method", "naive", "--finetune", "30",
                 "--out", str(d / "tuned.pt")]) == 0
    assert "fine-tuned 30 steps" in capsys.readouterr().out
    mid, tuned = _flat(torch.load(d / "mid.pt")), _flat(torch.load(d / "tuned.pt"))
    coords = coordinate_grid(28, dtype=torch.float64)
    a32, b32 = a.float().double(), b.float().double()
    target = 0.5 * (siren_render(arch, a32[None], coords) + siren_render(arch, b32[None], coords))
    expected = finetune_to_function(arch, mid[None], target, coords, 30)[0]
    torch.testing.assert_close(tuned, expected.float().double(), rtol=1e-4, atol=1e-5)
    err = lambda p: float((siren_render(arch, p[None], coords) - target).pow(2).mean())
    assert err(tuned) < 0.5 * err(mid)

    assert main(["merge", str(d / "a.pth"), str(d / "b.pth"), "--finetune", "-1", "--out", str(d / "neg.pt")]) == 2
    assert "--finetune -1" in capsys.readouterr().err and not (d / "neg.pt").exists()


def test_zoo_export_writes_what_merge_reads_without_arch(digits_inr_zoo, tmp_path, capsys):
    """`gmnae zoo export ZOO --index I --out a.pt`: the network as a state dict, its architecture recorded."""
    for i, name in ((0, "a.pt"), (1, "b.pt")):
        assert main(["zoo", "export", str(digits_inr_zoo.root), "--index", str(i), "--out", str(tmp_path / name)]) == 0
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    flat = torch.cat([v.reshape(-1) for v in saved["state_dict"].values()])
    assert torch.equal(flat, torch.from_numpy(digits_inr_zoo.read_params("train", limit=1)[0]))
    assert saved["source"]["index"] == 0 and saved["source"]["split"] == "train"
    assert main(["merge", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--method", "wm-signed",
                 "--out", str(tmp_path / "m.pt")]) == 0  # no --arch: the file names it
    merged = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(merged) == list(saved["state_dict"])
    capsys.readouterr()
    count = digits_inr_zoo.count("train")
    assert main(["zoo", "export", str(digits_inr_zoo.root), "--index", str(count), "--out", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--index {count}: split train of" in err and len(err.splitlines()) == 1
