"""Weight-space core: architectures, the activation registry, permutation specs, flat layout, batched
functional forward, symmetry actions."""
from .architecture import Architecture, LayerSpec, named_architecture
from .functional import cnn_features, cnn_forward, forward, siren_render
from .layout import flat_from_state_dict, flatten, layer_offsets, state_dict_from_flat, unflatten
from .modules import build_module
from .permutation_spec import PermutationSpec, TensorAxis, UnitGroup, permutation_spec
from .registry import ACTIVATIONS, REGISTRY, activation
from .sine_phase import canonicalize_sine_phase
from .symmetry import (GroupElement, apply_element, compose, identity_element, invert, natural_symmetries,
                       random_element, random_transform)

__all__ = [
    "ACTIVATIONS", "Architecture", "LayerSpec", "named_architecture", "cnn_features", "cnn_forward",
    "forward", "siren_render", "flat_from_state_dict", "flatten", "layer_offsets", "state_dict_from_flat",
    "unflatten", "build_module", "PermutationSpec", "TensorAxis", "UnitGroup", "permutation_spec", "REGISTRY",
    "activation", "GroupElement", "apply_element", "compose", "identity_element", "invert",
    "natural_symmetries", "random_element", "random_transform", "canonicalize_sine_phase",
]
