/* The ScaleGMN per-edge gate, forward and backward, one pass over the per-edge rows each way.
 *
 *   z   = a * c                                   (a, c broadcast against each other)
 *   h   = W z + wb (+ hadd)
 *   r   = ((|z|^2 (+ sqadd)) / n + eps2)^(-1/2)
 *   y   = h * r
 *   g   = silu(y + b) [+ silu(s y + b)]          (s: none, a scalar, or one value per row)
 *   out = z * g  (times_z) or g
 *
 * Rows are indexed [R0, R1, R2] (the per-edge tensor's leading dims), the last dim (d) contiguous; every
 * operand has its own strides over the three row dims (0 where it is broadcast). The forward writes `out`
 * and the row factor `r`; the backward recomputes z, h, y, g from the inputs (cheaper than reading them
 * back: the step is memory-bound) and writes the input gradients. The d x d matvecs run inside the row
 * loop (W: 4 KB at d = 32, in L1), so each per-edge tensor is read once and written once per direction.
 * `out` may be summed over one of the row dims 1-2 inside the kernel (the layer sums the messages over
 * senders): then the per-edge output is never written, and the backward reads the broadcast gradient.
 * A call covers rows i0 in [i0_begin, i0_end); gradients of operands broadcast over dims 1-2 accumulate
 * (+=) within a call, dW / dwb / db accumulate into the call's own buffers (the caller sums them), so
 * calls on disjoint i0 ranges can run on separate threads.
 *
 * Built by gated_edge_native.py per precision (REAL = float, double: the tests gradcheck the latter) and
 * per width D (a compile-time constant: the row vectors live in registers, the loops unroll).
 */
#include <math.h>
#include <stddef.h>

#ifndef REAL
#define REAL float
#endif
#ifdef REAL_IS_FLOAT
#define EXP expf
#define SQRT sqrtf
#else
#define EXP exp
#define SQRT sqrt
#endif
typedef REAL real;
typedef long long i64;

#ifndef D
#define D 32
#endif
#define RP real *restrict
#define CRP const real *restrict

typedef struct {
    i64 R0, R1, R2, d;
    const real *a; i64 sa0, sa1, sa2;
    const real *c; i64 sc0, sc1, sc2;
    const real *hadd; i64 sh0, sh1, sh2;      /* NULL: none */
    const real *sqadd; i64 sq0, sq1, sq2;     /* NULL: none (one value per row) */
    const real *s; i64 ss0, ss1, ss2;         /* s_mode 2: one value per row */
    real s_scalar; int s_mode;                /* 0: no second silu, 1: scalar s, 2: per-row s */
    int times_z;
    const real *W;                            /* [d_out][d_in] */
    const real *Wt;                           /* [d_in][d_out] */
    const real *wb;                           /* [d] or NULL */
    const real *b;                            /* [d] */
    real n, eps2;
    real *out; i64 so0, so1, so2; int out_acc; /* forward; out_acc: += (rows summed over a dim, its stride 0) */
    real *r;                                  /* contiguous rows (forward writes, backward reads) */
    const real *dout; i64 sgo0, sgo1, sgo2;   /* backward (stride 0 over a summed dim) */
    real *da; i64 sda0, sda1, sda2; int da_acc;   /* NULL: not needed; acc: += (broadcast operand) */
    real *dc; i64 sdc0, sdc1, sdc2; int dc_acc;
    real *dhadd; i64 sdh0, sdh1, sdh2;            /* always accumulated */
    real *dsqadd; i64 sdq0, sdq1, sdq2;
    real *dW;                                 /* [d_out][d_in], this call's accumulator (NULL: not needed) */
    real *dwb;                                /* [d] or NULL */
    real *db;                                 /* [d] or NULL */
    i64 i0_begin, i0_end;
} GE;

/* acc[:] += sum_i x[i] M[i][:] (M row-major D x D), in four independent FMA chains: one chain would be
 * bound by the FMA latency (D dependent FMAs per output vector). */
static inline void matvec_acc(CRP M, CRP x, RP acc) {
    real a1[D], a2[D], a3[D];
#pragma omp simd
    for (int k = 0; k < D; k++) a1[k] = a2[k] = a3[k] = 0;
    int i = 0;
    for (; i + 4 <= D; i += 4) {
        const real x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        CRP m = M + i * D;
#pragma omp simd
        for (int k = 0; k < D; k++) {
            acc[k] += x0 * m[k];
            a1[k] += x1 * m[D + k];
            a2[k] += x2 * m[2 * D + k];
            a3[k] += x3 * m[3 * D + k];
        }
    }
    for (; i < D; i++) {
        const real xi = x[i];
#pragma omp simd
        for (int k = 0; k < D; k++) acc[k] += xi * M[i * D + k];
    }
#pragma omp simd
    for (int k = 0; k < D; k++) acc[k] += (a1[k] + a2[k]) + a3[k];
}

/* Branches on the pointers outside the loops: `wb ? wb[k] : 0` in a loop becomes a masked load of NULL,
 * which costs a microcode assist per row. */
static inline void row_h(CRP Wt, CRP wb, CRP rh, CRP z, RP h) {
    if (wb && rh) {
#pragma omp simd
        for (int k = 0; k < D; k++) h[k] = wb[k] + rh[k];
    } else if (wb) {
#pragma omp simd
        for (int k = 0; k < D; k++) h[k] = wb[k];
    } else if (rh) {
#pragma omp simd
        for (int k = 0; k < D; k++) h[k] = rh[k];
    } else {
#pragma omp simd
        for (int k = 0; k < D; k++) h[k] = 0;
    }
    matvec_acc(Wt, z, h);
}

#define ROW_LOOP_BEGIN                                                                              \
    for (i64 i0 = p->i0_begin; i0 < p->i0_end; i0++)                                                 \
        for (i64 i1 = 0; i1 < R1; i1++)                                                              \
            for (i64 i2 = 0; i2 < R2; i2++) {                                                        \
                const i64 row = (i0 * R1 + i1) * R2 + i2;                                            \
                CRP ra = p->a + i0 * p->sa0 + i1 * p->sa1 + i2 * p->sa2;                             \
                CRP rc = p->c + i0 * p->sc0 + i1 * p->sc1 + i2 * p->sc2;                             \
                CRP rh = p->hadd ? p->hadd + i0 * p->sh0 + i1 * p->sh1 + i2 * p->sh2 : NULL;         \
                const real sqa = p->sqadd ? p->sqadd[i0 * p->sq0 + i1 * p->sq1 + i2 * p->sq2] : 0;   \
                const real sv = s_mode == 2 ? p->s[i0 * p->ss0 + i1 * p->ss1 + i2 * p->ss2] : p->s_scalar;

int ge_forward(const GE *p) {
    if (p->d != D) return 1;
    const i64 R1 = p->R1, R2 = p->R2;
    const int s_mode = p->s_mode, times_z = p->times_z;
    CRP Wt = p->Wt;
    CRP wb = p->wb;
    CRP b = p->b;
    const real n = p->n, eps2 = p->eps2;
    RP out = p->out;
    RP rout = p->r;
    const int out_acc = p->out_acc;
    real z[D], h[D];
    ROW_LOOP_BEGIN
                real sq = sqa;
#pragma omp simd reduction(+:sq)
                for (int k = 0; k < D; k++) {
                    z[k] = ra[k] * rc[k];
                    sq += z[k] * z[k];
                }
                row_h(Wt, wb, rh, z, h);
                const real rr = (real)1 / SQRT(sq / n + eps2);
                rout[row] = rr;
                RP o = out + i0 * p->so0 + i1 * p->so1 + i2 * p->so2;
                real v[D];
                if (s_mode) {
#pragma omp simd
                    for (int k = 0; k < D; k++) {
                        const real y = h[k] * rr, u1 = y + b[k], u2 = sv * y + b[k];
                        const real g = u1 / ((real)1 + EXP(-u1)) + u2 / ((real)1 + EXP(-u2));
                        v[k] = times_z ? z[k] * g : g;
                    }
                } else {
#pragma omp simd
                    for (int k = 0; k < D; k++) {
                        const real u1 = h[k] * rr + b[k];
                        const real g = u1 / ((real)1 + EXP(-u1));
                        v[k] = times_z ? z[k] * g : g;
                    }
                }
                if (out_acc) {
#pragma omp simd
                    for (int k = 0; k < D; k++) o[k] += v[k];
                } else {
#pragma omp simd
                    for (int k = 0; k < D; k++) o[k] = v[k];
                }
            }
    return 0;
}

/* dW accumulates over a tile of rows before touching memory: (dh, z) pairs are buffered, then
 * dW[o][:] += sum_t dh_t[o] z_t[:] with the row of dW in registers. */
#define TILE 16

static inline void flush_dw(RP dW, real (*dhb)[D], real (*zb)[D], int nt) {
    for (int o = 0; o < D; o++) {
        real acc[D];
#pragma omp simd
        for (int k = 0; k < D; k++) acc[k] = dW[o * D + k];
        for (int t = 0; t < nt; t++) {
            const real x = dhb[t][o];
#pragma omp simd
            for (int k = 0; k < D; k++) acc[k] += x * zb[t][k];
        }
#pragma omp simd
        for (int k = 0; k < D; k++) dW[o * D + k] = acc[k];
    }
}

int ge_backward(const GE *p) {
    if (p->d != D) return 1;
    const i64 R1 = p->R1, R2 = p->R2;
    const int s_mode = p->s_mode, times_z = p->times_z;
    CRP W = p->W;
    CRP Wt = p->Wt;
    CRP wb = p->wb;
    CRP b = p->b;
    CRP rin = p->r;
    CRP dout = p->dout;
    RP dW = p->dW;
    RP dwb = p->dwb;
    RP db = p->db;
    const real inv_n = (real)-0.5 / p->n;
    real z[D], h[D], dz[D];
    real dbacc[D], dwbacc[D];
    real dhb[TILE][D], zb[TILE][D];
    int nt = 0;
    for (int k = 0; k < D; k++) dbacc[k] = dwbacc[k] = 0;
    ROW_LOOP_BEGIN
                CRP go = dout + i0 * p->sgo0 + i1 * p->sgo1 + i2 * p->sgo2;
                real *dh = dhb[nt];
#pragma omp simd
                for (int k = 0; k < D; k++)
                    z[k] = ra[k] * rc[k];
                row_h(Wt, wb, rh, z, h);
                const real rr = rin[row];
                real t = 0;
                if (s_mode) {
#pragma omp simd reduction(+:t)
                    for (int k = 0; k < D; k++) {
                        const real y = h[k] * rr, u1 = y + b[k], u2 = sv * y + b[k];
                        const real sg1 = (real)1 / ((real)1 + EXP(-u1));
                        const real sg2 = (real)1 / ((real)1 + EXP(-u2));
                        const real g = u1 * sg1 + u2 * sg2;
                        const real dg = times_z ? go[k] * z[k] : go[k];
                        dz[k] = times_z ? go[k] * g : 0;
                        const real du1 = dg * sg1 * ((real)1 + u1 * ((real)1 - sg1));
                        const real du2 = dg * sg2 * ((real)1 + u2 * ((real)1 - sg2));
                        dbacc[k] += du1 + du2;
                        const real dy = du1 + sv * du2;
                        t += dy * y;
                        dh[k] = dy * rr;
                    }
                } else {
#pragma omp simd reduction(+:t)
                    for (int k = 0; k < D; k++) {
                        const real y = h[k] * rr, u1 = y + b[k];
                        const real sg1 = (real)1 / ((real)1 + EXP(-u1));
                        const real dg = times_z ? go[k] * z[k] : go[k];
                        dz[k] = times_z ? go[k] * u1 * sg1 : 0;
                        const real dy = dg * sg1 * ((real)1 + u1 * ((real)1 - sg1));
                        dbacc[k] += dy;
                        t += dy * y;
                        dh[k] = dy * rr;
                    }
                }
                const real dsq = t * rr * rr * inv_n;
#pragma omp simd
                for (int k = 0; k < D; k++) dwbacc[k] += dh[k];
                if (p->dhadd) {
                    RP q = p->dhadd + i0 * p->sdh0 + i1 * p->sdh1 + i2 * p->sdh2;
#pragma omp simd
                    for (int k = 0; k < D; k++) q[k] += dh[k];
                }
                if (p->dsqadd) p->dsqadd[i0 * p->sdq0 + i1 * p->sdq1 + i2 * p->sdq2] += dsq;
#pragma omp simd
                for (int k = 0; k < D; k++) dz[k] += 2 * z[k] * dsq;
                matvec_acc(W, dh, dz);   /* dz += W^T dh */
                if (dW) {
#pragma omp simd
                    for (int k = 0; k < D; k++) zb[nt][k] = z[k];
                    if (++nt == TILE) { flush_dw(dW, dhb, zb, nt); nt = 0; }
                }
                if (p->da) {
                    RP q = p->da + i0 * p->sda0 + i1 * p->sda1 + i2 * p->sda2;
                    if (p->da_acc) {
#pragma omp simd
                        for (int k = 0; k < D; k++) q[k] += dz[k] * rc[k];
                    } else {
#pragma omp simd
                        for (int k = 0; k < D; k++) q[k] = dz[k] * rc[k];
                    }
                }
                if (p->dc) {
                    RP q = p->dc + i0 * p->sdc0 + i1 * p->sdc1 + i2 * p->sdc2;
                    if (p->dc_acc) {
#pragma omp simd
                        for (int k = 0; k < D; k++) q[k] += dz[k] * ra[k];
                    } else {
#pragma omp simd
                        for (int k = 0; k < D; k++) q[k] = dz[k] * ra[k];
                    }
                }
            }
    if (dW && nt) flush_dw(dW, dhb, zb, nt);
    for (int k = 0; k < D; k++) {
        if (db) db[k] += dbacc[k];
        if (dwb) dwb[k] += dwbacc[k];
    }
    return 0;
}

/* The edge update `out = e + eE * silu(p + q)` (p: the sender's, q: the receiver's term, broadcast over the
 * rows), one pass each way: the forward reads e and eE and writes out; the backward reads dout and eE,
 * writes deE, and accumulates dp and dq (their rows are shared, so += within a call; de = dout is the
 * caller's). */
typedef struct {
    i64 R0, R1, R2, d;
    const real *e; i64 se0, se1, se2;         /* NULL: out = eE * silu(p + q) (no skip) */
    const real *x; i64 sx0, sx1, sx2;         /* eE */
    const real *p; i64 sp0, sp1, sp2;
    const real *q; i64 sq0, sq1, sq2;
    real *out;                                /* contiguous rows x d */
    const real *dout; i64 sgo0, sgo1, sgo2;
    real *dx; i64 sdx0, sdx1, sdx2; int dx_acc;
    real *dp; i64 sdp0, sdp1, sdp2;
    real *dq; i64 sdq0, sdq1, sdq2;
    i64 i0_begin, i0_end;
} EU;

int eu_forward(const EU *a) {
    if (a->d != D) return 1;
    for (i64 i0 = a->i0_begin; i0 < a->i0_end; i0++)
        for (i64 i1 = 0; i1 < a->R1; i1++)
            for (i64 i2 = 0; i2 < a->R2; i2++) {
                const i64 row = (i0 * a->R1 + i1) * a->R2 + i2;
                CRP x = a->x + i0 * a->sx0 + i1 * a->sx1 + i2 * a->sx2;
                CRP p = a->p + i0 * a->sp0 + i1 * a->sp1 + i2 * a->sp2;
                CRP q = a->q + i0 * a->sq0 + i1 * a->sq1 + i2 * a->sq2;
                RP o = a->out + row * D;
                if (a->e) {
                    CRP e = a->e + i0 * a->se0 + i1 * a->se1 + i2 * a->se2;
#pragma omp simd
                    for (int k = 0; k < D; k++) {
                        const real u = p[k] + q[k];
                        o[k] = e[k] + x[k] * (u / ((real)1 + EXP(-u)));
                    }
                } else {
#pragma omp simd
                    for (int k = 0; k < D; k++) {
                        const real u = p[k] + q[k];
                        o[k] = x[k] * (u / ((real)1 + EXP(-u)));
                    }
                }
            }
    return 0;
}

int eu_backward(const EU *a) {
    if (a->d != D) return 1;
    for (i64 i0 = a->i0_begin; i0 < a->i0_end; i0++)
        for (i64 i1 = 0; i1 < a->R1; i1++)
            for (i64 i2 = 0; i2 < a->R2; i2++) {
                CRP x = a->x + i0 * a->sx0 + i1 * a->sx1 + i2 * a->sx2;
                CRP p = a->p + i0 * a->sp0 + i1 * a->sp1 + i2 * a->sp2;
                CRP q = a->q + i0 * a->sq0 + i1 * a->sq1 + i2 * a->sq2;
                CRP go = a->dout + i0 * a->sgo0 + i1 * a->sgo1 + i2 * a->sgo2;
                real du[D], dxv[D];
#pragma omp simd
                for (int k = 0; k < D; k++) {
                    const real u = p[k] + q[k];
                    const real sg = (real)1 / ((real)1 + EXP(-u));
                    dxv[k] = go[k] * u * sg;
                    du[k] = go[k] * x[k] * sg * ((real)1 + u * ((real)1 - sg));
                }
                if (a->dx) {
                    RP g = a->dx + i0 * a->sdx0 + i1 * a->sdx1 + i2 * a->sdx2;
                    if (a->dx_acc) {
#pragma omp simd
                        for (int k = 0; k < D; k++) g[k] += dxv[k];
                    } else {
#pragma omp simd
                        for (int k = 0; k < D; k++) g[k] = dxv[k];
                    }
                }
                if (a->dp) {
                    RP g = a->dp + i0 * a->sdp0 + i1 * a->sdp1 + i2 * a->sdp2;
#pragma omp simd
                    for (int k = 0; k < D; k++) g[k] += du[k];
                }
                if (a->dq) {
                    RP g = a->dq + i0 * a->sdq0 + i1 * a->sdq1 + i2 * a->sdq2;
#pragma omp simd
                    for (int k = 0; k < D; k++) g[k] += du[k];
                }
            }
    return 0;
}

/* n calls on disjoint i0 ranges (the structs of one split), one per thread of the OpenMP runtime torch has
 * loaded: libgomp.so.1 is already in the process when this library loads, so its threads are torch's own
 * intra-op pool. A pool of our own beside it lost to torch's workers spinning after each of their ops
 * (docs/performance.md). Built without OpenMP, the calls run one after another. */
#define MANY(fn, T)                                                                                   \
    int fn##_many(const T *p, int n) {                                                                \
        int rc = 0;                                                                                   \
        _Pragma("omp parallel for num_threads(n) schedule(static, 1) reduction(|:rc)")               \
        for (int i = 0; i < n; i++) rc |= fn(p + i);                                                  \
        return rc;                                                                                    \
    }
MANY(ge_forward, GE)
MANY(ge_backward, GE)
MANY(eu_forward, EU)
MANY(eu_backward, EU)
