"""The config is checked when it loads: every key and value, one line naming the key, value and nearest key."""
import shutil
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from gmnae.cli import main
from gmnae.config import available, config_dir, load_config
from gmnae.config_schema import EncoderSchema
from gmnae.errors import ConfigError
from gmnae.nn.config import EncoderConfig


@pytest.mark.parametrize("override,says", [
    ("optim.lrr=1e-3", "unknown config key 'optim.lrr' (= 0.001); the nearest valid key is 'optim.lr'"),
    ("trainer.max_epoch=1", "unknown config key 'trainer.max_epoch' (= 1); the nearest valid key is 'trainer.max_epochs'"),
    ("optimm.lr=1", "unknown config key 'optimm'; the nearest valid key is 'optim'"),
    ("optim.lr=abc", "optim.lr = 'abc' is not a number (e.g. optim.lr=0.001"),
    ("data.batch_size=-3", "data.batch_size = -3 must be >= 1"),
    ("data.batch_size=2.5", "data.batch_size = 2.5 is not an integer"),
    ("optim.schedule=cosin", "optim.schedule = 'cosin' must be one of constant, cosine (nearest: optim.schedule=cosine)"),
    ("model.encoder.dropout=1.5", "model.encoder.dropout = 1.5 must be < 1"),
    ("model.decoder.hidden=[32,x]", "model.decoder.hidden[1] = 'x' is not a list of integers"),
    ("optim=3", "optim = 3 is not a block"),
    ("mode=train", "mode = 'train' must be one of fit, validate"),
])
def test_bad_override_is_one_line_before_anything_is_made(tmp_path, capsys, override, says):
    assert main(["train", override, f"runs_dir={tmp_path}/runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gmnae: error: command line: {says}" or f"command line: {says}" in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no half-made run folder (the next run would become -v2)


@pytest.fixture
def config_copy(tmp_path, monkeypatch):
    """configs/ copied where a test may add broken files."""
    shutil.copytree(config_dir(), tmp_path / "configs")
    monkeypatch.setenv("GMNAE_CONFIG_DIR", str(tmp_path / "configs"))
    return tmp_path / "configs"


@pytest.mark.parametrize("text,says", [
    ("name: x\nkind: inr\nzoo: zoo/x\nzooo: 3\n", "unknown config key 'dataset.zooo' (= 3); the nearest valid key is 'dataset.zoo'"),
    ("name: x\nkind: inr\n", "dataset.zoo is not set"),
    ("name: x\nkind: mlp\nzoo: zoo/x\n", "dataset.kind = 'mlp' must be one of inr, cnn"),
    ("name: x\nkind: inr\nzoo: zoo/x\noverride:\n  optim: {lrr: 1}\n", "(override:): unknown config key 'optim.lrr'"),
])
def test_dataset_file_is_checked_and_named(config_copy, text, says):
    (config_copy / "dataset" / "broken.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(["dataset=broken"])
    assert str(config_copy / "dataset" / "broken.yaml") in str(e.value) and says in str(e.value)


def test_every_shipped_config_is_valid():
    for name in available("dataset"):
        cfg = load_config([f"dataset={name}"])
        assert cfg.dataset.name == name
    for group in ("model", "trainer"):
        for name in available(group):
            load_config([f"{group}={name}"])


def test_values_are_typed_and_the_saved_config_loads_back(tmp_path):
    cfg = load_config(["optim.lr=3e-4", "data.batch_size=8", "trainer.max_epochs=2"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.data.batch_size == 8
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    again = load_config(["trainer.max_epochs=3"], base=OmegaConf.load(tmp_path / "config.yaml"))
    assert again.optim.lr == pytest.approx(3e-4) and again.trainer.max_epochs == 3
    with pytest.raises(ConfigError, match="saved run config: unknown config key 'optim.lrr'"):
        load_config([], base=OmegaConf.merge(OmegaConf.to_container(cfg), {"optim": {"lrr": 1}}))


def test_encoder_schema_has_the_encoder_config_fields():
    assert [f.name for f in fields(EncoderSchema)] == [f.name for f in fields(EncoderConfig)]
