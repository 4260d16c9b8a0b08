/* The transforms of the Winograd F(4x4, 3x3) convolution (layouts in winograd_avx512.h).
 *
 * Matrices (Lavin & Gray 2016, F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Each 2-D transform is two 1-D passes. All three work on 16 lanes at once: 16 input channels
 * (weights), 16 tiles side by side on a tile row or 16 consecutive tiles (input, output). */
#include "winograd_common.h"

#define WINO_P 6
#define WINO_R 4
#define P WINO_P
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

/* The 64 floats o[0][0] o[1][0] o[2][0] o[3][0] o[0][1] ... of four 16-lane vectors, as r[0..4]. */
TARGET static inline void interleave(const __m512 o[4], __m512 r[4]) {
    const __m512 a = o[0], b = o[1], c = o[2], d = o[3];
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

#define WINO_WEIGHTS senet_winograd_weights
#define WINO_INPUT senet_winograd_input
#define WINO_OUTPUT senet_winograd_output
#include "winograd_body.h"
