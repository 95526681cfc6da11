"""Checks of a dataset's zoo against its config, before anything trains (`ZooDataModule.prepare_data`).

Bad input — a missing or mistyped zoo, a file where a folder belongs, the wrong architecture or
family, a missing split, a corrupt shard — stops with one line naming the file and the fix. A
missing built-in zoo is built only when the user asked (`--build-zoo`) at the dataset's own path.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ZooError
from ..weightspace import named_architecture
from ..weightspace.family import network_family
from ..zoo.format import MANIFEST, Zoo, missing_zoo_hint

VERIFY_FULL_BYTES = 1 << 30  # checksum every shard before training when the zoo is smaller than this


def builds_missing_zoo(cfg, build_zoo: bool) -> bool:
    """Whether a missing zoo is built here: only when the user asked (`--build-zoo`, which `make train`
    passes), for a built-in dataset at the zoo path its file names -- a moved or mistyped path, an
    empty folder elsewhere or a resume from another folder must not start a build of many minutes."""
    ds = cfg.dataset
    from ..config.load import dataset_file
    from ..threads import external_launch

    if not (build_zoo and ds.get("build")) or external_launch():
        return False

    return Path(ds.zoo) == Path(dataset_file(cfg.choices.dataset).zoo).absolute()


def check_zoo(root: Path, dataset: dict, build_if_missing: bool = False) -> Zoo:
    """Open the dataset's zoo -- building a missing built-in one only when asked -- and check it against
    `dataset` (the config's dataset section: name, family, architecture, build)."""
    root = Path(root)
    if root.is_file():
        raise ZooError(f"dataset.zoo {root} is a file, not a zoo folder; point dataset.zoo at the folder "
                       f"that holds {MANIFEST}")
    if not (root / MANIFEST).exists():
        if build_if_missing:
            from ..zoo.forge import build_zoo as build

            print(f"zoo {root} is missing: building it (gmnae zoo build {dataset['build']}); interrupted builds resume")
            build(dataset["build"], root, src=dataset.get("data_root"))  # data_root: an IDX zoo's image files
        elif dataset.get("build"):
            raise ZooError(f"no zoo at {root} (no {MANIFEST}); build it with `gmnae zoo build {dataset['build']} "
                           f"--out {root}` (or `make train` for the default path), or point dataset.zoo at your zoo")
        else:
            raise ZooError(missing_zoo_hint(root))
    zoo = Zoo(root)
    name = dataset.get("name")
    if dataset.get("architecture"):
        want = named_architecture(dataset["architecture"])
        if zoo.arch.layers != want.layers or network_family(zoo.arch) is not network_family(want):
            raise ZooError(f"zoo {root} holds {zoo.arch.describe()} but dataset {name} expects "
                           f"{want.describe()}; point dataset.zoo at the right zoo")
    if dataset.get("family") and network_family(dataset["family"]) is not network_family(zoo.arch):
        raise ZooError(f"zoo {root} holds {zoo.arch.family} networks but dataset {name} is of family "
                       f"{dataset['family']}; point dataset.zoo at the right zoo")
    for split in ("train", "val"):
        if split not in zoo.splits:
            raise ZooError(f"zoo {root} has no {split!r} split (it has {', '.join(zoo.splits)}); rebuild or re-import it")
    size = sum(s.path.stat().st_size for sp in zoo.splits for s in zoo.shards(sp) if s.path.exists())
    if size < VERIFY_FULL_BYTES:
        from ..zoo.verify import verify_zoo

        verify_zoo(root)
    else:
        check_structure(zoo)
    return zoo


def check_structure(zoo: Zoo) -> None:
    """Large zoos: every shard exists and opens with the right shape (checksums: `gmnae zoo verify`)."""
    for split in zoo.splits:
        for shard in zoo.shards(split):
            f = zoo._open(shard)
            with f:
                if f["params"].shape != (shard.count, zoo.arch.n_params):
                    raise ZooError(f"shard {shard.path} holds {f['params'].shape}, manifest says "
                                   f"({shard.count}, {zoo.arch.n_params}); rebuild or re-import the zoo")
