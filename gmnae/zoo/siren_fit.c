/* Fit many 2 -> H -> H -> 1 SIRENs to images on a pixel grid: full-image Adam, cosine learning rate.
 * One network at a time with all its state in the core's caches; callers run one call per thread.
 * The hidden width H is a compile-time multiple of 16: each H-vector is NV vectors of 16 floats. */
#include <math.h>
#include <string.h>

#ifndef H
#define H 32
#endif
#define NV (H / 16)
#define MAXW 64
#define PB 4 /* pixels per register block: PB * NV independent accumulators hide the FMA latency */

typedef float vf __attribute__((vector_size(64), aligned(64)));
typedef struct { vf v[NV]; } hv; /* one H-vector */

static inline void vsin(float *restrict out, const float *restrict in, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = sinf(in[i]);
}
static inline void vcos(float *restrict out, const float *restrict in, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = cosf(in[i]);
}

static float siren_grad(const float *p, const float *t, int rows, int cols, const float *xs, const float *ys,
                        float w0, float offset, float *g) {
    const float *W1 = p, *b1 = p + 2 * H, *W2 = p + 3 * H, *b2 = W2 + H * H, *w3 = b2 + H, *b3 = w3 + H;
    float *gW1 = g, *gb1 = g + 2 * H, *gW2 = g + 3 * H, *gb2 = gW2 + H * H, *gw3 = gb2 + H, *gb3 = gw3 + H;
    static __thread hv W2T[H], W2s[H], gW2T[H];                /* w0 W2 transposed / as is; grad of W2, transposed */
    static __thread hv sA[MAXW], cA[MAXW], sC[MAXW], cC[MAXW]; /* layer-1 tables per column x / row y */
    static __thread hv h1[MAXW], c1[MAXW], z2[MAXW], h2[MAXW], c2[MAXW], dz2[MAXW];
    static __thread float h1s[MAXW][H];
    hv w0b2, vw3, accx, accy, accb, accb2, accw3;
    const int n = rows * cols;
    const float scale = 2.0f / (float)n;
    for (int j = 0; j < H; j++)
        for (int k = 0; k < H; k++) {
            ((float *)&W2T[k])[j] = w0 * W2[j * H + k];
            ((float *)&W2s[j])[k] = w0 * W2[j * H + k];
        }
    memset(gW2T, 0, sizeof(hv) * H);
    for (int j = 0; j < H; j++) { ((float *)&w0b2)[j] = w0 * b2[j]; ((float *)&vw3)[j] = w3[j]; }
    memset(&accx, 0, sizeof accx); accy = accx; accb = accx; accb2 = accx; accw3 = accx;
    /* layer 1 is separable on the grid: sin(a(x) + c(y)) = sin a cos c + cos a sin c */
    {
        static __thread float za[MAXW][H], zc[MAXW][H];
        for (int c = 0; c < cols; c++)
            for (int k = 0; k < H; k++) za[c][k] = w0 * W1[2 * k] * xs[c];
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < H; k++) zc[r][k] = w0 * (W1[2 * k + 1] * ys[r] + b1[k]);
        vsin((float *)sA, &za[0][0], cols * H); vcos((float *)cA, &za[0][0], cols * H);
        vsin((float *)sC, &zc[0][0], rows * H); vcos((float *)cC, &zc[0][0], rows * H);
    }
    double loss = 0.0;
    float gb3acc = 0.f;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            for (int v = 0; v < NV; v++) {
                h1[c].v[v] = sC[r].v[v] * cA[c].v[v] + cC[r].v[v] * sA[c].v[v];
                c1[c].v[v] = cC[r].v[v] * cA[c].v[v] - sC[r].v[v] * sA[c].v[v];
            }
        memcpy(h1s, h1, sizeof(hv) * cols);
        /* z2 = w0 (W2 h1 + b2), PB pixels at a time */
        for (int c0 = 0; c0 < cols; c0 += PB) {
            const int pb = cols - c0 < PB ? cols - c0 : PB;
            hv acc[PB];
            for (int q = 0; q < PB; q++) acc[q] = w0b2;
            for (int k = 0; k < H; k++) {
                const hv w = W2T[k];
                for (int q = 0; q < PB; q++) {
                    const float hk = q < pb ? h1s[c0 + q][k] : 0.f;
                    for (int v = 0; v < NV; v++) acc[q].v[v] += hk * w.v[v];
                }
            }
            for (int q = 0; q < pb; q++) z2[c0 + q] = acc[q];
        }
        vsin((float *)h2, (float *)z2, cols * H);
        vcos((float *)c2, (float *)z2, cols * H);
        for (int c = 0; c < cols; c++) {
            vf o = h2[c].v[0] * vw3.v[0];
            for (int v = 1; v < NV; v++) o += h2[c].v[v] * vw3.v[v];
            float out = b3[0] + offset;
            for (int i = 0; i < 16; i++) out += o[i];
            const float e = out - t[r * cols + c];
            loss += (double)e * e;
            const float d = e * scale;
            gb3acc += d;
            for (int v = 0; v < NV; v++) {
                accw3.v[v] += d * h2[c].v[v];
                dz2[c].v[v] = d * vw3.v[v] * c2[c].v[v];
                accb2.v[v] += dz2[c].v[v];
            }
        }
        /* grad W2 (transposed) += h1^T dz2 over this row, PB rows k of it at a time */
        for (int k0 = 0; k0 < H; k0 += PB) {
            hv acc[PB];
            for (int q = 0; q < PB; q++) acc[q] = gW2T[k0 + q];
            for (int c = 0; c < cols; c++) {
                const hv dz = dz2[c];
                for (int q = 0; q < PB; q++) {
                    const float hk = h1s[c][k0 + q];
                    for (int v = 0; v < NV; v++) acc[q].v[v] += hk * dz.v[v];
                }
            }
            for (int q = 0; q < PB; q++) gW2T[k0 + q] = acc[q];
        }
        /* back through W2 and layer 1's cosine, PB pixels at a time */
        for (int c0 = 0; c0 < cols; c0 += PB) {
            const int pb = cols - c0 < PB ? cols - c0 : PB;
            hv acc[PB];
            memset(acc, 0, sizeof acc);
            for (int j = 0; j < H; j++) {
                const hv w = W2s[j];
                for (int q = 0; q < PB; q++) {
                    const float dj = q < pb ? ((const float *)&dz2[c0 + q])[j] : 0.f;
                    for (int v = 0; v < NV; v++) acc[q].v[v] += dj * w.v[v];
                }
            }
            for (int q = 0; q < pb; q++) {
                const int c = c0 + q;
                for (int v = 0; v < NV; v++) {
                    const vf dz = acc[q].v[v] * c1[c].v[v];
                    accx.v[v] += dz * xs[c];
                    accy.v[v] += dz * ys[r];
                    accb.v[v] += dz;
                }
            }
        }
    }
    for (int k = 0; k < H; k++) {
        gW1[2 * k] = w0 * ((float *)&accx)[k];
        gW1[2 * k + 1] = w0 * ((float *)&accy)[k];
        gb1[k] = w0 * ((float *)&accb)[k];
        gb2[k] = w0 * ((float *)&accb2)[k];
        gw3[k] = ((float *)&accw3)[k];
    }
    for (int j = 0; j < H; j++)
        for (int k = 0; k < H; k++) gW2[j * H + k] = w0 * ((float *)&gW2T[k])[j];
    gb3[0] = gb3acc;
    return (float)(loss / n);
}

int siren_param_count(void) { return 5 * H + H * H + 1; }

int siren_fit(int count, int steps, float lr, float eta_min, float beta1, float beta2, float eps,
              int rows, int cols, const float *xs, const float *ys, float w0, float offset,
              const float *targets, float *params, float *mse_out) {
    if (cols > MAXW || rows > MAXW || rows < 1 || cols < 1) return -1;
    enum { P = 5 * H + H * H + 1 };
    float g[P], m[P], v[P];
    for (int b = 0; b < count; b++) {
        float *p = params + (long)b * P;
        const float *t = targets + (long)b * rows * cols;
        memset(m, 0, sizeof m);
        memset(v, 0, sizeof v);
        float loss = 0.f;
        for (int s = 0; s < steps; s++) {
            const double lr_s = eta_min + (lr - eta_min) * (1.0 + cos(M_PI * s / steps)) / 2.0;
            loss = siren_grad(p, t, rows, cols, xs, ys, w0, offset, g);
            const double bc1 = 1.0 - pow(beta1, s + 1), bc2 = 1.0 - pow(beta2, s + 1);
            const float step_size = (float)(lr_s / bc1), bc2_sqrt = (float)sqrt(bc2);
#pragma omp simd
            for (int i = 0; i < P; i++) {
                m[i] = beta1 * m[i] + (1.f - beta1) * g[i];
                v[i] = beta2 * v[i] + (1.f - beta2) * g[i] * g[i];
                p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
            }
        }
        mse_out[b] = loss;
    }
    return 0;
}

void siren_grads(int count, int rows, int cols, const float *xs, const float *ys, float w0, float offset,
                 const float *targets, const float *params, float *grads, float *mse_out) {
    enum { P = 5 * H + H * H + 1 };
    for (int b = 0; b < count; b++)
        mse_out[b] = siren_grad(params + (long)b * P, targets + (long)b * rows * cols, rows, cols, xs, ys, w0, offset,
                                grads + (long)b * P);
}
