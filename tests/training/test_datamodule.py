"""The datamodule owns the zoo: checks, statistics, task images and evaluation pairs, each read once."""
import collections
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gmnae.config.load import load_config
from gmnae.data.datamodule import ZooDataModule
from gmnae.errors import ZooError
from gmnae.weightspace.registry import code_of

from .conftest import tiny_overrides


def test_datamodule_filters_activation(digits_cnn_zoo):
    dm = ZooDataModule(str(digits_cnn_zoo.root), batch_size=4, activation="tanh")
    rows, acts = dm.split_rows("train")
    assert len(rows) > 0 and set(acts[rows].tolist()) == {code_of("tanh")}
    assert dm.arch.activation == "tanh"


def test_statistics_come_from_the_kept_activation_only(digits_cnn_zoo):
    """A mixed zoo filtered to one activation: the decoder's output statistics and the encoder's input scale
    are computed from that activation's train networks, not from the other's too."""
    from omegaconf import OmegaConf

    from gmnae.data.datamodule import statistics_sample
    from gmnae.training.model_builder import build_model

    params = digits_cnn_zoo.read_params("train")
    acts = np.asarray(digits_cnn_zoo.activations("train"))
    tanh = params[acts == "tanh"]
    np.testing.assert_array_equal(statistics_sample(digits_cnn_zoo, "tanh", limit=10), tanh[:10])
    np.testing.assert_array_equal(statistics_sample(digits_cnn_zoo, None, limit=10), params[:10])
    assert np.abs(tanh.mean(0) - params.mean(0)).max() > 1e-3  # the two samples really differ

    cfg = load_config(["dataset=digits-cnn", "dataset.activation=tanh", "model.probe.points=0"])
    OmegaConf.update(cfg, "dataset.zoo", str(digits_cnn_zoo.root))
    model = build_model(cfg, ZooDataModule.from_config(cfg))
    torch.testing.assert_close(model.decoder.out_mean, torch.from_numpy(tanh.mean(0)), rtol=1e-5, atol=1e-6)


def _count_shard_opens(monkeypatch) -> collections.Counter:
    """Every HDF5 file the real reader opens, by file name, from now on."""
    opened = collections.Counter()
    real = h5py.File

    def counting(name, *args, **kw):
        opened[Path(str(name)).name] += 1
        return real(name, *args, **kw)

    monkeypatch.setattr(h5py, "File", counting)
    return opened


EVAL = {"evaluation.pairs_per_type": 3, "evaluation.lambdas": 3, "evaluation.max_iter": 5,
        "evaluation.reconstructions": 2}


def test_evaluation_reads_its_split_once_for_every_pair_type(digits_inr_zoo, tmp_path, monkeypatch):
    """The merging evaluation draws all its pair types (and their evaluators) from one read of the split, and a
    second evaluation (a later epoch) reads nothing more; the pairs are those `zoo_pairs` draws type by type."""
    from gmnae.merge.pairs import SplitNetworks, zoo_pairs
    from gmnae.evaluation.merge_evaluation import MergeEvaluation
    from gmnae.training.model_builder import build_model
    from gmnae.zoo import Zoo

    cfg = load_config(tiny_overrides(digits_inr_zoo.root, tmp_path, **EVAL))
    dm = ZooDataModule.from_config(cfg)
    model = build_model(cfg, dm)
    opened = _count_shard_opens(monkeypatch)
    SplitNetworks.read(Zoo(digits_inr_zoo.root), "val")
    one_read = {name: n for name, n in opened.items() if name.startswith("val-")}
    opened.clear()
    evaluation = MergeEvaluation.from_datamodule(dm, cfg, "val")
    evaluation.run(model)
    evaluation.run(model)
    assert list(evaluation.pair_sets) == ["orbit-P", "orbit-D", "orbit-PD", "independent"]
    assert one_read and {name: n for name, n in opened.items() if name.startswith("val-")} == one_read
    for pair_type, ps in evaluation.pair_sets.items():
        alone = zoo_pairs(digits_inr_zoo, "val", pair_type, n_pairs=3, seed=cfg.seed, sigma=cfg.evaluation.noise_std)
        assert torch.equal(ps.a, alone.a) and torch.equal(ps.b, alone.b)
        assert (ps.index_a == alone.index_a).all() and (ps.index_b == alone.index_b).all()


def test_task_images_are_loaded_once_and_are_the_modules(digits_cnn_zoo, tmp_path, monkeypatch):
    """A CNN run -- the zoo checks, the probe, the distillation loss, the merging evaluation and its fine-tune --
    loads each split of task images once, in the datamodule; the module's images are the datamodule's."""
    from gmnae.training.model_builder import build_model
    from gmnae.tasks import classification
    from gmnae.commands.trainer_setup import build_trainer

    loads = collections.Counter()
    real = classification.task_images

    def counting(task, split, data_root=None):
        loads[split] += 1
        return real(task, split, data_root)

    monkeypatch.setattr(classification, "task_images", counting)
    cfg = load_config(tiny_overrides(digits_cnn_zoo.root, tmp_path, "digits-cnn", run_name="images", **EVAL, **{
        "trainer.max_epochs": 1, "dataset.activation": "relu", "model.probe.points": 4, "evaluation.enabled": "true",
        "evaluation.every_n_val_epochs": 1, "evaluation.finetune_steps": 1}))
    dm = ZooDataModule.from_config(cfg)
    dm.prepare_data()
    model = build_model(cfg, dm)
    build_trainer(cfg, tmp_path / "images").fit(model, datamodule=dm)
    assert (tmp_path / "images" / "eval" / "barriers.csv").exists()  # the evaluation ran
    assert loads == {"train": 1, "test": 1}
    for split in ("train", "test"):
        assert model.task_images(split)[0].data_ptr() == dm.task_images(split)[0].data_ptr()


def test_prepare_data_stops_on_a_zoo_of_the_other_family(digits_cnn_zoo, tmp_path):
    """The datamodule's checks: a dataset of INRs pointed at a CNN zoo (no architecture to catch it first)
    stops with one line naming the zoo, the dataset and the fix, before anything is read or written."""
    cfg = load_config(tiny_overrides(digits_cnn_zoo.root, tmp_path, **{"dataset.architecture": "null"}))
    with pytest.raises(ZooError) as e:
        ZooDataModule.from_config(cfg).prepare_data()
    assert str(e.value) == (f"zoo {digits_cnn_zoo.root} holds cnn networks but dataset digits-inr is of family siren; "
                            "point dataset.zoo at the right zoo")
    assert list(tmp_path.iterdir()) == []
