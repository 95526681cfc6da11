"""The zoo catalogue (gmnae/zoo/catalogue.py) is the one place per-zoo facts live: the dataset configs, zoo/README.md
and the forges agree with it, and `gmnae.zoo.get` opens (or builds) a zoo by name."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import gmnae.zoo
from gmnae.config.load import config_dir
from gmnae.errors import GmnaeError
from gmnae.weightspace import named_architecture
from gmnae.zoo import forge as forge_module
from gmnae.zoo.catalogue import CATALOGUE, ZOOS, forged

REPO = Path(__file__).resolve().parents[2]
DATASET_FILES = sorted((config_dir() / "dataset").glob("*.yaml"))


@pytest.mark.parametrize("path", DATASET_FILES, ids=lambda p: p.stem)
def test_every_dataset_config_agrees_with_its_catalogue_row(path):
    ds = OmegaConf.to_container(OmegaConf.load(path))
    assert ds["name"] == path.stem and ds["name"] in ZOOS, f"{path.name}: no catalogue row named {ds['name']!r}"
    row = ZOOS[ds["name"]]
    assert ds["family"] == row.family
    assert ds["architecture"] == row.architecture
    assert ds["zoo"] == str(row.default_path)
    assert ds["build"] == (row.name if row.buildable else None)  # built on demand exactly when the row says so


@pytest.mark.parametrize("doc", ["zoo/README.md", "docs/cli.md"])
def test_every_catalogue_zoo_has_a_dataset_config_and_a_line_in_the_docs(doc):
    assert {p.stem for p in DATASET_FILES} == set(ZOOS)
    text = (REPO / doc).read_text()
    assert not [z.name for z in CATALOGUE if f"`{z.name}`" not in text]


def test_catalogue_architectures_exist_and_forges_fit_their_rows():
    for z in CATALOGUE:
        arch = named_architecture(z.architecture)
        assert arch.family == z.family, z.name
        assert z.forge is not None or z.importer is not None, f"{z.name}: neither forged nor imported"
    for z in forged():
        if z.fits_idx_files:  # its forge reads the user's IDX files when made
            continue
        forge = z.forge(z.forge_config())
        assert forge.name == z.name and forge.task()["name"] == z.task
        assert forge.arch.layers == named_architecture(z.architecture).layers


def test_get_builds_a_missing_zoo_then_opens_it(tmp_path, monkeypatch):
    zoo = gmnae.zoo.get("digits-inr", tmp_path, progress=False, size=12, seeds=2, steps=5, block_size=24)
    assert zoo.root == tmp_path / "digits-inr" and zoo.arch.family == "siren" and sum(zoo.count(s) for s in zoo.splits) == 24

    monkeypatch.setattr(forge_module, "build_zoo", lambda *a, **k: pytest.fail("rebuilt an existing zoo"))
    assert gmnae.zoo.get("digits-inr", tmp_path).root == zoo.root


@pytest.mark.parametrize("name,how", [("digits-inr", "gmnae zoo build digits-inr --out"),
                                      ("cifar10-cnn-tanh", "gmnae zoo import small-cnn-zoo"),
                                      ("mnist-inr", "gmnae zoo import mnist-inr --src DIR")])
def test_get_without_build_says_how_to_get_the_zoo(tmp_path, name, how):
    with pytest.raises(GmnaeError) as e:
        gmnae.zoo.get(name, tmp_path, build=name != "digits-inr")
    assert how in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not (tmp_path / name).exists()


def test_get_names_the_known_zoos():
    with pytest.raises(GmnaeError, match="known: digits-inr"):
        gmnae.zoo.get("digits")
