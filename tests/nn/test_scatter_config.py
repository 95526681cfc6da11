"""Scatter shim (native and torch_scatter) and the encoder config."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from gmnae.nn import EncoderConfig, has_torch_scatter, scatter_backend, scatter_sum
from gmnae.nn.scatter import current_backend

SCATTER = pytest.mark.skipif(not has_torch_scatter(), reason="torch_scatter not installed (optional extra)")


@pytest.mark.parametrize("backend", ["native", pytest.param("torch_scatter", marks=SCATTER)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scatter_sum(backend, dtype):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(100, 3, 5, generator=g, dtype=dtype, requires_grad=True)
    index = torch.randint(0, 7, (100,), generator=g)
    expected = torch.stack([src[index == i].sum(0) for i in range(9)])  # rows 7, 8 stay empty
    with scatter_backend(backend):
        assert current_backend() == backend
        out = scatter_sum(src, index, 9)
    assert torch.allclose(out, expected) and out.dtype == dtype
    out.sum().backward()
    assert torch.equal(src.grad, torch.ones_like(src))


def test_scatter_backend_selection():
    assert current_backend() == ("torch_scatter" if has_torch_scatter() else "native")
    with scatter_backend("native"):
        assert current_backend() == "native"
    with pytest.raises(ValueError):
        with scatter_backend("cuda-magic"):
            pass
    if not has_torch_scatter():
        with pytest.raises(RuntimeError):
            with scatter_backend("torch_scatter"):
                pass


def test_config_presets_and_omegaconf():
    inr, cnn = EncoderConfig.inr(), EncoderConfig.cnn()
    assert (inr.d, inr.n_layers, inr.symmetry, inr.dropout, inr.aggregation, inr.activation) == \
        (128, 4, "sign", 0.2, "sum", "silu")
    assert (cnn.d, cnn.symmetry, cnn.latent_dim) == (256, "hetero", 256) and cnn.layer_norm
    assert EncoderConfig.inr(bidirectional=True, d=32).d == 32
    # a yaml can hold it, and it comes back identical
    yaml = OmegaConf.to_yaml(OmegaConf.structured(cnn))
    back = EncoderConfig.from_dict(OmegaConf.to_container(OmegaConf.create(yaml)))
    assert back == cnn
    merged = OmegaConf.merge(OmegaConf.structured(EncoderConfig), {"symmetry": "scale", "path": "edge"})
    assert EncoderConfig.from_dict(merged).path == "edge"
    with pytest.raises(ValueError):
        EncoderConfig(symmetry="rotation")
    with pytest.raises(ValueError):
        EncoderConfig(path="sparse")
    with pytest.raises(ValueError):
        EncoderConfig.from_dict({"d": 8, "widht": 3})
