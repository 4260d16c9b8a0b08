/* The transforms of the Winograd F(2x2, 3x3) convolution (layouts in winograd_avx512.h; the
 * entry points are winograd_body.h's, shared with F(4x4, 3x3) in winograd_avx512.c).
 *
 * Matrices (Lavin & Gray 2016, F(2x2, 3x3) with interpolation points 0, 1, -1):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * Its coefficients are 0, +-1 and 1/2, so each transform adds at most three values of the
 * size of its inputs (F(4x4, 3x3)'s reach 5x and 8x): an output's rounding stays near the
 * direct sum's, which training's forward needs (README "Speed"; `tests/train_step.rs`). */
#include "winograd_common.h"

#define WINO_P 4
#define WINO_R 2
#define P WINO_P

/* r = G (a, b, c)^T. */
TARGET static inline void weight_1d(__m512 a, __m512 b, __m512 c, __m512 r[P]) {
    const __m512 ac = ADD(a, c), half = SET1(0.5f);
    r[0] = a;
    r[1] = MUL(ADD(ac, b), half);
    r[2] = MUL(SUB(ac, b), half);
    r[3] = c;
}

/* r = B^T d. */
TARGET static inline void input_1d(const __m512 d[P], __m512 r[P]) {
    r[0] = SUB(d[0], d[2]);
    r[1] = ADD(d[1], d[2]);
    r[2] = SUB(d[2], d[1]);
    r[3] = SUB(d[1], d[3]);
}

/* r = A^T m. */
TARGET static inline void output_1d(const __m512 m[P], __m512 r[2]) {
    r[0] = ADD(ADD(m[0], m[1]), m[2]);
    r[1] = SUB(SUB(m[1], m[2]), m[3]);
}

/* d[c] lane l = row[c0 + 2l + c] for c < 4 and l < lanes (0 outside [0, w)): the four columns
 * of the patches of `lanes` tiles side by side on one input row. */
TARGET static inline void patch_row(const float *row, long c0, long w, long lanes, __m512 d[P]) {
    __m512 v[3];
    const int nq = (int)((2 * lanes + 2 + 15) / 16); /* vectors holding the needed columns */
    for (int q = 0; q < 3; q++)
        v[q] = q < nq ? _mm512_maskz_loadu_ps(inside(c0 + 16 * q, w), row + c0 + 16 * q)
                      : _mm512_setzero_ps();
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    d[0] = _mm512_permutex2var_ps(v[0], even, v[1]);
    d[1] = _mm512_permutex2var_ps(v[0], odd, v[1]);
    const __m512i next = _mm512_castps_si512(v[2]);
    d[2] = _mm512_castsi512_ps(_mm512_alignr_epi32(next, _mm512_castps_si512(d[0]), 1));
    d[3] = _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_alignr_epi32(next, next, 1), _mm512_castps_si512(d[1]), 1));
}

/* The 32 floats o[0][0] o[1][0] o[0][1] o[1][1] ... of two 16-lane vectors, as r[0..2]. */
TARGET static inline void interleave(const __m512 o[2], __m512 r[2]) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    r[0] = _mm512_permutex2var_ps(o[0], lo, o[1]);
    r[1] = _mm512_permutex2var_ps(o[0], hi, o[1]);
}

#define WINO_WEIGHTS senet_winograd2_weights
#define WINO_INPUT senet_winograd2_input
#define WINO_OUTPUT senet_winograd2_output
#include "winograd_body.h"
