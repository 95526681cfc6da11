/* Batched dense linear assignment, MAXIMISATION, with dual potentials (gmnae/merge/lap_dual.py).
 *
 * For each n x n problem C: the column x[i] of every row, and potentials u, v with
 *     u[i] + v[j] >= C[i][j] for all i, j,   u[i] + v[x[i]] == C[i][x[i]]
 * so sum(u) + sum(v) is the optimal value (a certificate). Jonker-Volgenant (1987), written for maximisation:
 * column reduction and reduction transfer (cold start), then one Dijkstra shortest augmenting path on the reduced
 * costs u[i] + v[j] - C[i][j] >= 0 per row left free. Only v is kept; a matched row's u is implicit,
 * C[i][x[i]] - v[x[i]]. JV's augmenting row reduction is left out: with the vectorised Dijkstra below it never paid
 * (hard 32 x 32 weight-matching costs: 9.4 us a problem without it, 11-35 us with 1-16 n of its steps; random
 * Gaussian 32 x 32 and 96 x 96 alike), its two-best search being scalar and its price wars long on near ties.
 *
 * Warm start (v0 and/or x0 given): v = v0 (else 0), u[i] = max_j C[i][j] - v[j]; row i keeps x0[i] where that
 * pair is tight (exactly), a row left free takes its first maximising column where that one is free, and only the
 * rows still free are augmented. When x0 is optimal for C and v0 are duals proving it, nothing is augmented.
 *
 * Float64 throughout (float32 costs are widened exactly); compiled without -ffast-math and with
 * -ffp-contract=off, so every operation and comparison is the one written here. Each problem is copied into rows
 * padded to a multiple of VL doubles, and the Dijkstra relaxes a whole row with vector code (GCC/Clang vector
 * extensions: AVX-512, AVX2 or SSE as the target has). Ties go to the lowest column index. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t idx;

#ifndef VL
#define VL 8 /* doubles per vector */
#endif
typedef double vd __attribute__((vector_size(8 * VL)));
typedef int64_t vl __attribute__((vector_size(8 * VL)));

typedef struct {
    idx n, np;       /* the size; the padded row length (a multiple of VL) */
    double *c;       /* the problem, rows padded: [n][np] */
    double *d, *pen; /* Dijkstra: distances (+inf once scanned); 0, or +inf for scanned and padding columns */
    double *ds;      /* the distance of a column when it was scanned */
    idx *pred;       /* the row a column is reached from */
    idx *order, *fr, *y, *tmp; /* scanned columns in order; free rows; the row of a column; scratch */
} work;

/* One shortest augmenting path from the free row f (Dijkstra on the reduced costs), the dual update of the
 * scanned columns and the augmentation. Each step relaxes every column with vector code (scanned and padding
 * columns are kept out by pen = +inf: their relaxed distance is +inf, never below d) and takes the least. */
static int augment(const work *w, idx *x, double *v, idx f) {
    idx n = w->n, np = w->np, *y = w->y, *pred = w->pred, *order = w->order, ns = 0, end;
    double *d = w->d, *pen = w->pen, *ds = w->ds, mn;
    const double *cf = w->c + f * np;
    for (idx j = 0; j < np; j++) { pen[j] = j < n ? 0.0 : INFINITY; d[j] = v[j] - cf[j] + pen[j]; pred[j] = f; }
    const double *ci = NULL;
    double h = 0.0;
    vl iv = {0};
    for (;;) {
        vd mv = {0};
        mv += INFINITY;
        for (idx b = 0; b < np; b += VL) {
            vd dd;
            memcpy(&dd, d + b, sizeof dd);
            if (ci) { /* relax through the row scanned last */
                vd cc, vv, pp;
                vl pr;
                memcpy(&cc, ci + b, sizeof cc);
                memcpy(&vv, v + b, sizeof vv);
                memcpy(&pp, pen + b, sizeof pp);
                memcpy(&pr, pred + b, sizeof pr);
                vd v2 = h + vv - cc + pp;
                vl better = v2 < dd;
                dd = (vd)(((vl)v2 & better) | ((vl)dd & ~better));
                pr = (iv & better) | (pr & ~better);
                memcpy(d + b, &dd, sizeof dd);
                memcpy(pred + b, &pr, sizeof pr);
            }
            vl lt = dd < mv;
            mv = (vd)(((vl)dd & lt) | ((vl)mv & ~lt));
        }
        mn = mv[0];
        for (int k = 1; k < VL; k++) mn = mv[k] < mn ? mv[k] : mn;
        if (!(mn < INFINITY)) return -1; /* no finite distance left: NaN or infinite costs */
        idx j1 = 0;
        while (d[j1] != mn) j1++;
        if (y[j1] < 0) { end = j1; break; }
        ds[j1] = mn;
        d[j1] = pen[j1] = INFINITY;
        order[ns++] = j1;
        idx i = y[j1];
        ci = w->c + i * np;
        h = mn + ci[j1] - v[j1]; /* reaching row i; its u is C[i][j1] - v[j1] */
        iv = (vl){0} + i;
    }
    for (idx k = 0; k < ns; k++) { idx j = order[k]; v[j] += mn - ds[j]; }
    for (;;) {
        idx i = pred[end];
        y[end] = i;
        idx j = end;
        end = x[i];
        x[i] = j;
        if (i == f) return 0;
    }
}

/* The cold start: column reduction (v[j] = max_i C[i][j]; the maximum row of a column takes it if it has none)
 * and reduction transfer. Returns the rows left free (in w->fr). */
static idx cold_start(const work *w, idx *x, double *v) {
    idx n = w->n, np = w->np, *y = w->y, *matches = w->tmp, nfree = 0;
    const double *c = w->c;
    for (idx i = 0; i < n; i++) { matches[i] = 0; x[i] = -1; }
    for (idx j = n - 1; j >= 0; j--) {
        double m = c[j];
        idx im = 0;
        for (idx i = 1; i < n; i++)
            if (c[i * np + j] > m) { m = c[i * np + j]; im = i; }
        v[j] = m;
        if (++matches[im] == 1) { x[im] = j; y[j] = im; }
        else if (v[j] > v[x[im]]) { y[x[im]] = -1; x[im] = j; y[j] = im; }
    }
    for (idx i = 0; i < n; i++) {
        if (matches[i] == 0) { w->fr[nfree++] = i; continue; }
        if (matches[i] != 1) continue;
        /* a row with one column lowers its u to its second best (raising that column's v) */
        idx j1 = x[i];
        const double *ci = c + i * np;
        double m = -INFINITY;
        for (idx j = 0; j < n; j++)
            if (j != j1 && ci[j] - v[j] > m) m = ci[j] - v[j];
        v[j1] -= m;
    }
    return nfree;
}

/* The warm start from v0 (else v = 0) and x0 (else none). Returns the rows left free (in w->fr). */
static idx warm_start(const work *w, const idx *x0, const double *v0, idx *x, double *v) {
    idx n = w->n, np = w->np, *y = w->y, *best = w->tmp, nfree = 0;
    for (idx j = 0; j < n; j++) v[j] = v0 ? v0[j] : 0.0;
    for (idx i = 0; i < n; i++) {
        const double *ci = w->c + i * np;
        double m = ci[0] - v[0];
        idx am = 0;
        for (idx j = 1; j < n; j++)
            if (ci[j] - v[j] > m) { m = ci[j] - v[j]; am = j; }
        best[i] = am; /* the row's first maximising column */
        idx j = x0 ? x0[i] : -1;
        x[i] = -1;
        if (j >= 0 && j < n && y[j] < 0 && ci[j] - v[j] == m) { x[i] = j; y[j] = i; }
    }
    for (idx i = 0; i < n; i++) {
        if (x[i] >= 0) continue;
        if (y[best[i]] < 0) { x[i] = best[i]; y[best[i]] = i; }
        else w->fr[nfree++] = i;
    }
    return nfree;
}

/* One problem (already in w->c): returns the number of shortest augmenting paths it ran, or -1 (not finite). */
static idx solve_one(const work *w, const idx *x0, const double *v0, idx *x, double *u, double *v) {
    idx n = w->n, np = w->np;
    for (idx j = 0; j < np; j++) { w->y[j] = -1; v[j] = 0.0; }
    idx nfree = 0;
    if (x0 || v0) nfree = warm_start(w, x0, v0, x, v);
    else if (n > 1) nfree = cold_start(w, x, v);
    else { x[0] = 0; v[0] = w->c[0]; }
    for (idx k = 0; k < nfree; k++)
        if (augment(w, x, v, w->fr[k])) return -1;
    for (idx i = 0; i < n; i++) u[i] = w->c[i * np + x[i]] - v[x[i]];
    return nfree;
}

/* Problems [begin, end) of a batch: cost [B, n, n] (float64, or float32 where is_float32), optional x0 [B, n],
 * v0 [B, n]; out cols [B, n], u [B, n], v [B, n], optional augs [B]. Returns 0; -1 when out of memory, -2 when
 * a problem has no finite solution (NaN or infinite costs or potentials). */
int lap_dual_batch(idx begin, idx end, idx n, const void *cost, int is_float32, const idx *x0, const double *v0,
                   idx *cols, double *u, double *v, idx *augs) {
    if (end <= begin || n <= 0) return 0;
    idx np = (n + VL - 1) / VL * VL;
    size_t nd = (size_t)n * np + 5 * (size_t)np, ni = 5 * (size_t)np;
    size_t bytes = ((nd + ni) * 8 + 63) / 64 * 64;
    double *mem = aligned_alloc(64, bytes);
    if (!mem) return -1;
    work w = {.n = n, .np = np, .c = mem};
    w.d = mem + n * np;
    w.pen = w.d + np;
    w.ds = w.pen + np;
    double *vbuf = w.ds + np; /* v, padded: the vector loop reads whole blocks */
    idx *ib = (idx *)(vbuf + np);
    w.pred = ib; w.order = ib + np; w.fr = ib + 2 * np; w.y = ib + 3 * np; w.tmp = ib + 4 * np;
    idx a = 0;
    for (idx b = begin; b < end; b++) {
        size_t off = (size_t)b * n * n;
        for (idx i = 0; i < n; i++) {
            double *row = w.c + i * np;
            if (is_float32) {
                const float *src = (const float *)cost + off + i * n;
                for (idx j = 0; j < n; j++) row[j] = src[j];
            } else {
                memcpy(row, (const double *)cost + off + i * n, n * sizeof(double));
            }
            for (idx j = n; j < np; j++) row[j] = 0.0;
        }
        a = solve_one(&w, x0 ? x0 + b * n : NULL, v0 ? v0 + b * n : NULL, cols + b * n, u + b * n, vbuf);
        memcpy(v + b * n, vbuf, n * sizeof(double));
        if (augs) augs[b] = a;
        if (a < 0) break;
    }
    free(mem);
    return a < 0 ? -2 : 0;
}
