"""Architecture descriptions for the two zoo families (docs/design.md §2).

An `Architecture` is a plain, JSON-serialisable description: it is stored in every zoo's
manifest and rebuilt from it with `Architecture.from_dict`. Everything else (flat layout,
functional forward, symmetry actions, graph view, weight matching) is derived from it, so no
module keeps a per-model table.

    siren = Architecture.siren()                      # MNIST-INR: 2 -> 32 -> 32 -> 1, sin(30 z), +0.5
    cnn = Architecture.small_cnn("relu")              # CIFAR-10 Small CNN Zoo, 4,970 params
    cnn8 = Architecture.small_cnn("tanh", padding="same")  # digits (8x8) variant
    cnn28 = Architecture.small_cnn("relu", image_size=(28, 28))  # MNIST (mnist5k-cnn), same shapes
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import prod

from .registry import ACTIVATIONS, activation as _activation, activations_with

# What each activation means lives in the registry (weightspace/registry.py); these are views of it.
ODD_ACTIVATIONS = activations_with("sign")           # sign flips of hidden units are symmetries
HOMOGENEOUS_ACTIVATIONS = activations_with("scale")  # positive rescaling of hidden units is a symmetry


@dataclass(frozen=True)
class LayerSpec:
    """One weight layer. Weight `[out, in]` (dense) or `[out, in, kh, kw]` (conv), then bias `[out]`."""

    layer_type: str  # "dense" | "conv"
    n_in: int
    n_out: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: str = "valid"  # "valid" | "same" (TensorFlow semantics, may be asymmetric)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.layer_type == "conv":
            return (self.n_out, self.n_in, *self.kernel)
        return (self.n_out, self.n_in)

    @property
    def weight_numel(self) -> int:
        return prod(self.weight_shape)

    @property
    def kernel_numel(self) -> int:
        return self.kernel[0] * self.kernel[1] if self.layer_type == "conv" else 1


@dataclass(frozen=True)
class Architecture:
    """A feed-forward network family: SIREN MLP or small CNN (conv stack, global average pool, dense head).

    `activation` follows every layer but the last. It is one of ACTIVATIONS (weightspace/registry.py), or "mixed" for zoos
    whose networks differ in activation (then each network's activation travels with it).
    """

    family: str  # "siren" | "cnn": a NetworkFamily's name (weightspace/family.py)
    layers: tuple[LayerSpec, ...]
    activation: str
    w0: float = 30.0  # SIREN frequency: sin(w0 * z)
    output_offset: float = 0.0  # added to the last layer's output (MNIST-INR: +0.5)
    image_size: tuple[int, int] = (0, 0)  # CNN input H, W (informational; params do not depend on it)
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    # ---- constructors -------------------------------------------------------------------
    @staticmethod
    def siren(widths=(2, 32, 32, 1), w0: float = 30.0, output_offset: float = 0.5, name="siren-2-32-32-1"):
        layers = tuple(LayerSpec("dense", a, b) for a, b in zip(widths[:-1], widths[1:]))
        return Architecture("siren", layers, "sine", w0=w0, output_offset=output_offset, name=name)

    @staticmethod
    def small_cnn(activation: str = "relu", channels=(1, 16, 16, 16), n_classes: int = 10,
                  kernel: int = 3, stride: int = 2, padding: str = "valid",
                  image_size=(32, 32), name: str | None = None):
        convs = tuple(LayerSpec("conv", a, b, (kernel, kernel), stride, padding)
                      for a, b in zip(channels[:-1], channels[1:]))
        head = LayerSpec("dense", channels[-1], n_classes)
        return Architecture("cnn", convs + (head,), activation, image_size=tuple(image_size),
                            name=name or f"small-cnn-{padding}-{activation}")

    # ---- derived facts ------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Width of each hidden layer (the output of every layer but the last)."""
        return tuple(l.n_out for l in self.layers[:-1])

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """Neurons per layer of the graph: input, hidden..., output."""
        return (self.layers[0].n_in,) + tuple(l.n_out for l in self.layers)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    @property
    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Flat layout: layer by layer, PyTorch order, weight then bias."""
        out = []
        for i, l in enumerate(self.layers):
            out.append((f"layers.{i}.weight", l.weight_shape))
            out.append((f"layers.{i}.bias", (l.n_out,)))
        return out

    @property
    def n_params(self) -> int:
        return sum(prod(s) for _, s in self.param_shapes)

    @property
    def n_conv(self) -> int:
        return sum(l.layer_type == "conv" for l in self.layers)

    @property
    def max_kernel_numel(self) -> int:
        return max(l.kernel_numel for l in self.layers)

    def with_activation(self, activation: str) -> "Architecture":
        d = self.to_dict()
        d["activation"] = activation
        return Architecture.from_dict(d)

    def check_activation(self, activation: str) -> None:
        _activation(activation)  # ValueError naming the known ones

    # ---- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        return d

    @staticmethod
    def from_dict(d: dict) -> "Architecture":
        d = dict(d)
        layers = tuple(LayerSpec(**_layer_fields(l)) for l in d.pop("layers"))
        d["image_size"] = tuple(d.get("image_size", (0, 0)))
        return Architecture(layers=layers, **d)

    def describe(self) -> str:
        parts = []
        for l in self.layers:
            if l.layer_type == "conv":
                parts.append(f"conv{l.kernel[0]}x{l.kernel[1]} {l.n_in}->{l.n_out} s{l.stride} {l.padding}")
            else:
                parts.append(f"dense {l.n_in}->{l.n_out}")
        act = f"sin({self.w0:g}z)" if self.activation == "sine" else self.activation
        return f"{self.family} [{', '.join(parts)}] act={act} params={self.n_params}"


def _layer_fields(layer: dict) -> dict:
    """A serialised layer's fields; `kind` is what manifests and checkpoints written before the rename call
    `layer_type`."""
    layer = {("layer_type" if k == "kind" else k): v for k, v in layer.items()}
    return {**layer, "kernel": tuple(layer.get("kernel", (1, 1)))}


# Architectures users can name on the command line (`gmnae merge --arch NAME`; its help lists these keys).
NAMED_ARCHITECTURES = {
    "siren": Architecture.siren,
    "mnist-inr": Architecture.siren,
    "small-cnn-relu": lambda: Architecture.small_cnn("relu"),
    "small-cnn-tanh": lambda: Architecture.small_cnn("tanh"),
    "digits-cnn-relu": lambda: Architecture.small_cnn("relu", padding="same", image_size=(8, 8)),
    "digits-cnn-tanh": lambda: Architecture.small_cnn("tanh", padding="same", image_size=(8, 8)),
    "mnist5k-cnn-relu": lambda: Architecture.small_cnn("relu", image_size=(28, 28)),
    "mnist5k-cnn-tanh": lambda: Architecture.small_cnn("tanh", image_size=(28, 28)),
}


def named_architecture(name: str) -> Architecture:
    """One of NAMED_ARCHITECTURES, built."""
    if name not in NAMED_ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(NAMED_ARCHITECTURES))} "
                         "(or pass a zoo folder)")
    return NAMED_ARCHITECTURES[name]()
