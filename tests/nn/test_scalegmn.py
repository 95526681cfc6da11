"""ScaleGMN encoder: exact invariance on trained zoo networks, both execution paths, CPU and CUDA."""
from __future__ import annotations

import os

import pytest
import torch

from gmnae.nn import EncoderConfig, ScaleGMNEncoder, has_torch_scatter, scatter_backend
from gmnae.weightspace import apply_element, natural_symmetries, random_element, random_transform
from gmnae.weightspace.registry import code_of

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SCATTER = pytest.mark.skipif(not has_torch_scatter(), reason="torch_scatter not installed (optional extra)")
TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(request):
    """The encoders here are tiny (d=24, a dozen networks): one thread is as fast, and on a busy shared
    machine far faster than two (every op of a multi-threaded run is a thread hand-off that can stall)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def encoder(arch, symmetry, bidirectional=False, dtype=torch.float64, device="cpu", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = EncoderConfig(d=kw.pop("d", 24), latent_dim=16, symmetry=symmetry, bidirectional=bidirectional, **kw)
    return ScaleGMNEncoder(arch, cfg).to(device=device, dtype=dtype).eval()


@pytest.fixture(scope="module")
def mixed_cnns(trained_relu_cnns, trained_tanh_cnns, digits_cnn_zoo):
    """A batch mixing ReLU and tanh CNNs (interleaved), with the per-network activations."""
    (_, relu), (_, tanh) = trained_relu_cnns, trained_tanh_cnns
    n = min(len(relu), len(tanh), 6)
    params = torch.stack([p for pair in zip(relu[:n], tanh[:n]) for p in pair])
    acts = ["relu", "tanh"] * n
    return digits_cnn_zoo.arch, params, acts


def mixed_transform(arch, params, acts, generator):
    """Each network gets a random element of its own group (registry): PS for ReLU, PD for tanh."""
    B = params.shape[0]
    gs = random_element(arch, B, "PS", generator, dtype=params.dtype)
    gd = random_element(arch, B, "PD", generator, dtype=params.dtype)
    relu = torch.tensor([natural_symmetries(a) == "PS" for a in acts])
    for l in range(len(gs.perms)):
        gs.perms[l] = torch.where(relu[:, None], gs.perms[l], gd.perms[l])
        gs.scales[l] = torch.where(relu[:, None], gs.scales[l], gd.scales[l])
    return apply_element(arch, params, gs)


CASES = [  # (fixture, symmetry, group kinds the mode claims on those networks)
    ("trained_sirens", "sign", "PD"),
    ("trained_tanh_cnns", "sign", "PD"),
    ("trained_relu_cnns", "scale", "PS"),
    ("mixed", "hetero", None),
    ("trained_sirens", "permutation", "P"),
    ("trained_relu_cnns", "permutation", "P"),
    ("trained_tanh_cnns", "permutation", "P"),
    ("trained_relu_cnns", "hetero", "PS"),
    ("trained_tanh_cnns", "hetero", "PD"),
    ("trained_leaky_cnns", "scale", "PS"),
    ("trained_leaky_cnns", "hetero", "PS"),
]


def _case(request, name):
    if name == "mixed":
        return request.getfixturevalue("mixed_cnns")
    arch, params = request.getfixturevalue(name)
    return arch, params[:8], None


def _check_invariance(request, name, symmetry, kinds, bidirectional, path, dtype, device="cpu"):
    arch, params, acts = _case(request, name)
    gen = torch.Generator().manual_seed(7)
    moved = (mixed_transform(arch, params, acts, gen) if kinds is None
             else random_transform(arch, params, kinds, generator=gen))
    noisy = params + 0.01 * params.std() * torch.randn(params.shape, generator=gen, dtype=params.dtype)
    enc = encoder(arch, symmetry, bidirectional, dtype=dtype, device=device)
    with torch.no_grad():
        z, zg, zn = (enc(t.to(device=device, dtype=dtype), activation=acts, path=path) for t in (params, moved, noisy))
    sym, noise = rel(zg, z), rel(zn, z)
    assert torch.isfinite(z).all()
    assert sym <= TOL[dtype], f"{symmetry} not invariant on {name}: {sym:.2e}"
    assert noise > 1e-5 and noise > 100 * sym, f"noise {noise:.2e} vs symmetry {sym:.2e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", ["dense", "edge"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,symmetry,kinds", CASES, ids=[f"{s}-{n}" for n, s, _ in CASES])
def test_invariance_on_trained_networks(request, name, symmetry, kinds, bidirectional, path, dtype):
    _check_invariance(request, name, symmetry, kinds, bidirectional, path, dtype)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,kinds", [("trained_relu_cnns", "S"), ("trained_sirens", "D"), ("trained_tanh_cnns", "D")])
def test_permutation_mode_is_not_scale_or_sign_invariant(request, name, kinds, bidirectional):
    arch, params = request.getfixturevalue(name)
    params = params[:8]
    moved = random_transform(arch, params, kinds, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for path in ("dense", "edge"):
            enc = encoder(arch, "permutation", bidirectional)
            assert rel(enc(moved, path=path), enc(params, path=path)) > 1e-2
            # ... while the mode built for that group is invariant to the very same transform
            inv = encoder(arch, "scale" if kinds == "S" else "sign", bidirectional)
            assert rel(inv(moved, path=path), inv(params, path=path)) < 1e-7


def test_scale_mode_is_not_sign_invariant_and_sign_mode_not_scale_invariant(trained_relu_cnns):
    """Each mode claims only its own group: scale normalisation must not silently discard signs."""
    arch, params = trained_relu_cnns
    gen = torch.Generator().manual_seed(5)
    flipped = random_transform(arch, params[:8], "D", generator=gen)
    scaled = random_transform(arch, params[:8], "S", generator=gen)
    with torch.no_grad():
        enc = encoder(arch, "scale")
        assert rel(enc(flipped), enc(params[:8])) > 1e-3
        enc = encoder(arch, "sign")
        assert rel(enc(scaled), enc(params[:8])) > 1e-3


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,symmetry", [("trained_sirens", "sign"), ("trained_relu_cnns", "scale"),
                                           ("mixed", "hetero"), ("trained_tanh_cnns", "permutation")])
@pytest.mark.parametrize("backend", ["native", pytest.param("torch_scatter", marks=SCATTER)])
def test_dense_and_edge_paths_agree(request, name, symmetry, bidirectional, aggregation, backend):
    arch, params, acts = _case(request, name)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        enc = encoder(arch, symmetry, bidirectional, dtype=dtype, aggregation=aggregation)
        p = params.to(dtype).requires_grad_(True)
        with scatter_backend(backend):
            zd = enc(p, activation=acts, path="dense")
            ze = enc(p, activation=acts, path="edge")
            assert rel(ze, zd) <= tol
            # gradients agree too (w.r.t. the encoder's parameters and the input networks)
            wd = torch.randn_like(zd)
            gd = torch.autograd.grad((zd * wd).sum(), [p, *enc.parameters()], allow_unused=True)
            ge = torch.autograd.grad((ze * wd).sum(), [p, *enc.parameters()], allow_unused=True)
        for a, b in zip(gd, ge):
            assert (a is None) == (b is None)
            if a is not None and b.norm() > 0:
                assert rel(a, b) <= 100 * tol


def test_hetero_latent_does_not_depend_on_batch_composition(mixed_cnns):
    arch, params, acts = mixed_cnns
    enc = encoder(arch, "hetero", bidirectional=True)
    with torch.no_grad():
        z = enc(params, activation=acts)
        relu = [i for i, a in enumerate(acts) if a == "relu"]
        tanh = [i for i, a in enumerate(acts) if a == "tanh"]
        assert rel(enc(params[relu], activation="relu"), z[relu]) < 1e-12
        assert rel(enc(params[tanh], activation=["tanh"] * len(tanh)), z[tanh]) < 1e-12
        codes = torch.tensor([code_of(a) for a in acts])  # the registry's codes
        assert rel(enc(params, activation=codes), z) < 1e-12


def test_api_shapes_training_and_errors(mixed_cnns, trained_sirens):
    arch, params, acts = mixed_cnns
    enc = ScaleGMNEncoder(arch, EncoderConfig.cnn(d=16, latent_dim=12))
    assert enc.latent_dim == 12
    z = enc(params.float(), activation=acts)
    assert z.shape == (params.shape[0], 12) and z.dtype == torch.float32
    with pytest.raises(ValueError, match="activation"):
        enc(params.float())                       # mixed zoo, hetero, no activations
    with pytest.raises(ValueError):
        enc(params.float()[:, :-1], activation=acts)
    # training: dropout active, gradients finite everywhere
    enc.train()
    loss = enc(params.float(), activation=acts).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # default config follows the family; double() works
    sarch, sparams = trained_sirens
    senc = ScaleGMNEncoder(sarch).double().eval()
    assert senc.cfg.symmetry == "sign" and senc.cfg.d == 128
    assert senc(sparams[:2]).dtype == torch.float64
    with pytest.raises(ValueError):
        senc(sparams[:2], path="nope")


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("path", ["dense", "edge"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,symmetry,kinds", CASES[:5], ids=[f"{s}-{n}" for n, s, _ in CASES[:5]])
def test_invariance_on_cuda(request, name, symmetry, kinds, bidirectional, path):
    _check_invariance(request, name, symmetry, kinds, bidirectional, path, torch.float32, device="cuda")


@CUDA
@pytest.mark.cuda
def test_cuda_matches_cpu(trained_relu_cnns):
    arch, params = trained_relu_cnns
    enc = encoder(arch, "scale", True)
    with torch.no_grad():
        z = enc(params)
        for path in ("dense", "edge"):
            assert rel(enc.cuda()(params.cuda(), path=path).cpu(), z) < 1e-10
            enc.cpu()


def gate_inputs(s, bias: bool, extra: bool):
    """Float64 inputs of the per-edge gate on a [2, 3, 4, 5] block (a, c, lin, b, h_add, sq_add, s, n), for the
    gradient tests of every gate implementation; `s="tensor"`: per-network signs."""
    g = torch.Generator().manual_seed(0)
    kw = dict(dtype=torch.float64)
    a = torch.randn(2, 3, 4, 5, generator=g, **kw).requires_grad_()
    c = torch.randn(2, 1, 4, 5, generator=g, **kw).requires_grad_()
    lin = torch.nn.Linear(5, 5, bias=bias).double()
    b = torch.randn(5, generator=g, **kw).requires_grad_()
    h_add = torch.randn(2, 3, 1, 5, generator=g, **kw).requires_grad_() if extra else None
    sq_add = torch.rand(2, 3, 1, 1, generator=g, **kw).requires_grad_() if extra else None
    if s == "tensor":
        s = torch.tensor([1.0, -1.0], **kw).view(2, 1, 1, 1)
    return a, c, lin, b, h_add, sq_add, s, 10 if extra else 5


@pytest.mark.parametrize("reduce", [None, 1, 2])
@pytest.mark.parametrize("kernel", ["torch", "native"])
@pytest.mark.parametrize("s", [None, -1.0, 1.0, "tensor"])
@pytest.mark.parametrize("bias,extra,times_z", [(False, False, True), (True, True, False)])
def test_fused_edge_gate_gradients(s, bias, extra, times_z, kernel, reduce):
    """The hand-written backwards of the per-edge gate (`_GatedEdge`, torch ops; `_GatedEdgeNative`, the C
    kernel, which sums the output over `reduce` inside): gradcheck, and equal to the autograd composite."""
    from types import SimpleNamespace
    from gmnae.nn import gated_edge_native
    from gmnae.nn.gated_edge import _GatedEdge, gated_edge
    if kernel == "native" and gated_edge_native.library(torch.float64, 5) is None:
        pytest.skip("the native gate did not build (no C compiler?)")
    fn_cls, fused = (_GatedEdge, "torch") if kernel == "torch" else (gated_edge_native._GatedEdgeNative, True)
    a, c, lin, b, h_add, sq_add, s, n = gate_inputs(s, bias, extra)
    fn = lambda a, c, W, b, h_add, sq_add: gated_edge(a, c, SimpleNamespace(weight=W, bias=lin.bias), b, s, 1e-12,
                                                      h_add=h_add, sq_add=sq_add, n=n, times_z=times_z, fused=fused,
                                                      reduce=reduce)
    assert torch.autograd.gradcheck(fn, (a, c, lin.weight, b, h_add, sq_add))
    ins = [t for t in (a, c, lin.weight, lin.bias, b, h_add, sq_add) if t is not None]
    outs = []
    for f in (fused, False):
        y = gated_edge(a, c, lin, b, s, 1e-12, h_add=h_add, sq_add=sq_add, n=n, times_z=times_z, fused=f,
                       reduce=reduce)
        if f:
            grad_fn = y.grad_fn if kernel == "native" or reduce is None else y.grad_fn.next_functions[0][0]
            assert type(grad_fn).__name__ == fn_cls.__name__ + "Backward"
        outs.append((y, torch.autograd.grad((y * y.detach().cos()).sum(), ins)))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-12)
    for x, y in zip(outs[0][1], outs[1][1]):
        assert torch.allclose(x, y, atol=1e-10)


@pytest.mark.parametrize("layout", ["dense", "edge"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16-autocast"])
def test_native_edge_gate_float32(layout, dtype):
    """The float32 kernel (what training runs) against the torch gate, on the layer's two layouts (dense
    blocks with broadcast node operands, edge lists with per-edge ones), threads splitting the rows; under
    bf16 autocast the kernel computes in float32 (the torch gate's matmul runs in bf16)."""
    from gmnae.nn import gated_edge_native
    from gmnae.nn.gated_edge import gated_edge
    if gated_edge_native.library(torch.float32, 32) is None:
        pytest.skip("the native gate did not build (no C compiler?)")
    g = torch.Generator().manual_seed(0)
    d = 32
    if layout == "dense":
        shapes = dict(a=(6, 7, 5, d), c=(6, 1, 5, d), h_add=(6, 7, 1, d), sq_add=(6, 7, 1, 1), s=(6, 1, 1, 1))
    else:
        shapes = dict(a=(50, d), c=(50, d), h_add=(50, d), sq_add=(50, 1), s=(50, 1))
    t = {k: torch.randn(*v, generator=g).requires_grad_(k != "s") for k, v in shapes.items()}
    t["sq_add"] = t["sq_add"].detach().abs().requires_grad_()
    t["s"] = t["s"].sign()
    lin = torch.nn.Linear(d, d)
    b = torch.randn(d, generator=g).requires_grad_()
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for extra, reduce in ((False, None), (True, None), (False, 2), (True, 1)):
            if reduce is not None and layout == "edge":
                continue
            kw = dict(h_add=t["h_add"], sq_add=t["sq_add"], n=2 * d, times_z=False) if extra else {}
            kw["reduce"] = reduce
            ins = [t["a"], t["c"], lin.weight, lin.bias, b] + ([t["h_add"], t["sq_add"]] if extra else [])
            outs = []
            for f in (True, "torch"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    a = t["a"].to(dtype) if dtype == torch.bfloat16 else t["a"]
                    y = gated_edge(a, t["c"], lin, b, t["s"], 1e-16, fused=f, **kw)
                assert y.dtype == torch.float32
                outs.append((y, torch.autograd.grad((y * y.detach().cos()).sum(), ins)))
            tol = 1e-5 if dtype == torch.float32 else 3e-2
            assert rel(outs[0][0], outs[1][0]) < tol
            for x, y in zip(outs[0][1], outs[1][1]):
                assert rel(x, y) < tol
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mapped libraries (Linux)")
def test_native_kernels_share_torchs_openmp_runtime():
    """The kernels' row ranges run on torch's own OpenMP threads: the library's OpenMP entry point resolves to
    the libgomp torch runs on (a second runtime's pool would contend with torch's spinning workers,
    docs/performance.md). Other packages may load OpenMP runtimes of their own (scikit-learn does)."""
    import ctypes

    from gmnae.nn import gated_edge_native
    lib = gated_edge_native.library(torch.float32, 32)
    if lib is None:
        pytest.skip("the native gate did not build (no C compiler?)")
    torch_cpu = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))

    def runtime_of(handle) -> str:
        addr = ctypes.cast(handle.GOMP_parallel, ctypes.c_void_p).value
        for line in open("/proc/self/maps").read().splitlines():
            span, *rest = line.split()
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                return rest[-1]
        return "?"

    theirs = runtime_of(torch_cpu)
    if "libgomp" not in theirs:
        pytest.skip(f"this torch build runs on another OpenMP runtime ({theirs})")
    assert runtime_of(lib) == theirs


@pytest.mark.slow
def test_compiled_dense_path_matches_eager(trained_sirens):
    """cfg.compile=True (torch.compile of the dense path, chunks padded to one shape) gives the eager numbers."""
    arch, params = trained_sirens
    params = params[:10].float()
    enc = encoder(arch, "sign", dtype=torch.float32, d=16, chunk_size=4)
    with torch.no_grad():
        z = enc(params)
        enc.cfg.compile = True
        zc = enc(params)
        moved = random_transform(arch, params, "PD", generator=torch.Generator().manual_seed(0))
        assert rel(enc(moved), zc) <= TOL[torch.float32]
    assert rel(zc, z) < 1e-5


@pytest.mark.parametrize("path", ["dense", "edge"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
def test_edge_kernels_agree(mixed_cnns, path, bidirectional):
    """edge_kernel="auto" (the native gate, which the invariance tests above run through) and "torch"
    (`_GatedEdge`): the same latent and parameter gradients, on a hetero batch (per-network sign flags)."""
    from gmnae.nn import gated_edge_native
    if gated_edge_native.library(torch.float64, 24) is None:
        pytest.skip("the native gate did not build (no C compiler?)")
    arch, params, act = mixed_cnns
    out = []
    for kernel in ("auto", "torch"):
        enc = encoder(arch, "hetero", bidirectional, path=path, edge_kernel=kernel)
        z = enc(params[:6], activation=act[:6])
        grads = torch.autograd.grad(z.square().sum(), list(enc.parameters()), allow_unused=True)
        out.append((z, [g for g in grads if g is not None]))
    assert rel(out[0][0], out[1][0]) < 1e-12
    for x, y in zip(out[0][1], out[1][1]):
        assert rel(x, y) < 1e-10


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("layout", ["dense", "edge"])
def test_native_edge_update(layout, skip):
    """The native edge update `e + eE * silu(p + q)`: gradcheck (float64) on both layouts, and equal to the
    torch ops; under bf16 autocast inputs it computes in float32."""
    import torch.nn.functional as F

    from gmnae.nn import gated_edge_native
    if gated_edge_native.library(torch.float64, 4) is None:
        pytest.skip("the native kernels did not build (no C compiler?)")
    g = torch.Generator().manual_seed(0)
    shapes = ((3, 5, 6, 4), (3, 5, 6, 4), (3, 1, 6, 4), (3, 5, 1, 4)) if layout == "dense" else ((20, 4),) * 4
    e, x, p, q = (torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes)
    e = e if skip else None
    fn = lambda e, x, p, q: gated_edge_native._EdgeUpdateNative.apply(e, x, p, q)
    assert torch.autograd.gradcheck(fn, (e, x, p, q))
    ref = (x * F.silu(p + q)) if e is None else e + x * F.silu(p + q)
    assert rel(gated_edge_native.edge_update(e, x, p, q), ref) < 1e-14
    xb, pb, qb = x.detach().bfloat16(), p.detach().bfloat16(), q.detach().bfloat16()
    out = gated_edge_native.edge_update(None if e is None else e.detach().float(), xb, pb, qb)
    refb = xb.float() * F.silu(pb.float() + qb.float()) + (0 if e is None else e.detach().float())
    assert out.dtype == torch.float32 and rel(out, refb) < 1e-6


def test_native_kernels_fall_back(monkeypatch, tmp_path, capsys):
    """GMNAE_NATIVE=0, or no working C compiler: the torch gate runs (one note on stderr for the failed
    build), with the same numbers."""
    from gmnae.nn import gated_edge_native
    from gmnae.nn.gated_edge import gated_edge
    a, c = torch.randn(2, 3, 4, 8, dtype=torch.float64), torch.randn(2, 1, 4, 8, dtype=torch.float64)
    lin = torch.nn.Linear(8, 8).double()
    b = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    ref = gated_edge(a, c, lin, b, -1.0, 1e-16, fused=False)
    monkeypatch.setenv("GMNAE_NATIVE", "0")
    y = gated_edge(a, c, lin, b, -1.0, 1e-16)
    assert type(y.grad_fn).__name__ == "_GatedEdgeBackward" and rel(y, ref) < 1e-12
    monkeypatch.setenv("GMNAE_NATIVE", "1")
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("GMNAE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(gated_edge_native, "_warned", False)
    gated_edge_native._library.cache_clear()
    try:
        y = gated_edge(a, c, lin, b, -1.0, 1e-16)
        assert type(y.grad_fn).__name__ == "_GatedEdgeBackward" and rel(y, ref) < 1e-12
        assert "native per-edge gate did not build" in capsys.readouterr().err
    finally:
        gated_edge_native._library.cache_clear()
