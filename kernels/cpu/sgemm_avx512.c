/* The AVX-512 conv GEMM (interface and layout in sgemm_avx512.h).
 *
 * Blocking (GotoBLAS-style, with A left unpacked since the weights are already row-major):
 *   for each k block (<= KC = 512 rows, blocks of equal size):
 *     for each m block of MC = 512 rows (its A block, up to MC x KC floats = 1 MiB, L2/L3):
 *       for each block of NC columns: gather its KC x NC B block (L2) as NC/48 panels, then
 *        for each panel of NR = 48 columns (KC x 48 floats, L1/L2):
 *         for each MR = 8 rows: microkernel, 8 x 48 accumulators in 24 zmm registers;
 *         per k it loads 3 vectors of the panel and broadcasts A[i, k] for the 8 rows.
 * The first k block stores its sums, later blocks add theirs to C, the last one also adds the
 * bias and applies ReLU before its (masked, for the last <16 columns) store: no extra pass.
 * KC = 512 rather than 256 halves those passes over C for k >= 512 (ResNe(X)t's 1x1 convs of
 * stages 3 and 4): 3-6% faster there on Zen 4 in a same-run comparison, no change below. */
#include <immintrin.h>
#include "senet_kernels.h"
#include "sgemm_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define MR 8
#define NV 3 /* vectors of 16 floats per panel row */
#define NR SENET_SGEMM_NR
#define KC SENET_SGEMM_KC
#define NC SENET_SGEMM_NC
#define MC 512

/* Epilogue flags of one microkernel call. */
#define EP_LOAD 1 /* add the partial sums already in C */
#define EP_LAST 2 /* last k block: add bias, apply the activation */

/* c[i, 0..nv*16) (last vector masked by `last`) for i < mr: see the file comment. mr and nv
 * are constants after inlining, so acc[][] lives in registers. */
TARGET static inline __attribute__((always_inline)) void
kernel(const int mr, const int nv, size_t kc, const float *a, size_t lda, const float *bp,
       float *c, size_t ldc, __mmask16 last, int flags, const float *bias, int relu) {
    __m512 acc[MR][NV];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        __m512 bv[NV];
        for (int v = 0; v < nv; v++) bv[v] = _mm512_load_ps(bp + k * NR + 16 * v);
        for (int i = 0; i < mr; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * lda + k]);
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        const __m512 bi = _mm512_set1_ps(bias && (flags & EP_LAST) ? bias[i] : 0.0f);
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xffff;
            __m512 r = acc[i][v];
            if (flags & EP_LOAD) r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, ci + 16 * v), r);
            if (flags & EP_LAST) {
                r = _mm512_add_ps(r, bi);
                /* max(0, r): MAXPS returns its second operand when one is NaN, so NaN propagates. */
                if (relu) r = _mm512_max_ps(_mm512_setzero_ps(), r);
            }
            _mm512_mask_storeu_ps(ci + 16 * v, m, r);
        }
    }
}

typedef void (*kernel_fn)(size_t, const float *, size_t, const float *, float *, size_t,
                          __mmask16, int, const float *, int);

/* One specialised microkernel per (mr, nv). */
#define KERNEL(MR_, NV_)                                                                       \
    TARGET static void kernel_##MR_##x##NV_(size_t kc, const float *a, size_t lda,             \
                                            const float *bp, float *c, size_t ldc,             \
                                            __mmask16 last, int flags, const float *bias,      \
                                            int relu) {                                        \
        kernel(MR_, NV_, kc, a, lda, bp, c, ldc, last, flags, bias, relu);                     \
    }
#define KERNELS_FOR(MR_) KERNEL(MR_, 1) KERNEL(MR_, 2) KERNEL(MR_, 3)
KERNELS_FOR(1)
KERNELS_FOR(2)
KERNELS_FOR(3)
KERNELS_FOR(4)
KERNELS_FOR(5)
KERNELS_FOR(6)
KERNELS_FOR(7)
KERNELS_FOR(8)
#define ROW(MR_) {kernel_##MR_##x1, kernel_##MR_##x2, kernel_##MR_##x3}
static const kernel_fn KERNELS[MR][NV] = {ROW(1), ROW(2), ROW(3), ROW(4),
                                          ROW(5), ROW(6), ROW(7), ROW(8)};

size_t senet_sgemm_pack_floats(void) { return SENET_SGEMM_PACK_FLOATS; }

/* Rows [0, m) of C against the packed panels of one k block (kcur rows): the panel of columns
 * [jc, jc + NR) at panels + jc / NR * pstride, its row r at + r * NR. */
TARGET static void block_product(size_t m, size_t nb, size_t kcur, const float *a, size_t lda,
                                 const float *panels, size_t pstride, float *c, size_t ldc,
                                 int flags, const float *bias, int relu) {
    for (size_t jc = 0; jc < nb; jc += NR) {
        const size_t nw = nb - jc < NR ? nb - jc : NR;
        const int nv = (int)((nw + 15) / 16);
        const size_t rem = nw - 16 * (size_t)(nv - 1);
        const __mmask16 last = (__mmask16)((1u << rem) - 1);
        const float *panel = panels + jc / NR * pstride;
        for (size_t ir = 0; ir < m; ir += MR) {
            const size_t mr = m - ir < MR ? m - ir : MR;
            KERNELS[mr - 1][nv - 1](kcur, a + ir * lda, lda, panel, c + ir * ldc + jc, ldc, last,
                                    flags, bias ? bias + ir : NULL, relu);
        }
    }
}

/* The largest k block (senet_sgemm_set_kc). */
static size_t kc_limit = KC;

void senet_sgemm_set_kc(size_t kc) { kc_limit = kc < 16 ? 16 : kc > KC ? KC : kc; }

/* The k blocks of a product with k rows: equal sizes of at most kc_limit (one empty block if
 * k = 0). */
static size_t k_block(size_t k) {
    const size_t nkb = k == 0 ? 1 : (k + kc_limit - 1) / kc_limit;
    return (k + nkb - 1) / nkb;
}

/* Epilogue flags of the k block starting at pc (kcur rows) of k. */
static int block_flags(size_t pc, size_t kcur, size_t k) {
    return (pc > 0 ? EP_LOAD : 0) | (pc + kcur >= k ? EP_LAST : 0);
}

/* The blocked product of the entry points: B gathered block by block from `b` into `pack`, or
 * (b NULL) already packed in `panels` (panel stride k*NR). k = 0 (b only) still writes the bias.
 * load (senet_sgemm_avx512_acc): every k block, the first too, adds its sums to C. */
TARGET static void product(size_t m, size_t n, size_t k, const float *a, size_t lda,
                           const senet_bsrc *b, size_t j0, const float *panels, float *pack,
                           float *c, size_t ldc, const float *bias, int relu, int load) {
    const size_t kc = k_block(k);
    for (size_t pc = 0; pc < k || pc == 0; pc += kc) {
        const size_t kcur = k - pc < kc ? k - pc : kc;
        const int flags = block_flags(pc, kcur, k) | (load ? EP_LOAD : 0);
        for (size_t ic = 0; ic < m; ic += MC) {
            const size_t mcur = m - ic < MC ? m - ic : MC;
            for (size_t jb = 0; jb < n; jb += NC) {
                const size_t nb = n - jb < NC ? n - jb : NC;
                const float *block = pack;
                size_t pstride = kcur * NR;
                if (b)
                    senet_sgemm_pack_b(b, pc, kcur, j0 + jb, nb, pack);
                else {
                    block = panels + jb / NR * k * NR + pc * NR;
                    pstride = k * NR;
                }
                block_product(mcur, nb, kcur, a + ic * lda + pc, lda, block, pstride,
                              c + ic * ldc + jb, ldc, flags, bias ? bias + ic : NULL, relu);
            }
        }
        if (k == 0) break;
    }
}

TARGET void senet_sgemm_avx512(size_t m, size_t n, const float *a, size_t lda,
                               const senet_bsrc *b, size_t j0, float *c, size_t ldc,
                               const float *bias, int act, float *pack) {
    if (m == 0 || n == 0) return;
    product(m, n, b->c * b->kh * b->kw, a, lda, b, j0, NULL, pack, c, ldc, bias,
            act == SENET_ACT_RELU, 0);
}

TARGET void senet_sgemm_avx512_acc(size_t m, size_t n, const float *a, size_t lda,
                                   const senet_bsrc *b, size_t j0, float *c, size_t ldc,
                                   float *pack) {
    const size_t k = b->c * b->kh * b->kw;
    if (m == 0 || n == 0 || k == 0) return;
    product(m, n, k, a, lda, b, j0, NULL, pack, c, ldc, NULL, 0, 1);
}

TARGET void senet_sgemm_avx512_packed(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                      const float *panels, float *c, size_t ldc) {
    if (m == 0 || n == 0 || k == 0) return;
    product(m, n, k, a, lda, NULL, 0, panels, NULL, c, ldc, NULL, 0, 0);
}

/* Columns gathered 16 rows at a time: the 16 source rows are read along their length, each
 * cache line reused by the next 15 columns; every store is one contiguous (masked) vector. */
TARGET void senet_sgemm_transpose(const float *src, size_t lds, size_t rows, size_t cols,
                                  float *dst, size_t ldd) {
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32((int)lds));
    for (size_t r = 0; r < rows; r += 16) {
        const size_t n = rows - r < 16 ? rows - r : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        const float *s = src + r * lds;
        float *d = dst + r;
        for (size_t c = 0; c < cols; c++)
            _mm512_mask_storeu_ps(d + c * ldd, m,
                                  _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, s + c, 4));
    }
}

/* ---- The transposed product of small planes (batch 1, 7x7 and 14x14) ----
 *
 * Y[j, i] = act(bias[j] + sum_r A[i, r] * W[j, r]) for pixels i < m and output channels j < n:
 * the same product as above with the roles swapped, pixels as the rows (broadcast) and output
 * channels across the vectors, so that a 7x7 plane fills 7 blocks of 7 rows exactly instead of
 * a 48-column panel and a 1-column one. A is the im2col matrix as stored (K x m, A[i, r] at
 * a[r*lda + i]); W^T is packed once (senet_sgemm_t_panels). The k blocks are those of the
 * product above (k_block), each block's FMA chain runs k ascending from 0, the blocks' sums are
 * added in order, then the bias: every output is rounded exactly as senet_sgemm_avx512 rounds it.
 * Partial sums of the blocks before the last are kept row-major in `scratch` (m x NC floats,
 * row stride NC); the last block adds the bias, applies ReLU and scatters the tile into Y. */

/* Rows of a tile of the transposed product: 7 when it divides m and 8 does not (49, 196). */
static size_t t_rows(size_t m) { return m % 8 != 0 && m % 7 == 0 ? 7 : MR; }

TARGET static inline __attribute__((always_inline)) void
kernel_t(const int mr, const int nv, size_t kc, const float *a, size_t lda, const float *bp,
         float *s, float *y, size_t ldy, __mmask16 last, int flags, const float *bias, int relu) {
    __m512 acc[MR][NV];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        __m512 bv[NV];
        for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_ps(bp + k * NR + 16 * v);
        for (int i = 0; i < mr; i++) {
            const __m512 ai = _mm512_set1_ps(a[k * lda + i]);
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    const __m512i lanes = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((int)ldy));
    for (int i = 0; i < mr; i++) {
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xffff;
            __m512 r = acc[i][v];
            float *si = s + (size_t)i * NC + 16 * v;
            if (flags & EP_LOAD) r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, si), r);
            if (!(flags & EP_LAST)) {
                _mm512_mask_storeu_ps(si, m, r);
                continue;
            }
            if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, bias + 16 * v));
            /* max(0, r) with NaN kept, as in kernel(). */
            if (relu) r = _mm512_max_ps(_mm512_setzero_ps(), r);
            _mm512_mask_i32scatter_ps(y + i + (size_t)16 * v * ldy, m, lanes, r, 4);
        }
    }
}

typedef void (*kernel_t_fn)(size_t, const float *, size_t, const float *, float *, float *,
                            size_t, __mmask16, int, const float *, int);

#define KERNEL_T(MR_, NV_)                                                                     \
    TARGET static void kernel_t_##MR_##x##NV_(size_t kc, const float *a, size_t lda,           \
                                              const float *bp, float *s, float *y, size_t ldy, \
                                              __mmask16 last, int flags, const float *bias,    \
                                              int relu) {                                      \
        kernel_t(MR_, NV_, kc, a, lda, bp, s, y, ldy, last, flags, bias, relu);                \
    }
#define KERNELS_T_FOR(MR_) KERNEL_T(MR_, 1) KERNEL_T(MR_, 2) KERNEL_T(MR_, 3)
KERNELS_T_FOR(1)
KERNELS_T_FOR(2)
KERNELS_T_FOR(3)
KERNELS_T_FOR(4)
KERNELS_T_FOR(5)
KERNELS_T_FOR(6)
KERNELS_T_FOR(7)
KERNELS_T_FOR(8)
#define ROW_T(MR_) {kernel_t_##MR_##x1, kernel_t_##MR_##x2, kernel_t_##MR_##x3}
static const kernel_t_fn KERNELS_T[MR][NV] = {ROW_T(1), ROW_T(2), ROW_T(3), ROW_T(4),
                                              ROW_T(5), ROW_T(6), ROW_T(7), ROW_T(8)};

size_t senet_sgemm_t_scratch_floats(size_t m) { return m * NC; }

void senet_sgemm_t_panels(const float *w, size_t n, size_t k, float *panels) {
    const size_t np = (n + NR - 1) / NR;
    /* Blocks of 16 rows, so that each weight row is read 16 floats at a time. */
    for (size_t q = 0; q < np; q++)
        for (size_t r0 = 0; r0 < k; r0 += 16)
            for (size_t t = 0; t < NR; t++) {
                const size_t j = q * NR + t;
                for (size_t r = r0; r < k && r < r0 + 16; r++)
                    panels[(q * k + r) * NR + t] = j < n ? w[j * k + r] : 0.0f;
            }
}

TARGET void senet_sgemm_avx512_t(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                 const float *panels, size_t j0, float *y, size_t ldy,
                                 const float *bias, int act, float *scratch) {
    if (m == 0 || n == 0) return;
    const int relu = act == SENET_ACT_RELU;
    const size_t kc = k_block(k), rows = t_rows(m);
    for (size_t jb = 0; jb < n; jb += NC) {
        const size_t nb = n - jb < NC ? n - jb : NC;
        for (size_t pc = 0; pc < k || pc == 0; pc += kc) {
            const size_t kcur = k - pc < kc ? k - pc : kc;
            const int flags = block_flags(pc, kcur, k);
            /* Chunks of at most one panel of the absolute channels j0 + j. */
            for (size_t j = jb; j < jb + nb;) {
                const size_t abs = j0 + j, off = abs % NR;
                size_t nw = NR - off;
                if (nw > jb + nb - j) nw = jb + nb - j;
                const int nv = (int)((nw + 15) / 16);
                const size_t rem = nw - 16 * (size_t)(nv - 1);
                const __mmask16 last = (__mmask16)((1u << rem) - 1);
                const float *bp = panels + (abs / NR * k + pc) * NR + off;
                for (size_t ir = 0; ir < m; ir += rows) {
                    const size_t mr = m - ir < rows ? m - ir : rows;
                    KERNELS_T[mr - 1][nv - 1](kcur, a + pc * lda + ir, lda, bp,
                                              scratch + ir * NC + (j - jb), y + j * ldy + ir,
                                              ldy, last, flags, bias ? bias + j : NULL, relu);
                }
                j += nw;
            }
            if (k == 0) break;
        }
    }
}
