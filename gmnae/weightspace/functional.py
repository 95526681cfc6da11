"""Batched functional forward of B networks of one architecture at once.

    out = siren_render(arch, params, coords)          # [B, N, 1]  (B INRs on an N-point grid)
    logits = cnn_forward(arch, params, images)        # [B, N, 10] (B CNNs on N images)

Convolutions of B networks run as one grouped convolution (groups = B), so the whole batch is
a handful of kernel calls whatever B is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .architecture import Architecture
from .layout import unflatten
from .registry import ACTIVATIONS, activation as _activation, code_of


def activation_codes(activations, batch: int, device=None) -> torch.Tensor | str:
    """Normalise an activation spec: a name (same for all) stays a str; a per-network list becomes codes [B]."""
    if isinstance(activations, str):
        return activations
    if torch.is_tensor(activations):
        return activations.to(device=device, dtype=torch.long)
    codes = torch.tensor([code_of(a) for a in activations], dtype=torch.long, device=device)
    if codes.numel() != batch:
        raise ValueError(f"{codes.numel()} activations for {batch} networks")
    return codes


def apply_activation(z: torch.Tensor, act, w0: float = 30.0) -> torch.Tensor:
    """`act` a name, or per-network codes [B] (index into ACTIVATIONS) broadcast over z's leading dim."""
    if isinstance(act, str):
        return _activation(act).fn(z, w0)
    shape = (-1,) + (1,) * (z.dim() - 1)
    out = torch.zeros_like(z)
    for code in torch.unique(act).tolist():
        mask = (act == code).view(shape)
        out = torch.where(mask, apply_activation(z, ACTIVATIONS[code], w0), out)
    return out


def activate_channels(x: torch.Tensor, act, channels: int, w0: float = 30.0) -> torch.Tensor:
    """Activation of B networks' conv outputs in the grouped layout `[N, B*channels, H, W]`.

    Per-network codes are applied to channel slices: one slice per run of equal codes (networks
    sorted by activation cost one pass), else a `where` over a channel mask. Same values either way.
    """
    if isinstance(act, str):
        return apply_activation(x, act, w0)
    codes = act.tolist()
    runs = [0] + [i for i in range(1, len(codes)) if codes[i] != codes[i - 1]] + [len(codes)]
    if len(runs) == 2:
        return apply_activation(x, ACTIVATIONS[codes[0]], w0)
    if len(runs) <= 5:
        return torch.cat([apply_activation(x[:, a * channels:e * channels], ACTIVATIONS[codes[a]], w0)
                          for a, e in zip(runs[:-1], runs[1:])], dim=1)
    per_channel = act.repeat_interleave(channels).view(1, -1, 1, 1)
    out = torch.zeros_like(x)
    for code in sorted(set(codes)):
        out = torch.where(per_channel == code, apply_activation(x, ACTIVATIONS[code], w0), out)
    return out


def _grouped_by_activation(act) -> torch.Tensor | None:
    """The order that puts networks of equal activation next to each other (stable), or None if they are
    already (or all share one)."""
    if isinstance(act, str) or act.numel() < 2:
        return None
    if int((act[1:] != act[:-1]).sum()) < int(torch.unique(act).numel()):
        return None
    return torch.argsort(act, stable=True)


def network_activation(arch: Architecture, activation=None, batch: int = 0, device=None):
    act = arch.activation if activation is None else activation
    if isinstance(act, str) and act == "mixed":
        raise ValueError(f"{arch.name or arch.family} mixes activations: pass each network's activation")
    return activation_codes(act, batch, device)


def siren_render(arch: Architecture, params: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Render B SIRENs: params `[B, P]`, coords `[N, d_in]` (shared) or `[B, N, d_in]` -> `[B, N, d_out]`."""
    layers = unflatten(arch, params)
    h = coords if coords.dim() == 3 else coords.unsqueeze(0).expand(params.shape[0], -1, -1)
    for i, (w, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < len(layers) - 1:
            h = torch.sin(arch.w0 * h)
    return h + arch.output_offset


def _tf_pad(x: torch.Tensor, kernel: tuple[int, int], stride: int) -> torch.Tensor:
    """TensorFlow 'same' padding: output = ceil(size / stride), extra padding at bottom/right."""
    pads = []
    for size, k in ((x.shape[-1], kernel[1]), (x.shape[-2], kernel[0])):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def conv_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, padding: str) -> torch.Tensor:
    """B convolutions at once. x `[N, B*C_in, H, W]`, w `[B, C_out, C_in, kh, kw]`, b `[B, C_out]`."""
    B, c_out = w.shape[:2]
    if padding == "same":
        x = _tf_pad(x, tuple(w.shape[-2:]), stride)
    y = F.conv2d(x, w.reshape(B * c_out, *w.shape[2:]), b.reshape(-1), stride=stride, groups=B)
    return y


def cnn_features(arch: Architecture, params: torch.Tensor, images: torch.Tensor, activation=None,
                 dropout: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Globally pooled features of the conv stack: `[B, N, C_last]`.

    images `[N, C, H, W]` (the same images for every network) or `[B, N, C, H, W]` (own batch each).
    `dropout`: optional per-network rate `[B]` after every conv layer's activation (training, as Keras'
    Dropout layers in the Small CNN Zoo), masks drawn from `generator`.
    """
    B = params.shape[0]
    act = network_activation(arch, activation, B, params.device)
    layers = unflatten(arch, params)
    if images.dim() == 4:
        N = images.shape[0]
        x = images.repeat(1, B, 1, 1)  # [N, B*C, H, W]
    else:
        N = images.shape[1]
        x = images.transpose(0, 1).reshape(N, B * images.shape[2], *images.shape[3:])
    for spec, (w, b) in zip(arch.layers, layers):
        if spec.layer_type != "conv":
            break
        x = activate_channels(conv_layer(x, w, b, spec.stride, spec.padding), act, spec.n_out, arch.w0)
        if dropout is not None:
            keep = (1.0 - dropout).to(x).repeat_interleave(spec.n_out).view(1, -1, 1, 1)  # per channel of each net
            # The scaled mask built in place in the noise buffer: three passes over the largest tensors.
            mask = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device).lt_(keep).div_(keep)
            x = x * mask
    feats = x.mean(dim=(-2, -1)).view(N, B, -1).transpose(0, 1)  # [B, N, C]
    return feats


def cnn_forward(arch: Architecture, params: torch.Tensor, images: torch.Tensor, activation=None,
                dropout: torch.Tensor | None = None, generator: torch.Generator | None = None,
                dropout_after: str = "pool") -> torch.Tensor:
    """Logits of B CNNs `[B, N, n_classes]`.

    `dropout`: optional per-network rate `[B]` (training), masks drawn from `generator`, applied
    after the global pool (`dropout_after="pool"`, digits-cnn) or after every conv layer ("conv",
    the Small CNN Zoo's Keras model).
    """
    if dropout_after not in ("pool", "conv"):
        raise ValueError(f"dropout_after must be 'pool' or 'conv', not {dropout_after!r}")
    act = network_activation(arch, activation, params.shape[0], params.device)
    order = _grouped_by_activation(act)
    if order is not None:
        # Networks are independent: run them grouped by activation (one slice per activation in every layer
        # instead of each activation on every channel and a `where`: 1.27x the mixed scalegmn-small training
        # step, docs/performance.md) and put the logits back in the caller's order.
        pick = lambda t: t.index_select(0, order) if torch.is_tensor(t) and t.dim() > 0 else t
        logits = cnn_forward(arch, params.index_select(0, order), images if images.dim() == 4 else pick(images),
                             act.index_select(0, order), pick(dropout), generator, dropout_after)
        return logits.index_select(0, torch.argsort(order))
    conv_dropout = dropout if dropout_after == "conv" else None
    feats = cnn_features(arch, params, images, activation, dropout=conv_dropout, generator=generator)
    if dropout is not None and dropout_after == "pool":
        keep = (1.0 - dropout).view(-1, 1, 1).to(feats)
        noise = torch.rand(feats.shape, generator=generator, dtype=feats.dtype).to(feats.device)
        feats = feats * (noise < keep) / keep
    layers = unflatten(arch, params)
    h = feats
    for i in range(arch.n_conv, arch.n_layers):
        w, b = layers[i]
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < arch.n_layers - 1:
            h = apply_activation(h, network_activation(arch, activation, params.shape[0], params.device), arch.w0)
    return h + arch.output_offset


def forward(arch: Architecture, params: torch.Tensor, inputs: torch.Tensor, activation=None) -> torch.Tensor:
    """The family's forward (weightspace/family.py): coordinates for SIRENs, images for CNNs."""
    from .family import network_family

    return network_family(arch).forward(arch, params, inputs, activation)
