/* Direct grouped convolution (method and layout in conv_grouped_avx512.h).
 *
 * Per group: pad its cin_g input channels into the scratch (rows of wp floats, each channel cs
 * floats long, zero beyond the image), then for each block of CO output channels and each block
 * of P vectors of 16 grid positions, a microkernel holds CO x P accumulators in registers: per
 * tap it loads P input vectors and broadcasts CO weights (CO*P FMAs for P loads). The block's
 * grid rows go to a scratch strip, from which the ow valid columns of each row are stored with
 * bias and activation. */
#include <immintrin.h>
#include <string.h>
#include "conv_grouped_avx512.h"
#include "senet_kernels.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define CO 4 /* output channels per microkernel */
#define P 4  /* vectors of 16 grid positions per microkernel */

/* The padded grid of one conv: see the header. */
typedef struct {
    size_t wq;   /* grid row length (output positions) */
    size_t wp;   /* padded input row length, stride * wq */
    size_t nvec; /* vectors of 16 grid positions covering oh * wq */
    size_t ps;   /* floats per row phase of a channel (every read of the microkernels inside) */
    size_t cs;   /* floats per padded input channel: stride phases */
} grid;

static grid grid_of(const senet_gconv *p) {
    grid g;
    const size_t s = p->stride;
    g.wq = (p->w + 2 * p->pad + s - 1) / s;
    g.wp = s * g.wq;
    g.nvec = (p->oh * g.wq + 15) / 16;
    /* The furthest float read in a phase: last lane of the last vector (stride 2 loads 32),
     * last tap. */
    const size_t last = s * 16 * g.nvec - 1 + (p->kh - 1) / s * g.wp + p->kw - 1;
    g.ps = (last + 1 + 15) / 16 * 16;
    g.cs = s * g.ps;
    return g;
}

size_t senet_gconv_scratch_floats(const senet_gconv *p) {
    const grid g = grid_of(p);
    return p->cin / p->groups * g.cs + CO * 16 * g.nvec;
}

/* The padded channel: padded row r = iy + pad (of wp floats, the image's row iy at column pad,
 * 0 elsewhere) at dst[(r % s) * ps + (r / s) * wp], for the rows that fit in a phase of ps
 * floats. With the rows of each phase r % s together, output row oy reads tap row ky in phase
 * ky % s at row oy + ky / s, so a grid row of wq positions spans one phase row of s * wq. */
static void pad_channel(const float *src, size_t h, size_t w, size_t pad, const grid *g,
                        size_t s, float *dst) {
    memset(dst, 0, g->cs * sizeof(float));
    for (size_t iy = 0; iy < h; iy++) {
        const size_t r = iy + pad, off = r / s * g->wp + pad;
        if (off >= g->ps) continue;
        const size_t n = w < g->ps - off ? w : g->ps - off;
        memcpy(dst + r % s * g->ps + off, src + iy * w, n * sizeof(float));
    }
}

/* out[c*ldo + 16v + t] = sum_r wt[c*kk + r] * X[r][16v + t] for c < co, v < nv, t < 16, where
 * X[(ci, ky, kx)][j] = xp[ci*cs + (ky % s)*ps + (ky / s)*wp + kx + s*j] (s = 2 if s2, else 1).
 * co, nv and s2 are constants after inlining, so the accumulators stay in registers. */
TARGET static inline __attribute__((always_inline)) void
kernel(const int s2, const int co, const int nv, const float *xp, size_t cs, size_t ps,
       const float *wt, size_t kk, size_t cin_g, size_t kh, size_t kw, size_t wp, float *out,
       size_t ldo) {
    const __m512i evens =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc[CO][P];
    for (int c = 0; c < co; c++)
        for (int v = 0; v < nv; v++) acc[c][v] = _mm512_setzero_ps();
    size_t r = 0;
    for (size_t ci = 0; ci < cin_g; ci++)
        for (size_t ky = 0; ky < kh; ky++) {
            const float *row =
                xp + ci * cs + (s2 ? (ky & 1) * ps + (ky >> 1) * wp : ky * wp);
            for (size_t kx = 0; kx < kw; kx++, r++) {
                __m512 xv[P];
                for (int v = 0; v < nv; v++) {
                    if (s2) {
                        const float *q = row + kx + 32 * v;
                        xv[v] = _mm512_permutex2var_ps(_mm512_loadu_ps(q), evens,
                                                       _mm512_loadu_ps(q + 16));
                    } else
                        xv[v] = _mm512_loadu_ps(row + kx + 16 * v);
                }
                for (int c = 0; c < co; c++) {
                    const __m512 wv = _mm512_set1_ps(wt[c * kk + r]);
                    for (int v = 0; v < nv; v++) acc[c][v] = _mm512_fmadd_ps(wv, xv[v], acc[c][v]);
                }
            }
        }
    for (int c = 0; c < co; c++)
        for (int v = 0; v < nv; v++) _mm512_store_ps(out + c * ldo + 16 * v, acc[c][v]);
}

typedef void (*kernel_fn)(const float *, size_t, size_t, const float *, size_t, size_t, size_t,
                          size_t, size_t, float *, size_t);

/* One specialised microkernel per (stride 2?, co, nv). */
#define KERNEL(S_, CO_, NV_)                                                                    \
    TARGET static void kernel_##S_##_##CO_##x##NV_(                                          \
        const float *xp, size_t cs, size_t ps, const float *wt, size_t kk, size_t cin_g,        \
        size_t kh, size_t kw, size_t wp, float *out, size_t ldo) {                              \
        kernel(S_, CO_, NV_, xp, cs, ps, wt, kk, cin_g, kh, kw, wp, out, ldo);                  \
    }
#define KERNELS_FOR(S_, CO_) KERNEL(S_, CO_, 1) KERNEL(S_, CO_, 2) KERNEL(S_, CO_, 3) KERNEL(S_, CO_, 4)
#define KERNELS_S(S_) KERNELS_FOR(S_, 1) KERNELS_FOR(S_, 2) KERNELS_FOR(S_, 3) KERNELS_FOR(S_, 4)
KERNELS_S(0)
KERNELS_S(1)
#define ROW(S_, CO_) \
    {kernel_##S_##_##CO_##x1, kernel_##S_##_##CO_##x2, kernel_##S_##_##CO_##x3, kernel_##S_##_##CO_##x4}
static const kernel_fn KERNELS[2][CO][P] = {
    {ROW(0, 1), ROW(0, 2), ROW(0, 3), ROW(0, 4)},
    {ROW(1, 1), ROW(1, 2), ROW(1, 3), ROW(1, 4)},
};

/* y[c*oh*ow + oy*ow + ox] = act(bias[c] + t[c*ldt + oy*wq + ox]) for c < co (no bias term when
 * bias is NULL). */
TARGET static void store_rows(const float *t, size_t ldt, size_t co, size_t wq, size_t oh,
                              size_t ow, const float *bias, int relu, float *y) {
    for (size_t c = 0; c < co; c++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[c] : 0.0f);
        for (size_t oy = 0; oy < oh; oy++) {
            const float *src = t + c * ldt + oy * wq;
            float *dst = y + (c * oh + oy) * ow;
            for (size_t ox = 0; ox < ow; ox += 16) {
                const size_t n = ow - ox < 16 ? ow - ox : 16;
                const __mmask16 m = (__mmask16)((1u << n) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, src + ox);
                if (bias) v = _mm512_add_ps(v, b);
                /* max(0, v): MAXPS returns its second operand when one is NaN, so NaN propagates. */
                if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);
                _mm512_mask_storeu_ps(dst + ox, m, v);
            }
        }
    }
}

TARGET void senet_gconv_group(const senet_gconv *p, size_t g, float *y, float *scratch) {
    const grid gr = grid_of(p);
    const size_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups;
    const size_t kk = cin_g * p->kh * p->kw, ldt = 16 * gr.nvec;
    float *xp = scratch, *strip = scratch + cin_g * gr.cs;
    for (size_t ci = 0; ci < cin_g; ci++)
        pad_channel(p->x + (g * cin_g + ci) * p->h * p->w, p->h, p->w, p->pad, &gr, p->stride,
                    xp + ci * gr.cs);
    const int s2 = p->stride == 2;
    for (size_t c0 = 0; c0 < cout_g; c0 += CO) {
        const size_t co = cout_g - c0 < CO ? cout_g - c0 : CO;
        const size_t oc = g * cout_g + c0;
        for (size_t v0 = 0; v0 < gr.nvec; v0 += P) {
            const size_t nv = gr.nvec - v0 < P ? gr.nvec - v0 : P;
            KERNELS[s2][co - 1][nv - 1](xp + p->stride * 16 * v0, gr.cs, gr.ps, p->wt + oc * kk, kk,
                                        cin_g, p->kh, p->kw, gr.wp, strip + 16 * v0, ldt);
        }
        store_rows(strip, ldt, co, gr.wq, p->oh, p->ow, p->bias ? p->bias + oc : NULL,
                   p->act == SENET_ACT_RELU, y + c0 * p->oh * p->ow);
    }
}
