"""The per-edge step as native kernels: `gated_edge.c`, compiled on first use with the machine's C compiler.

Two kernels, each an autograd Function here: `_GatedEdgeNative`, the gate (`_GatedEdge`'s math, the output
optionally summed over the senders inside: `reduce`), and `_EdgeUpdateNative`, `e + eE * silu(p + q)`.
Why C: the torch ops stream every per-edge tensor `[B, n_out, n_in, d]` through memory ~20 times in the
gate's forward and ~45 in its backward; a kernel does one row (one edge, d values) at a time with the d x d
matvec inside the loop (W stays in L1), so the forward reads its inputs once and writes its output once,
and the backward (which recomputes z, h, y, g instead of saving them) reads the inputs and the output
gradient once and writes the input gradients once. It runs where it pays: on CPU, float32 and float64,
d <= `MAX_D` (beyond that MKL's blocked matmul beats a row-at-a-time matvec); under bf16 autocast it
computes in float32 (the torch path runs the matmul in bf16 and the rest in float32). Rows are split
over torch's thread count by their first dim and run on torch's own OpenMP threads (ctypes releases the GIL).

Built once per (source, compiler, flags, CPU, precision, d) into `$GMNAE_CACHE_DIR/native` (default
`~/.cache/gmnae/native`), the same cache as the SIREN fitter (gmnae/zoo/siren_native.py). Without a C
compiler or a writable cache, or with `GMNAE_NATIVE=0`, `library()` returns None and the encoder uses the
torch `_GatedEdge` (same math; the tests check the two agree).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch

from ..zoo.siren_native import cache_dir, cached_build

SOURCE = Path(__file__).with_name("gated_edge.c")
# -ffast-math at compile time only: linking with it would pull in crtfastmath.o (GCC < 13), which sets
# flush-to-zero for the whole process on load. It lets GCC vectorise exp() through glibc's libmvec.
CFLAGS = ["-O3", "-ffast-math", "-fopenmp", "-march=native", "-fPIC"]
LIBS = ["-fopenmp", "-lmvec", "-lm"]
MAX_D = 64
BUILD_SECONDS: dict[str, float] = {}  # compile (or cache load) time per kernel in this process
# The kernels' own work, for the roofline (`benchmarks/fused.py`): set to {"flops": 0, "bytes": 0} to count.
# flops: the matvecs (2 d^2 per row each: one forward, three backward); bytes: each distinct input element
# read once, each output written once (accumulated gradients: read and written).
COUNTERS: dict | None = None


def _count(flops: float, *tensors, acc=()) -> None:
    if COUNTERS is not None:
        COUNTERS["flops"] += flops
        COUNTERS["bytes"] += sum(t.numel() * t.element_size() for t in tensors if t is not None)
        COUNTERS["bytes"] += 2 * sum(t.numel() * t.element_size() for t in acc if t is not None)

_i64, _int = ctypes.c_longlong, ctypes.c_int


def _struct(real):
    P = ctypes.c_void_p  # pointers as plain addresses: assigning an int is ~10x cheaper than ctypes.cast
    fields = [("R0", _i64), ("R1", _i64), ("R2", _i64), ("d", _i64)]
    for name, s in (("a", "sa"), ("c", "sc"), ("hadd", "sh"), ("sqadd", "sq"), ("s", "ss")):
        fields += [(name, P), (s + "0", _i64), (s + "1", _i64), (s + "2", _i64)]
    fields += [("s_scalar", real), ("s_mode", _int), ("times_z", _int), ("W", P), ("Wt", P), ("wb", P), ("b", P),
               ("n", real), ("eps2", real), ("out", P), ("so0", _i64), ("so1", _i64), ("so2", _i64), ("out_acc", _int),
               ("r", P), ("dout", P), ("sgo0", _i64), ("sgo1", _i64), ("sgo2", _i64)]
    for name, s, acc in (("da", "sda", True), ("dc", "sdc", True), ("dhadd", "sdh", False), ("dsqadd", "sdq", False)):
        fields += [(name, P), (s + "0", _i64), (s + "1", _i64), (s + "2", _i64)] + ([(name + "_acc", _int)] if acc else [])
    fields += [("dW", P), ("dwb", P), ("db", P), ("i0_begin", _i64), ("i0_end", _i64)]
    return type(f"GE_{real.__name__}", (ctypes.Structure,), {"_fields_": fields})


_STRUCTS = {torch.float32: _struct(ctypes.c_float), torch.float64: _struct(ctypes.c_double)}
_NAMES = {torch.float32: "f32", torch.float64: "f64"}


def _build(dtype: torch.dtype, d: int) -> Path | None:
    defs = (["-DREAL=float", "-DREAL_IS_FLOAT"] if dtype == torch.float32 else ["-DREAL=double"]) + [f"-DD={d}"]

    def compile_to(cc: str, out: str) -> bool:
        obj = out[:-3] + ".o"  # compiled with CFLAGS, linked without them (-ffast-math: see CFLAGS)
        try:
            if subprocess.run([cc, *CFLAGS, *defs, "-c", str(SOURCE), "-o", obj], capture_output=True).returncode != 0:
                return False
            # without libmvec (non-glibc) exp() is scalar: correct, slower
            return any(subprocess.run([cc, "-shared", obj, "-o", out, *libs], capture_output=True).returncode == 0
                       for libs in (LIBS, ["-fopenmp", "-lm"]))
        finally:
            Path(obj).unlink(missing_ok=True)

    return cached_build(f"gated_edge_{_NAMES[dtype]}_d{d}", SOURCE, [*CFLAGS, *defs, *LIBS], compile_to)


@lru_cache(maxsize=None)
def _library(dtype: torch.dtype, d: int):
    t0 = time.perf_counter()
    try:
        path = _build(dtype, d)
        lib = None if path is None else ctypes.CDLL(str(path))
    except OSError:
        lib = None
    BUILD_SECONDS[f"{_NAMES[dtype]}_d{d}"] = time.perf_counter() - t0
    if lib is None:
        return None
    for fn in (lib.ge_forward_many, lib.ge_backward_many):
        fn.argtypes = [ctypes.POINTER(_STRUCTS[dtype]), _int]
        fn.restype = _int
    for fn in (lib.eu_forward_many, lib.eu_backward_many):
        fn.argtypes = [ctypes.POINTER(_EU_STRUCTS[dtype]), _int]
        fn.restype = _int
    return lib


_warned = False


def library(dtype: torch.dtype = torch.float32, d: int = 32):
    """The compiled kernel for `dtype` (float32 / float64) and width d, or None (GMNAE_NATIVE=0, no compiler,
    another dtype, d > MAX_D)."""
    global _warned
    if os.environ.get("GMNAE_NATIVE", "1") == "0" or dtype not in _STRUCTS or not 1 <= d <= MAX_D:
        return None
    lib = _library(dtype, d)
    if lib is None and not _warned:
        _warned = True
        print("note: the native per-edge gate did not build (it needs a C compiler, e.g. apt-get install gcc, and a "
              f"writable {cache_dir()}; GMNAE_CACHE_DIR moves it): using the torch gate, slower on CPU", file=sys.stderr)
    return lib


def applies(a: torch.Tensor, c: torch.Tensor, W: torch.Tensor) -> bool:
    """Whether the kernel takes this call: CPU tensors, float32/float64 parameters, d <= MAX_D, <= 4 dims."""
    return (W.device.type == "cpu" and a.device.type == "cpu" and c.device.type == "cpu"
            and W.dtype in _STRUCTS and W.shape[0] == W.shape[1] <= MAX_D
            and max(a.dim(), c.dim()) <= 4 and a.shape[-1] == c.shape[-1] == W.shape[1])


def _broadcast(*shapes) -> tuple:
    """torch.broadcast_shapes on plain tuples (torch's goes through its symbolic-shape machinery: ~50 us)."""
    n = max(len(s) for s in shapes)
    out = [1] * n
    for s in shapes:
        for i, x in enumerate(s, n - len(s)):
            if x != 1:
                if out[i] not in (1, x):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                out[i] = x
    return tuple(out)


def _point(st, name: str, t: torch.Tensor, lead) -> torch.Tensor:
    """Point the kernel struct's field `name` and its three row strides at `t` (broadcast to `lead`); returns the
    tensor whose memory it points at, which the caller must keep alive until the kernel has run."""
    t, strides = _geom(t, lead)
    setattr(st, name, t.data_ptr())
    pre = _PREFIX[name]
    setattr(st, pre + "0", strides[0])
    setattr(st, pre + "1", strides[1])
    setattr(st, pre + "2", strides[2])
    return t


def _geom(t: torch.Tensor, lead) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`t` broadcast against `lead` (its last dim excluded), as the address-bearing tensor (made contiguous
    if its last dim is not) and its strides over the three row dims (0 where broadcast; trailing row dims
    added as 1s). Plain integer arithmetic: no tensor views (each costs a few us of dispatch)."""
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        t = t.contiguous()
    return t, _row_strides(t.shape, t.stride(), lead)


def _contig_geom(shape, lead) -> tuple[int, int, int]:
    """`_geom` of a contiguous tensor of `shape` (before allocating it)."""
    strides, acc = [], 1
    for x in reversed(shape):
        strides.append(acc)
        acc *= x
    return _row_strides(shape, strides[::-1], lead)


def _row_strides(shape, strides, lead) -> tuple[int, int, int]:
    """The strides of a tensor of `shape` / `strides` over the three row dims of `lead` (0 where broadcast)."""
    pad = len(lead) + 1 - len(shape)
    out = [0, 0, 0]
    for i in range(len(lead)):
        j = i - pad
        if j >= 0 and shape[j] != 1:
            out[i] = strides[j]
    return out[0], out[1], out[2]


def out_rows(rows) -> int:
    return rows[0] * rows[1] * rows[2]


def _chunks(R0: int, threads: int, dim0_ok: bool):
    n = max(1, min(R0, threads if dim0_ok else 1))
    bounds = [R0 * i // n for i in range(n + 1)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _run(fn, structs):
    """`fn` (a kernel's `_many` entry) on the structs of one split, in parallel on torch's OpenMP threads."""
    if fn(structs, len(structs)):
        raise RuntimeError("native gated_edge kernel: d too large")


class _GatedEdgeNative(torch.autograd.Function):
    """`_GatedEdge`'s math (gated_edge.py) in `gated_edge.c`: one pass each way over the per-edge rows."""

    @staticmethod
    def forward(ctx, a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z, reduce=None):
        dt = W.dtype
        lib = library(dt, W.shape[0])
        ctx.in_dtypes = (a.dtype, c.dtype)
        a, c = a.to(dt), c.to(dt)  # bf16 autocast inputs: the kernel computes in the parameters' dtype
        if h_add is not None:
            h_add = h_add.to(dt)
        if sq_add is not None:
            sq_add = sq_add.to(dt)
        s_t = s.to(dt) if torch.is_tensor(s) else None
        full = _broadcast(a.shape, c.shape, *(() if h_add is None else (h_add.shape,)))
        lead = _broadcast(full[:-1], *(() if sq_add is None else (sq_add.shape[:-1],)),
                          *(() if s_t is None else (s_t.shape[:-1],)))
        d = W.shape[0]
        rows = (tuple(lead) + (1, 1, 1))[:3]
        st = _STRUCTS[dt]()
        keep = []  # tensors whose memory the struct points at
        for name, t in (("a", a), ("c", c), ("hadd", h_add), ("sqadd", sq_add), ("s", s_t)):
            if t is not None:
                keep.append(_point(st, name, t, lead))
        if s_t is not None:
            st.s_mode = 2
        else:
            st.s_mode, st.s_scalar = (0, 0.0) if s is None else (1, float(s))
        Wc = W.detach().contiguous()
        Wt = Wc.t().contiguous()
        bc = b.detach().to(dt).contiguous()
        wbc = None if w_b is None else w_b.detach().contiguous()
        keep += [Wc, Wt, bc, wbc]
        st.R0, st.R1, st.R2, st.d = *rows, d
        st.W, st.Wt, st.b = Wc.data_ptr(), Wt.data_ptr(), bc.data_ptr()
        st.wb = None if wbc is None else wbc.data_ptr()
        st.times_z, st.n, st.eps2 = int(times_z), float(n), float(eps2)
        # reduce: the output summed over that row dim (1 or 2 of a 3-dim lead) inside the kernel
        assert reduce is None or (len(lead) == 3 and reduce in (1, 2))
        oshape = list(rows) + [d]
        if reduce is not None:
            oshape[reduce] = 1
        out = (torch.zeros if reduce is not None else torch.empty)(oshape, dtype=dt)
        st.so0, st.so1, st.so2 = _contig_geom(oshape, rows)
        st.out_acc = int(reduce is not None)
        r = torch.empty(rows, dtype=dt)
        st.out, st.r = out.data_ptr(), r.data_ptr()
        _run(lib.ge_forward_many, _split(st, _STRUCTS[dt], _chunks(rows[0], torch.get_num_threads(), True)))
        if COUNTERS is not None:
            _count(2.0 * out_rows(rows) * d * d, a, c, h_add, sq_add, s_t, r, W,
                   **({"acc": (out,)} if reduce is not None else {}))
            if reduce is None:
                _count(0.0, out)
        ctx.st, ctx.keep = st, keep
        ctx.shapes = (a.shape, c.shape, None if h_add is None else h_add.shape,
                      None if sq_add is None else sq_add.shape, w_b is not None)
        ctx.lead, ctx.reduce = tuple(lead), reduce
        ctx.save_for_backward(a, c, W, w_b, h_add, sq_add, b, r)
        return out.view(*lead, d) if reduce is None else out.squeeze(reduce)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        a, c, W, w_b, h_add, sq_add, b, r = ctx.saved_tensors
        st = ctx.st
        dt = W.dtype
        lib = library(dt, W.shape[0])
        a_shape, c_shape, h_add_shape, sq_add_shape, has_wb = ctx.shapes
        need = ctx.needs_input_grad
        rows, d, lead = (st.R0, st.R1, st.R2), st.d, ctx.lead
        go = dout.to(dt)
        if ctx.reduce is not None:
            go = go.unsqueeze(ctx.reduce)
        go, strides = _geom(go, lead)  # a summed dim: stride 0 (the gradient is read, never expanded in memory)
        st.dout = go.data_ptr()
        st.sgo0, st.sgo1, st.sgo2 = strides
        st.r = r.data_ptr()
        grads, shared0 = {}, False
        for name, shape, wanted in (("da", a_shape, need[0]), ("dc", c_shape, need[1]),
                                    ("dhadd", h_add_shape, need[4]), ("dsqadd", sq_add_shape, need[5])):
            if not wanted or shape is None:
                setattr(st, name, None)
                continue
            strides = _contig_geom(shape, lead)
            acc = (strides[1] == 0 and rows[1] > 1) or (strides[2] == 0 and rows[2] > 1)
            buf = torch.zeros(shape, dtype=dt) if acc or name in ("dhadd", "dsqadd") else torch.empty(shape, dtype=dt)
            shared0 = shared0 or (strides[0] == 0 and rows[0] > 1)
            setattr(st, name, buf.data_ptr())
            pre = _PREFIX[name]
            setattr(st, pre + "0", strides[0])
            setattr(st, pre + "1", strides[1])
            setattr(st, pre + "2", strides[2])
            if name in ("da", "dc"):
                setattr(st, name + "_acc", int(acc))
            grads[name] = buf
        # operands broadcast over dim 0 would be written from several threads: then one call
        chunks = _chunks(rows[0], torch.get_num_threads(), not shared0)
        k = len(chunks)
        dW = torch.zeros(k, d, d, dtype=dt) if need[2] else None
        dwb = torch.zeros(k, d, dtype=dt) if has_wb and need[3] else None
        db = torch.zeros(k, d, dtype=dt) if need[6] else None
        structs = _split(st, _STRUCTS[dt], chunks)
        esize = W.element_size()
        for j, x in enumerate(structs):
            x.dW = None if dW is None else dW.data_ptr() + j * d * d * esize
            x.dwb = None if dwb is None else dwb.data_ptr() + j * d * esize
            x.db = None if db is None else db.data_ptr() + j * d * esize
        _run(lib.ge_backward_many, structs)
        if COUNTERS is not None:
            _count(6.0 * out_rows(rows) * d * d, a, c, h_add, sq_add, r, W, dout, dW,
                   acc=[g for k, g in grads.items() if k in ("dhadd", "dsqadd") or getattr(st, k + "_acc", 0)])
            _count(0.0, *[g for k, g in grads.items() if k in ("da", "dc") and not getattr(st, k + "_acc", 0)])
        in_a, in_c = ctx.in_dtypes
        da = grads.get("da")
        dc = grads.get("dc")
        return (None if da is None else da.to(in_a), None if dc is None else dc.to(in_c),
                None if dW is None else (dW[0] if k == 1 else dW.sum(0)),
                None if dwb is None else (dwb[0] if k == 1 else dwb.sum(0)),
                grads.get("dhadd"), grads.get("dsqadd"),
                None if db is None else (db[0] if k == 1 else db.sum(0)).to(b.dtype),
                None, None, None, None, None)


_PREFIX = {"a": "sa", "c": "sc", "hadd": "sh", "sqadd": "sq", "s": "ss", "da": "sda", "dc": "sdc", "dhadd": "sdh",
           "dsqadd": "sdq", "e": "se", "x": "sx", "p": "sp", "q": "sq", "dx": "sdx", "dp": "sdp", "dq": "sdq"}


def _eu_struct(real):
    P = ctypes.c_void_p
    fields = [("R0", _i64), ("R1", _i64), ("R2", _i64), ("d", _i64)]
    for name, s in (("e", "se"), ("x", "sx"), ("p", "sp"), ("q", "sq")):
        fields += [(name, P), (s + "0", _i64), (s + "1", _i64), (s + "2", _i64)]
    fields += [("out", P), ("dout", P), ("sgo0", _i64), ("sgo1", _i64), ("sgo2", _i64),
               ("dx", P), ("sdx0", _i64), ("sdx1", _i64), ("sdx2", _i64), ("dx_acc", _int),
               ("dp", P), ("sdp0", _i64), ("sdp1", _i64), ("sdp2", _i64),
               ("dq", P), ("sdq0", _i64), ("sdq1", _i64), ("sdq2", _i64), ("i0_begin", _i64), ("i0_end", _i64)]
    return type(f"EU_{real.__name__}", (ctypes.Structure,), {"_fields_": fields})


_EU_STRUCTS = {torch.float32: _eu_struct(ctypes.c_float), torch.float64: _eu_struct(ctypes.c_double)}


def _split(st, cls, chunks):
    """Copies of `st`, one per row range of `chunks`, as one C array (the `_many` entries take it whole)."""
    out = (cls * len(chunks))()
    for x, (lo, hi) in zip(out, chunks):
        ctypes.pointer(x)[0] = st
        x.i0_begin, x.i0_end = lo, hi
    return out


def edge_update_applies(x: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> bool:
    d = x.shape[-1]
    return (x.device.type == "cpu" and p.device.type == "cpu" and q.device.type == "cpu"
            and d <= MAX_D and max(x.dim(), p.dim(), q.dim()) <= 4 and p.shape[-1] == q.shape[-1] == d
            and library(_compute_dtype(p), d) is not None)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays, everything else (float32, bf16 / fp16 under autocast) computes in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class _EdgeUpdateNative(torch.autograd.Function):
    """`e + eE * silu(p + q)` (or `eE * silu(p + q)` without `e`) in `gated_edge.c`: one pass each way."""

    @staticmethod
    def forward(ctx, e, x, p, q):
        dt = _compute_dtype(p)
        d = p.shape[-1]
        lib = library(dt, d)
        ctx.in_dtypes = (None if e is None else e.dtype, x.dtype, p.dtype, q.dtype)
        ops = {"x": x.to(dt), "p": p.to(dt), "q": q.to(dt)}
        if e is not None:
            ops["e"] = e.to(dt)
        lead = _broadcast(*(t.shape for t in ops.values()))[:-1]
        rows = (tuple(lead) + (1, 1, 1))[:3]
        st = _EU_STRUCTS[dt]()
        st.R0, st.R1, st.R2, st.d = *rows, d
        keep = []
        for name, t in ops.items():
            keep.append(_point(st, name, t, lead))
        out = torch.empty(*rows, d, dtype=dt)
        st.out = out.data_ptr()
        _run(lib.eu_forward_many, _split(st, _EU_STRUCTS[dt], _chunks(rows[0], torch.get_num_threads(), True)))
        if COUNTERS is not None:
            _count(0.0, *ops.values(), out)
        ctx.save_for_backward(ops["x"], ops["p"], ops["q"])
        ctx.st, ctx.keep, ctx.lead = st, keep, lead
        ctx.shapes = (None if e is None else e.shape, x.shape, p.shape, q.shape)
        return out.view(*lead, d)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, p, q = ctx.saved_tensors
        dt = p.dtype
        d = p.shape[-1]
        lib = library(dt, d)
        e_shape, x_shape, p_shape, q_shape = ctx.shapes
        need = ctx.needs_input_grad
        st, lead = ctx.st, ctx.lead
        rows = (st.R0, st.R1, st.R2)
        go, strides = _geom(dout.to(dt), lead)
        st.dout = go.data_ptr()
        st.sgo0, st.sgo1, st.sgo2 = strides
        grads, shared0 = {}, False
        st.dx_acc = 0
        for name, shape, wanted in (("dx", x_shape, need[1]), ("dp", p_shape, need[2]), ("dq", q_shape, need[3])):
            if not wanted:
                setattr(st, name, None)
                continue
            strides = _contig_geom(shape, lead)
            acc = (strides[1] == 0 and rows[1] > 1) or (strides[2] == 0 and rows[2] > 1)
            buf = torch.zeros(shape, dtype=dt) if acc or name != "dx" else torch.empty(shape, dtype=dt)
            shared0 = shared0 or (strides[0] == 0 and rows[0] > 1)
            setattr(st, name, buf.data_ptr())
            pre = _PREFIX[name]
            setattr(st, pre + "0", strides[0])
            setattr(st, pre + "1", strides[1])
            setattr(st, pre + "2", strides[2])
            if name == "dx":
                st.dx_acc = int(acc)
            grads[name] = buf
        _run(lib.eu_backward_many, _split(st, _EU_STRUCTS[dt], _chunks(rows[0], torch.get_num_threads(), not shared0)))
        if COUNTERS is not None:
            _count(0.0, x, p, q, dout, grads.get("dx") if not st.dx_acc else None,
                   acc=[grads.get("dp"), grads.get("dq")] + ([grads.get("dx")] if st.dx_acc else []))
        de = None
        if e_shape is not None and need[0]:
            de = dout if tuple(dout.shape) == tuple(e_shape) else dout.sum_to_size(e_shape)
            de = de.to(ctx.in_dtypes[0])
        dx, dp, dq = grads.get("dx"), grads.get("dp"), grads.get("dq")
        return (de, None if dx is None else dx.to(ctx.in_dtypes[1]), None if dp is None else dp.to(ctx.in_dtypes[2]),
                None if dq is None else dq.to(ctx.in_dtypes[3]))


def edge_update(e, x, p, q):
    """`e + x * silu(p + q)` (`e` None: `x * silu(p + q)`) through the native kernel; None where it does not
    apply (the caller runs the torch ops)."""
    if torch.compiler.is_compiling() or not edge_update_applies(x, p, q):
        return None
    if e is not None and (e.device.type != "cpu" or e.dim() > 4):
        return None
    return _EdgeUpdateNative.apply(e, x, p, q)
