"""Shard round trip, bounded shards, checksums, NaN rejection, missing/corrupt files."""
import json

import h5py
import numpy as np
import pytest

from gmnae.cli import main
from gmnae.errors import ZooError
from gmnae.weightspace import Architecture
from gmnae.zoo import Zoo, ZooWriter, verify_zoo


def _write(root, n=300, max_shard_bytes=None, params=None):
    arch = Architecture.siren()
    rng = np.random.default_rng(0)
    params = rng.standard_normal((n, arch.n_params)).astype(np.float32) if params is None else params
    meta = {"id": np.arange(n), "label": rng.integers(0, 10, n), "psnr": rng.random(n),
            "source": np.array([f"net{i}" for i in range(n)])}
    kw = {"max_shard_bytes": max_shard_bytes} if max_shard_bytes else {}
    with ZooWriter(root, "toy", arch, task={"name": "digits"}, **kw) as w:
        w.add("train", params[: n - 50], {k: v[: n - 50] for k, v in meta.items()})
        w.add("test", params[n - 50:], {k: v[n - 50:] for k, v in meta.items()})
    return params, meta


def test_round_trip_and_bounded_shards(tmp_path):
    params, meta = _write(tmp_path, n=300, max_shard_bytes=100 * 1185 * 4)
    zoo = Zoo(tmp_path)
    assert zoo.arch == Architecture.siren()
    assert [s.count for s in zoo.shards("train")] == [100, 100, 50]
    np.testing.assert_array_equal(zoo.read_params("train"), params[:250])
    np.testing.assert_array_equal(zoo.read_params("test"), params[250:])
    m = zoo.read_meta("train")
    np.testing.assert_array_equal(m["label"], meta["label"][:250])
    assert list(m["source"][:2]) == ["net0", "net1"]
    with h5py.File(zoo.shards("train")[0].path) as f:
        assert f["params"].chunks[0] <= 64 and f["params"].chunks[1] == 1185 and f["params"].dtype == np.float32
    assert verify_zoo(tmp_path) == {"train": 250, "test": 50}
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temporaries


def test_checksum_mismatch_names_shard(tmp_path):
    _write(tmp_path)
    shard = Zoo(tmp_path).shards("train")[0].path
    with h5py.File(shard, "r+") as f:
        f["params"][3, 7] += 1.0
    with pytest.raises(ZooError, match=rf"{shard.name}.*corrupt"):
        verify_zoo(tmp_path)


def test_nan_row_is_rejected_with_shard_and_row(tmp_path):
    params = np.random.default_rng(0).standard_normal((300, 1185)).astype(np.float32)
    params[123, 5] = np.nan
    _write(tmp_path, params=params)
    with pytest.raises(ZooError, match=r"train-00000.h5 row 123 has NaN"):
        verify_zoo(tmp_path)
    assert main(["zoo", "verify", str(tmp_path)]) == 2


def test_missing_zoo_and_missing_shard(tmp_path, capsys):
    with pytest.raises(ZooError, match="gmnae zoo build digits-inr"):
        Zoo(tmp_path / "digits-inr")
    _write(tmp_path)
    Zoo(tmp_path).shards("test")[0].path.unlink()
    with pytest.raises(ZooError, match="test-00000.h5.*missing"):
        verify_zoo(tmp_path)
    assert main(["zoo", "info", str(tmp_path / "nowhere")]) == 2
    assert "no zoo at" in capsys.readouterr().err


def test_garbage_manifest(tmp_path):
    _write(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ZooError, match="not valid JSON"):
        Zoo(tmp_path)


def test_manifest_rebuilds_architecture(tmp_path):
    _write(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["architecture"]["family"] == "siren" and manifest["n_params"] == 1185
    assert Architecture.from_dict(manifest["architecture"]) == Architecture.siren()


@pytest.mark.parametrize("damage,says", [(lambda m: m.pop("architecture"), "has no 'architecture' entry"),
                                         (lambda m: m["architecture"].pop("layers"), "'architecture' entry cannot be read")])
def test_manifest_without_architecture_is_one_line(tmp_path, capsys, damage, says):
    _write(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    damage(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "manifest.json" in err and len(err.splitlines()) == 1


def test_zoo_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "zoo.h5").write_bytes(b"x")
    assert main(["zoo", "verify", str(tmp_path / "zoo.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "zoo.h5 is a file, not a zoo folder" in err and len(err.splitlines()) == 1
