/* The transforms of the Winograd F(4x4, 3x3) convolution (layouts in winograd_avx512.h).
 *
 * Matrices (Lavin & Gray 2016, F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Each 2-D transform is two 1-D passes. All three work on 16 lanes at once: 16 input channels
 * (weights), 16 tiles side by side on a tile row or 16 consecutive tiles (input, output). */
#include <immintrin.h>
#include "senet_kernels.h"
#include "sgemm_avx512.h"
#include "winograd_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define P SENET_WINO_PATCH
#define NR SENET_SGEMM_NR

#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#define MUL _mm512_mul_ps
#define FMA _mm512_fmadd_ps
#define SET1 _mm512_set1_ps

/* r = G (a, b, c)^T. */
TARGET static inline void weight_1d(__m512 a, __m512 b, __m512 c, __m512 r[P]) {
    const __m512 ac = ADD(a, c);
    const __m512 a24c6 = FMA(a, SET1(1.0f / 24.0f), MUL(c, SET1(1.0f / 6.0f)));
    const __m512 b12 = MUL(b, SET1(1.0f / 12.0f));
    r[0] = MUL(a, SET1(0.25f));
    r[1] = MUL(ADD(ac, b), SET1(-1.0f / 6.0f));
    r[2] = MUL(SUB(ac, b), SET1(-1.0f / 6.0f));
    r[3] = ADD(a24c6, b12);
    r[4] = SUB(a24c6, b12);
    r[5] = c;
}

/* r = B^T d. */
TARGET static inline void input_1d(const __m512 d[P], __m512 r[P]) {
    const __m512 four = SET1(4.0f), two = SET1(2.0f), m5 = SET1(-5.0f);
    const __m512 d12 = ADD(d[1], d[2]), d34 = ADD(d[3], d[4]);
    const __m512 d1m2 = SUB(d[1], d[2]), d4m3 = SUB(d[4], d[3]);
    const __m512 d4m2 = SUB(d[4], d[2]), d3m1 = SUB(d[3], d[1]);
    r[0] = FMA(four, d[0], FMA(m5, d[2], d[4]));
    r[1] = _mm512_fnmadd_ps(four, d12, d34);
    r[2] = FMA(four, d1m2, d4m3);
    r[3] = FMA(two, d3m1, d4m2);
    r[4] = _mm512_fnmadd_ps(two, d3m1, d4m2);
    r[5] = FMA(four, d[1], FMA(m5, d[3], d[5]));
}

/* r = A^T m. */
TARGET static inline void output_1d(const __m512 m[P], __m512 r[4]) {
    const __m512 s12 = ADD(m[1], m[2]), d12 = SUB(m[1], m[2]);
    const __m512 s34 = ADD(m[3], m[4]), d34 = SUB(m[3], m[4]);
    r[0] = ADD(ADD(m[0], s12), s34);
    r[1] = FMA(SET1(2.0f), d34, d12);
    r[2] = FMA(SET1(4.0f), s34, s12);
    r[3] = ADD(FMA(SET1(8.0f), d34, d12), m[5]);
}

TARGET void senet_winograd_weights(const float *w, size_t rows, size_t cin, float *u) {
    const __m512i nine = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(9));
    for (size_t co = 0; co < rows; co++) {
        for (size_t ci = 0; ci < cin; ci += 16) {
            const size_t n = cin - ci < 16 ? cin - ci : 16;
            const __mmask16 m = (__mmask16)((1u << n) - 1);
            const float *g = w + (co * cin + ci) * 9;
            __m512 e[9];
            for (int i = 0; i < 9; i++)
                e[i] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, nine, g + i, 4);
            __m512 col[3][P]; /* G g: column j of g -> 6 values */
            for (int j = 0; j < 3; j++) weight_1d(e[j], e[3 + j], e[6 + j], col[j]);
            for (int i = 0; i < P; i++) {
                __m512 r[P];
                weight_1d(col[0][i], col[1][i], col[2][i], r);
                for (int j = 0; j < P; j++)
                    _mm512_mask_storeu_ps(u + co * SENET_WINO_XI * cin + (size_t)(i * P + j) * cin + ci,
                                          m, r[j]);
            }
        }
    }
}

/* Lanes [0, n) of a 16-lane mask. */
static inline __mmask16 first_lanes(long n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* Lanes l of a 16-lane load at column c0 whose column c0 + l lies in [0, w). */
static inline __mmask16 inside(long c0, long w) {
    return (__mmask16)(first_lanes(w - c0) & ~first_lanes(-c0));
}

/* Elements c, c+4, c+8, ... (16 of them) of the 64 floats v0..v3. */
TARGET static inline __m512 every_fourth(__m512 v0, __m512 v1, __m512 v2, __m512 v3, int c) {
    const __m512i idx = _mm512_add_epi32(
        _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0),
        _mm512_set1_epi32(c));
    const __m512 lo = _mm512_permutex2var_ps(v0, idx, v1); /* lanes 0..7 used */
    const __m512 hi = _mm512_permutex2var_ps(v2, idx, v3);
    return _mm512_shuffle_f32x4(lo, hi, 0x44);
}

/* d[c] lane l = row[c0 + 4l + c] for c < 6 and l < lanes (0 outside [0, w)): the six columns of
 * the patches of `lanes` tiles side by side on one input row. */
TARGET static inline void patch_row(const float *row, long c0, long w, long lanes, __m512 d[P]) {
    __m512 v[5];
    const int nq = (int)((4 * lanes + 2 + 15) / 16); /* vectors holding the needed columns */
    for (int q = 0; q < 5; q++)
        v[q] = q < nq ? _mm512_maskz_loadu_ps(inside(c0 + 16 * q, w), row + c0 + 16 * q)
                      : _mm512_setzero_ps();
    for (int c = 0; c < 4; c++) d[c] = every_fourth(v[0], v[1], v[2], v[3], c);
    const __m512i next = _mm512_castps_si512(v[4]);
    d[4] = _mm512_castsi512_ps(_mm512_alignr_epi32(next, _mm512_castps_si512(d[0]), 1));
    d[5] = _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_alignr_epi32(next, next, 1), _mm512_castps_si512(d[1]), 1));
}

/* Both transforms go in two passes through a per-channel staging area `s` of 36 rows of ldh
 * floats (ldh: the tile count rounded up to 16), so that every load and store is contiguous:
 * along image rows (16 tiles of one tile row side by side, whatever the image width), and along
 * the tile index (16 consecutive tiles, whatever the image width). */

TARGET void senet_winograd_input(const float *x, size_t cin, size_t c0, size_t c1, size_t h,
                                 size_t w, size_t nimg, float *v, float *s) {
    const size_t th = (h + 3) / 4, tw = (w + 3) / 4, per_img = th * tw, ntiles = nimg * per_img;
    const size_t np = (ntiles + NR - 1) / NR, plane = h * w, ldh = (ntiles + 15) / 16 * 16;
    for (size_t ci = c0; ci < c1; ci++) {
        /* 1. s[(6j + r)*ldh + t] = (d B)[r][j] of tile t: each patch row times B. */
        for (size_t img = 0; img < nimg; img++) {
            const float *chan = x + (img * cin + ci) * plane;
            /* Channels are read image by image, so the hardware prefetcher sees jumps: fetch
             * this image's next channel, read on the next pass, meanwhile. */
            if (ci + 1 < c1)
                for (size_t off = 0; off < plane * sizeof(float); off += 64)
                    _mm_prefetch((const char *)(chan + plane) + off, _MM_HINT_T1);
            for (size_t ty = 0; ty < th; ty++)
                for (size_t tx0 = 0; tx0 < tw; tx0 += 16) {
                    const long lanes = (long)(tw - tx0 < 16 ? tw - tx0 : 16);
                    const __mmask16 live = first_lanes(lanes);
                    float *dst = s + img * per_img + ty * tw + tx0;
                    for (int r = 0; r < P; r++) {
                        const long iy = 4 * (long)ty - 1 + r;
                        __m512 hr[P];
                        if (iy < 0 || iy >= (long)h) {
                            for (int j = 0; j < P; j++) hr[j] = _mm512_setzero_ps();
                        } else {
                            __m512 d[P];
                            patch_row(chan + iy * (long)w, 4 * (long)tx0 - 1, (long)w, lanes, d);
                            input_1d(d, hr);
                        }
                        for (int j = 0; j < P; j++)
                            _mm512_mask_storeu_ps(dst + (size_t)(j * P + r) * ldh, live, hr[j]);
                    }
                }
        }
        /* 2. V[6i + j][ci][t] = (B^T (d B))[i][j], 16 tiles at a time. */
        for (size_t t0 = 0; t0 < ntiles; t0 += 16) {
            float *dst = v + (t0 / NR * cin + ci) * NR + t0 % NR;
            for (int j = 0; j < P; j++) {
                __m512 col[P], out[P];
                for (int r = 0; r < P; r++) col[r] = _mm512_load_ps(s + (size_t)(j * P + r) * ldh + t0);
                input_1d(col, out);
                for (int i = 0; i < P; i++)
                    _mm512_store_ps(dst + (size_t)(i * P + j) * np * cin * NR, out[i]);
            }
        }
    }
}

/* The 64 floats a0 b0 c0 d0 a1 b1 c1 d1 ... of four 16-lane vectors, as r[0..4]. */
TARGET static inline void interleave4(__m512 a, __m512 b, __m512 c, __m512 d, __m512 r[4]) {
    const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
    const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    const __m512 v0 = _mm512_shuffle_f32x4(u0, u1, 0x44), v1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
    const __m512 v2 = _mm512_shuffle_f32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    r[0] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[1] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[2] = _mm512_shuffle_f32x4(v2, v3, 0x88);
    r[3] = _mm512_shuffle_f32x4(v2, v3, 0xDD);
}

TARGET void senet_winograd_output(const float *m, size_t ldm, size_t cout, size_t c0, size_t c1,
                                  size_t h, size_t w, size_t nimg, const float *bias, int act,
                                  float *y, float *s) {
    const size_t th = (h + 3) / 4, tw = (w + 3) / 4, per_img = th * tw, ntiles = nimg * per_img;
    const size_t plane = h * w, xi_stride = cout * ldm, ldh = (ntiles + 15) / 16 * 16;
    for (size_t co = c0; co < c1; co++) {
        /* 1. s[(6i + c)*ldh + t] = (A^T M)[i][c] of tile t, 16 tiles at a time. */
        for (size_t t0 = 0; t0 < ntiles; t0 += 16) {
            const float *src = m + co * ldm + t0;
            for (int c = 0; c < P; c++) {
                __m512 col[P], out[4];
                for (int r = 0; r < P; r++)
                    col[r] = _mm512_load_ps(src + (size_t)(r * P + c) * xi_stride);
                output_1d(col, out);
                for (int i = 0; i < 4; i++) _mm512_store_ps(s + (size_t)(i * P + c) * ldh + t0, out[i]);
            }
        }
        /* 2. Output rows 4ty + i: ((A^T M) A)[i][.] of 16 tiles side by side, interleaved. */
        const __m512 b = SET1(bias ? bias[co] : 0.0f);
        for (size_t img = 0; img < nimg; img++)
            for (size_t ty = 0; ty < th; ty++)
                for (size_t tx0 = 0; tx0 < tw; tx0 += 16) {
                    const long lanes = (long)(tw - tx0 < 16 ? tw - tx0 : 16);
                    const __mmask16 live = first_lanes(lanes);
                    const float *src = s + img * per_img + ty * tw + tx0;
                    const long ncols = (long)w - 4 * (long)tx0; /* columns left from 4*tx0 */
                    float *dst = y + (img * cout + co) * plane + 4 * ty * w + 4 * tx0;
                    for (int i = 0; i < 4 && 4 * ty + (size_t)i < h; i++) {
                        __m512 row[P], o[4], out[4];
                        for (int c = 0; c < P; c++)
                            row[c] = _mm512_maskz_loadu_ps(live, src + (size_t)(i * P + c) * ldh);
                        output_1d(row, o);
                        for (int j = 0; j < 4; j++) {
                            o[j] = ADD(o[j], b);
                            /* max(0, o): MAXPS returns its second operand on NaN, so NaN propagates. */
                            if (act == SENET_ACT_RELU) o[j] = _mm512_max_ps(_mm512_setzero_ps(), o[j]);
                        }
                        interleave4(o[0], o[1], o[2], o[3], out);
                        for (int q = 0; q < 4 && 16 * q < ncols; q++)
                            _mm512_mask_storeu_ps(dst + (size_t)i * w + 16 * q,
                                                  first_lanes(ncols - 16 * q), out[q]);
                    }
                }
    }
}
