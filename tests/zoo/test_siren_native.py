"""The native SIREN fitter computes autograd's gradient and fits as the torch path does (same recipe);
the forge falls back to torch where it cannot compile."""
import numpy as np
import pytest
import torch

from gmnae.tasks import mnist5k
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture, siren_render
from gmnae.zoo import siren_native
from gmnae.zoo.inr_forge import dwsnets_init, fit_inrs, fit_inrs_on_grid

ARCH = Architecture.siren()
lib = siren_native.fitter(ARCH)
needs_compiler = pytest.mark.skipif(lib is None, reason="no C compiler: the torch path is the one in use")


def _targets(n):
    return mnist5k.inr_targets()[:n * 500:500]  # one digit of each class


@needs_compiler
def test_gradient_equals_autograd_in_float64():
    init = dwsnets_init(ARCH, list(range(6)))
    init += 0.05 * torch.randn(init.shape, generator=torch.Generator().manual_seed(0))  # not just the init
    targets = _targets(6)
    mse, grads = siren_native.grads_on_grid(lib, ARCH, init.numpy(), targets.numpy(), 28)
    p = init.double().requires_grad_()
    with torch.enable_grad():
        loss = (siren_render(ARCH, p, coordinate_grid(28, dtype=torch.float64)).squeeze(-1) - targets.double()
                ).pow(2).mean(1)
        loss.sum().backward()
    np.testing.assert_allclose(mse, loss.detach().numpy(), rtol=1e-4)
    rel = np.linalg.norm(grads - p.grad.numpy(), axis=1) / np.linalg.norm(p.grad.numpy(), axis=1)
    assert rel.max() < 1e-4


@needs_compiler
def test_fit_matches_the_torch_path_and_ignores_thread_count():
    init, targets = dwsnets_init(ARCH, list(range(8))), _targets(8)
    ref, ref_mse = fit_inrs(ARCH, init, targets, 60, 1e-3, coordinate_grid(28))
    one = siren_native.fit_on_grid(lib, ARCH, init.numpy(), targets.numpy(), 28, 60, 1e-3, 5e-5, threads=1)
    two = siren_native.fit_on_grid(lib, ARCH, init.numpy(), targets.numpy(), 28, 60, 1e-3, 5e-5, threads=2)
    np.testing.assert_array_equal(one, two)  # networks are independent: chunking cannot change a bit
    assert np.abs(one - ref.numpy()).max() < 1e-3
    params, mse = fit_inrs_on_grid(ARCH, init, targets, 60, 1e-3, 28)
    psnr_native, psnr_torch = (10 * torch.log10(1 / m) for m in (mse, ref_mse))
    assert (psnr_native - psnr_torch).abs().max() < 0.05


def test_fallback_without_the_native_fitter(monkeypatch):
    monkeypatch.setenv("GMNAE_NATIVE", "0")
    assert siren_native.fitter(ARCH) is None
    init, targets = dwsnets_init(ARCH, [0, 1]), _targets(2)
    params, mse = fit_inrs_on_grid(ARCH, init, targets, 20, 1e-3, 28)
    ref, ref_mse = fit_inrs(ARCH, init, targets, 20, 1e-3, coordinate_grid(28))
    torch.testing.assert_close(params, ref)


def test_other_architectures_are_not_native():
    assert siren_native.supports(ARCH)
    assert not siren_native.supports(Architecture.siren(widths=(2, 24, 24, 1)))
    assert not siren_native.supports(Architecture.siren(widths=(2, 32, 32, 32, 1)))
    assert not siren_native.supports(Architecture.small_cnn())
