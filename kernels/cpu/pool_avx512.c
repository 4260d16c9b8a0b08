/* The max pool of pool.c and its backward, 16 output columns at a time (x86_64 AVX-512; called
 * only after the Rust side has checked the CPU at run time). Strides 1 and 2.
 *
 * Same result bit for bit as senet_max_pool2d_f32: for each output the window is scanned in
 * the same row-major order with the same rule, m = v if (v > m or v is NaN), from m = -inf, as
 * a per-lane blend (a compare for >, an unordered compare for NaN). Positions outside the input
 * load as -inf, which that rule never takes, so they change nothing, as the scalar kernel's
 * clipping of the window. A NaN in a window therefore gives its last NaN, with its payload. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "pool_window.h"
#include "senet_kernels.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* Lanes [lo, hi) of a 16-lane mask (clipped to 0..16). */
static inline __mmask16 lanes(long lo, long hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)((((uint32_t)1 << (hi - lo)) - 1) << lo);
}

/* Input columns base + s*u (u < n <= 16) of `row` (width w), -inf outside [0, w). */
TARGET static inline __m512 columns(const float *row, long base, long n, long w, long s) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    if (s == 1) return _mm512_mask_loadu_ps(ninf, lanes(-base, w - base) & lanes(0, n), row + base);
    const __m512i evens =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const long need = 2 * n - 1; /* input lanes 0..need */
    const __mmask16 lo = lanes(-base, w - base) & lanes(0, need);
    const __mmask16 hi = lanes(-base - 16, w - base - 16) & lanes(0, need - 16);
    const __m512 a = _mm512_mask_loadu_ps(ninf, lo, row + base);
    const __m512 b = _mm512_mask_loadu_ps(ninf, hi, row + base + 16);
    return _mm512_permutex2var_ps(a, evens, b);
}

TARGET void senet_max_pool2d_avx512(const float *x, size_t c, size_t h, size_t w, size_t k,
                                    size_t s, size_t pad_top, size_t pad_left, size_t oh,
                                    size_t ow, float *y) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        float *yc = y + ci * oh * ow;
        for (size_t oy = 0; oy < oh; oy++) {
            long y0, y1;
            pool_window(oy, s, pad_top, k, h, &y0, &y1);
            for (size_t ox0 = 0; ox0 < ow; ox0 += 16) {
                const long n = ow - ox0 < 16 ? (long)(ow - ox0) : 16;
                __m512 m = _mm512_set1_ps(-INFINITY);
                for (long iy = y0; iy < y1; iy++) {
                    const float *row = xc + iy * (long)w;
                    for (size_t kx = 0; kx < k; kx++) {
                        const long base = (long)(ox0 * s + kx) - (long)pad_left;
                        const __m512 v = columns(row, base, n, (long)w, (long)s);
                        const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) |
                                               _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                        m = _mm512_mask_mov_ps(m, take, v);
                    }
                }
                _mm512_mask_storeu_ps(yc + oy * ow + ox0, lanes(0, n), m);
            }
        }
    }
}

/* senet_max_pool2d_backward_f32 with the same results bit for bit. Per output row, 16 windows at
 * a time: each lane runs the forward's scan above and keeps the plane index of the value it
 * takes (so the first maximum on ties, the last NaN), starting from its window's first in-image
 * position (what a window of only -inf routes to, as the scalar kernel); then the 16 gradients
 * are added at those indices one by one, in output order, so every dx element receives the same
 * additions in the same order as the scalar kernel's. Plane indices must fit an int32 (checked
 * by the caller). */
TARGET void senet_max_pool2d_backward_avx512(const float *x, const float *dy, size_t c, size_t h,
                                             size_t w, size_t k, size_t s, size_t pad_top,
                                             size_t pad_left, size_t oh, size_t ow, float *dx) {
    memset(dx, 0, c * h * w * sizeof(float));
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i lane_step = _mm512_mullo_epi32(iota, _mm512_set1_epi32((int)s));
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        const float *dyc = dy + ci * oh * ow;
        float *dxc = dx + ci * h * w;
        for (size_t oy = 0; oy < oh; oy++) {
            long y0, y1;
            pool_window(oy, s, pad_top, k, h, &y0, &y1);
            for (size_t ox0 = 0; ox0 < ow; ox0 += 16) {
                const long n = ow - ox0 < 16 ? (long)(ow - ox0) : 16;
                /* Lane u's window starts at column (ox0 + u)*s - pad_left, clipped to 0. */
                const long start = (long)(ox0 * s) - (long)pad_left;
                const __m512i first = _mm512_max_epi32(
                    _mm512_add_epi32(_mm512_set1_epi32((int)start), lane_step),
                    _mm512_setzero_si512());
                __m512i arg = _mm512_add_epi32(_mm512_set1_epi32((int)(y0 * (long)w)), first);
                __m512 m = _mm512_set1_ps(-INFINITY);
                for (long iy = y0; iy < y1; iy++) {
                    const float *row = xc + iy * (long)w;
                    for (size_t kx = 0; kx < k; kx++) {
                        const long base = start + (long)kx;
                        const __m512 v = columns(row, base, n, (long)w, (long)s);
                        const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) |
                                               _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                        m = _mm512_mask_mov_ps(m, take, v);
                        const __m512i at =
                            _mm512_add_epi32(_mm512_set1_epi32((int)(iy * (long)w + base)), lane_step);
                        arg = _mm512_mask_mov_epi32(arg, take, at);
                    }
                }
                int32_t idx[16];
                _mm512_storeu_si512(idx, arg);
                const float *g = dyc + oy * ow + ox0;
                for (long u = 0; u < n; u++) dxc[idx[u]] += g[u];
            }
        }
    }
}
