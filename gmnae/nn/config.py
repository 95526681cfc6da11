"""Encoder configuration: plain fields, so an OmegaConf yaml can hold it (`OmegaConf.structured(EncoderConfig)`).

Defaults mirror the published ScaleGMN models (docs/design.md §4): d = 128 (INR) / 256 (CNN), 4 layers,
SiLU, LayerNorm in the MLPs, dropout 0.2, sum aggregation.

    EncoderConfig.inr()                      # SIREN zoos: sign symmetry, d = 128
    EncoderConfig.cnn()                      # CNN zoos: hetero (scale for ReLU, sign for tanh), d = 256
    EncoderConfig.inr(bidirectional=True)    # any field can be overridden
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

SYMMETRIES = ("permutation", "sign", "scale", "hetero")
PATHS = ("dense", "edge")
AGGREGATIONS = ("sum", "mean")
ACTIVATIONS = ("silu", "relu", "gelu", "tanh")
INPUT_SCALES = ("none", "layer-rms")
EDGE_KERNELS = ("auto", "torch")


@dataclass
class EncoderConfig:
    d: int = 128                    # node and edge state width
    n_layers: int = 4               # message-passing layers
    latent_dim: int = 128           # size of the invariant latent
    symmetry: str = "scale"         # permutation | sign | scale | hetero (per network, from its activation)
    bidirectional: bool = False     # also pass messages from layer l+1 back to layer l
    path: str = "dense"             # dense (per-layer blocks) | edge (edge list + scatter); same results
    mlp_layers: int = 2             # depth of the node-level MLPs (update, canon embeddings, readout)
    edge_mlp_layers: int = 1        # depth of the per-edge invariant gates (each extra layer costs d^2 per edge)
    activation: str = "silu"
    layer_norm: bool = True         # LayerNorm in the MLPs
    dropout: float = 0.2            # on the node states between message-passing layers (as published)
    aggregation: str = "sum"        # sum | mean
    skip: bool = True               # residual connections on node and edge states
    canon_eps: float = 1e-8         # z / sqrt(|z|^2 + eps^2) in the scale canonicalisation
    input_scale: str = "none"       # none | layer-rms: multiply each weight/bias tensor by one constant,
                                    # 1 / its RMS over the zoo (a scalar per tensor commutes with every
                                    # symmetry; without it hidden SIREN weights (~0.01) barely reach the states)
    phase_canonical: bool = False   # SIRENs: each hidden bias to [0, π/(2 w0)] first (exact; sin's period is a
                                    # symmetry the encoder does not know; the published INR runs do this
                                    # to their data: weightspace/sine_phase.py)
    chunk_size: Optional[int] = None  # networks per chunk: None = auto (cache-sized on CPU, whole batch on GPU), 0 = off
    edge_kernel: str = "auto"       # the per-edge step on CPU: auto = the native C kernels for d <= 64
                                    # (gmnae/nn/gated_edge.c), Inductor-compiled pointwise chains around torch's
                                    # matmuls for d > 64 (gated_edge_compiled.py); both built on first use, else
                                    # torch; torch = `_GatedEdge` and torch ops
    compile: bool = False           # torch.compile the dense path (CPU: INR config ~1.4x faster after ~1 min of
                                    # compiling; the CNN config (d=256) gets slower -- measure with `make bench`)

    def __post_init__(self):
        for name, allowed in (("symmetry", SYMMETRIES), ("path", PATHS), ("aggregation", AGGREGATIONS),
                              ("activation", ACTIVATIONS), ("input_scale", INPUT_SCALES),
                              ("edge_kernel", EDGE_KERNELS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"EncoderConfig.{name} = {getattr(self, name)!r}; expected one of {allowed}")
        if self.d < 1 or self.n_layers < 1 or self.latent_dim < 1 or self.mlp_layers < 1 or self.edge_mlp_layers < 1:
            raise ValueError("EncoderConfig: d, n_layers, latent_dim, mlp_layers and edge_mlp_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderConfig.dropout = {self.dropout}; expected 0 <= dropout < 1")

    @staticmethod
    def inr(**overrides) -> "EncoderConfig":
        """Published INR setting (SIRENs: sine is odd, so sign symmetry)."""
        return replace(EncoderConfig(d=128, latent_dim=128, symmetry="sign"), **overrides)

    @staticmethod
    def cnn(**overrides) -> "EncoderConfig":
        """Published CNN setting; `hetero` gives ReLU networks scale and tanh networks sign symmetry."""
        return replace(EncoderConfig(d=256, latent_dim=256, symmetry="hetero"), **overrides)

    @staticmethod
    def from_dict(d) -> "EncoderConfig":
        """From a dict or DictConfig (unknown keys are an error)."""
        d = dict(d)
        known = {f.name for f in fields(EncoderConfig)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown EncoderConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return EncoderConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)
