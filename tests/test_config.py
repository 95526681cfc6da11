"""The config is checked when it loads: every key and value, one line naming the key, value and nearest key."""
import shutil
from pathlib import Path
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from gmnae.cli import main
from gmnae.config.load import available, config_dir, load_config
from gmnae.config.schema import EncoderSchema
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
    ("trainer.max_epochs=-1", "trainer.max_epochs = -1 must be >= 0"),  # was an OverflowError in optim.py
    ("trainer.max_epochs=abc", "trainer.max_epochs = 'abc' is not an integer"),  # was a TypeError in Lightning
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
    monkeypatch.setenv("GMNAE_CONFIG_PATH", str(tmp_path / "configs"))
    return tmp_path / "configs"


@pytest.mark.parametrize("text,says", [
    ("name: x\nkind: inr\nzoo: zoo/x\nzooo: 3\n", "unknown config key 'dataset.zooo' (= 3); the nearest valid key is 'dataset.zoo'"),
    ("name: x\nkind: inr\n", "dataset.zoo is not set"),
    ("name: x\nfamily: mlp\nzoo: zoo/x\n", "dataset.family = 'mlp' must be one of siren, cnn"),
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


# ---- trainer base, experiment recipes -----------------------------------------------------------
BEFORE_BASE = Path(__file__).parent / "data" / "trainers-before-base"  # the trainer files as they were, whole


@pytest.mark.parametrize("choice", ["trainer=cpu", "trainer=gpu", "trainer=ddp", "trainer=slurm",
                                    "dataset=cifar10-cnn", "dataset=mnist-inr"])
def test_trainers_that_extend_the_base_resolve_exactly_as_the_whole_files_did(config_copy, monkeypatch, choice):
    monkeypatch.delenv("GMNAE_CONFIG_PATH")
    now = OmegaConf.to_yaml(load_config([choice]))  # the shipped configs/trainer/{base,cpu,...}.yaml
    shutil.rmtree(config_copy / "trainer")
    shutil.copytree(BEFORE_BASE, config_copy / "trainer")
    monkeypatch.setenv("GMNAE_CONFIG_PATH", str(config_copy))
    before = OmegaConf.to_yaml(load_config([choice]))
    assert now == before  # text, so key order too: --print-config and every saved config.yaml read the same
    assert "base" not in available("trainer") and "extends" not in now


def test_extends_cycle_and_missing_base_are_one_line_naming_the_file(config_copy):
    (config_copy / "trainer" / "base.yaml").write_text("extends: cpu\nmax_epochs: 3\n")
    with pytest.raises(ConfigError, match=r"base.yaml: extends: 'cpu' must name another trainer file, without a "
                                          r"cycle \(cpu -> base -> cpu\)"):
        load_config(["trainer=cpu"])
    (config_copy / "trainer" / "cpu.yaml").write_text("extends: bsae\naccelerator: cpu\n")
    with pytest.raises(ConfigError, match=r"cpu.yaml: extends: no trainer config named 'bsae'"):
        load_config(["trainer=cpu"])


PAPER = ["dataset=mnist5k-inr", "model=scalegmn-inr", "trainer=gpu", "model.probe.points=0", "data.batch_size=128",
         "optim.lr=1e-3", "optim.weight_decay=0.01", "optim.warmup_steps=1000", "optim.schedule=constant",
         "trainer.max_epochs=150", "trainer.gradient_clip_val=10.0"]


def _without_experiment(cfg):
    out = OmegaConf.to_container(cfg)
    out["choices"].pop("experiment")
    return out


@pytest.mark.parametrize("extra", [[], ["optim.lr=3e-4", "trainer.max_epochs=2", "model=scalegmn-small", "seed=3"]])
def test_experiment_recipe_is_the_same_as_its_overrides_and_the_command_line_wins(extra):
    cfg = load_config(["experiment=paper-mnist-inr", *extra])
    # the recipe by hand: its groups, then its keys, then the command line (which may choose another group)
    by_hand = load_config([*PAPER, *extra])
    assert _without_experiment(cfg) == OmegaConf.to_container(by_hand)
    assert cfg.choices.experiment == "paper-mnist-inr"
    if extra:
        assert cfg.optim.lr == pytest.approx(3e-4) and cfg.trainer.max_epochs == 2 and cfg.model.name == "scalegmn-small"
        assert cfg.model.probe.points == 0  # the recipe's key still applies over the model the command line chose
    else:
        assert (cfg.model.encoder.d, cfg.trainer.accelerator, cfg.optim.schedule) == (128, "gpu", "constant")


def test_cpu_classification_recipe_is_the_readme_row():
    cfg = load_config(["experiment=mnist5k-inr-classify"])
    assert (cfg.task, cfg.dataset.name, cfg.model.name, cfg.model.probe.points, cfg.trainer.max_epochs) == \
        ("classify", "mnist5k-inr", "scalegmn-small", 0, 20)
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.trainer.accelerator) == (1e-3, "cosine", "cpu")
    from gmnae.training.run_folder import run_name

    assert run_name(cfg) == "mnist5k-inr-classify-s0"


def test_bad_experiment_is_one_line_naming_the_file(config_copy):
    with pytest.raises(ConfigError, match="no experiment config named 'papper'.*available: mnist5k-inr-classify, "
                                          "paper-mnist-inr"):
        load_config(["experiment=papper"])
    (config_copy / "experiment" / "broken.yaml").write_text("defaults: {dataset: digits-inr}\noptim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match=r"experiment/broken.yaml: unknown config key 'optim.lrr' \(= 1\); the "
                                          r"nearest valid key is 'optim.lr'"):
        load_config(["experiment=broken"])
    (config_copy / "experiment" / "broken.yaml").write_text("defaults: {datset: digits-inr}\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: defaults: must map groups \(dataset, model, trainer\)"):
        load_config(["experiment=broken"])
    with pytest.raises(ConfigError, match="experiment=paper-mnist-inr starts a new run"):
        load_config(["experiment=paper-mnist-inr"], base=load_config([]))


def test_renamed_keys_are_still_accepted(config_copy):
    """`dataset.kind` is now `dataset.family`, `evaluation.pairs_per_kind` `evaluation.pairs_per_type`: the old
    names still load -- from a dataset file, the command line and a saved run config -- and mean the same."""
    now = load_config(["dataset=digits-cnn", "evaluation.pairs_per_type=3"])
    assert load_config(["dataset=digits-cnn", "evaluation.pairs_per_kind=3", "dataset.kind=cnn"]) == now
    saved = OmegaConf.to_container(now)
    saved["dataset"] = {("kind" if k == "family" else k): v for k, v in saved["dataset"].items()}
    saved["evaluation"] = {("pairs_per_kind" if k == "pairs_per_type" else k): v for k, v in saved["evaluation"].items()}
    again = load_config([], base=OmegaConf.create(saved))
    assert again == now and list(again.dataset) == list(now.dataset)  # renamed in place: the saved order stays
    text = (config_copy / "dataset" / "digits-cnn.yaml").read_text()
    (config_copy / "dataset" / "old.yaml").write_text(text.replace("family: cnn", "kind: cnn").replace(
        "name: digits-cnn", "name: old"))
    assert load_config(["dataset=old"]).dataset.family == "cnn"
    saved["dataset"]["family"] = "cnn"
    with pytest.raises(ConfigError, match="both dataset.kind .its old name. and dataset.family are set"):
        load_config([], base=OmegaConf.create(saved))


def test_the_former_family_name_inr_still_loads_as_siren(config_copy):
    """SIREN zoos' family was `inr` in configs and `siren` in architectures; one vocabulary now (weightspace/family.py):
    `inr` from a dataset file, the command line and a saved run config loads as `siren`."""
    now = load_config(["dataset=digits-inr"])
    assert now.dataset.family == "siren"
    assert load_config(["dataset=digits-inr", "dataset.family=inr"]) == now
    saved = OmegaConf.to_container(now)
    saved["dataset"]["family"] = "inr"
    assert load_config([], base=OmegaConf.create(saved)) == now
    text = (config_copy / "dataset" / "digits-inr.yaml").read_text()
    (config_copy / "dataset" / "old.yaml").write_text(text.replace("family: siren", "family: inr").replace(
        "name: digits-inr", "name: old"))
    assert load_config(["dataset=old"]).dataset.family == "siren"


def test_decoder_kind_is_now_decoder_type(config_copy):
    """`model.decoder.kind` was renamed `model.decoder.type`: a model file and the command line with the old key load
    to the same config, and a checkpoint's hyperparameters with `kind` build the same decoder."""
    now = load_config(["model.decoder.type=mlp"])
    assert load_config(["model.decoder.kind=mlp"]) == now
    text = (config_copy / "model" / "scalegmn-small.yaml").read_text()
    assert "  type: mlp" in text
    (config_copy / "model" / "old.yaml").write_text(text.replace("  type: mlp", "  kind: mlp").replace(
        "name: scalegmn-small", "name: old"))
    assert load_config(["model=old"]).model.decoder == now.model.decoder
    with pytest.raises(ConfigError, match="model.decoder.type"):
        load_config(["model.decoder.type=transformer"])



# ---- a user's config folders over the shipped ones ------------------------------------------------
def test_a_user_config_folder_overlays_the_shipped_configs(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    (mine / "dataset").mkdir(parents=True)
    (mine / "dataset" / "my-zoo.yaml").write_text("name: my-zoo\nfamily: inr\nzoo: zoo/my-zoo\n")
    (mine / "trainer").mkdir()
    (mine / "trainer" / "cpu.yaml").write_text("extends: base\naccelerator: cpu\ndevices: 1\nmax_epochs: 7\n")
    monkeypatch.setenv("GMNAE_CONFIG_PATH", "")  # restored after the test: --config-dir writes it
    assert main(["train", "--config-dir", str(mine), "dataset=my-zoo", "trainer=cpu", "--print-config"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.dataset.name == "my-zoo" and printed.trainer.max_epochs == 7  # the user's files win
    assert printed.model.encoder.d == load_config([]).model.encoder.d  # the rest is shipped
    assert "my-zoo" in available("dataset") and "digits-inr" in available("dataset")  # --config-dir is in the env


def test_a_missing_user_config_folder_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GMNAE_CONFIG_PATH", str(tmp_path / "nowhere"))
    assert main(["train", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"config folder {tmp_path / 'nowhere'}" in err, err
