"""The LightningModule a training config asks for: the autoencoder, or a downstream predictor.

Everything read from the zoo comes from the run's `ZooDataModule`: the architecture, the statistics
of the decoder's output and the encoder's input scale (`statistics_sample`, its only source), a CNN
probe's images and the downstream targets.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ..errors import ZooError


def build_model(cfg: DictConfig, dm):
    """The model of `cfg` for the zoo of the (prepared) datamodule `dm`."""
    import torch

    from .autoencoder import WeightSpaceAutoencoder

    arch = dm.arch
    sample = dm.statistics_sample()  # decoder output / encoder input statistics
    probe = OmegaConf.to_container(cfg.model.probe) if cfg.model.get("probe") else None
    if cfg.task != "autoencode":
        model = build_predictor(cfg, dm, probe)
    else:
        model = WeightSpaceAutoencoder(param_stats=(sample.mean(0), sample.std(0)), probe=probe,
            arch=arch.to_dict(), family=dm.family.name,
            encoder=OmegaConf.to_container(cfg.model.encoder), decoder=OmegaConf.to_container(cfg.model.decoder),
            optim=OmegaConf.to_container(cfg.optim), loss=OmegaConf.to_container(cfg.loss), task=dm.zoo.task,
            data_root=cfg.dataset.get("data_root"), resolution=cfg.dataset.get("resolution", 28))
    model.encoder.set_input_scale(torch.from_numpy(sample))
    if model.probe is not None and dm.family.classifies:  # CNN probes: a seeded set of training images
        images = dm.task_images("train")[0]
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[:len(model.probe.inputs)]
        model.probe.set_inputs(images[pick])
    return model


def task_targets(cfg: DictConfig, zoo) -> dict:
    """The downstream task's target of every network, per split (the label or the stored test accuracy)."""
    from .predictor import TARGET_KEY

    key = TARGET_KEY[cfg.task]
    out = {}
    for split in ("train", "val", "test"):
        if split not in zoo.splits:
            continue
        meta = zoo.read_meta(split)
        if key not in meta:
            raise ZooError(f"zoo {zoo.root} has no {key!r} per network: task={cfg.task} needs it "
                           f"({'an INR zoo with labels' if key == 'label' else 'a CNN zoo with test accuracies'})")
        out[split] = meta[key]
    return out


def build_predictor(cfg: DictConfig, dm, probe):
    from .predictor import WeightSpacePredictor

    targets = task_targets(cfg, dm.zoo)
    n_classes = int(max(t.max() for t in targets.values())) + 1 if cfg.task == "classify" else 1
    return WeightSpacePredictor(arch=dm.arch.to_dict(), task=cfg.task, encoder=OmegaConf.to_container(cfg.model.encoder),
                                optim=OmegaConf.to_container(cfg.optim), n_classes=n_classes, probe=probe,
                                targets=targets)
