/* The AVX-512 conv GEMM (interface and layout in sgemm_avx512.h).
 *
 * Blocking (GotoBLAS-style, with A left unpacked since the weights are already row-major):
 *   for each k block (<= KC rows, blocks of equal size):
 *     for each m block of MC = 512 rows (its A block, MC x KC floats = 512 KiB, stays in L2):
 *       for each block of NC columns: gather its KC x NC B block (L2) as NC/48 panels, then
 *        for each panel of NR = 48 columns (KC x 48 floats, L1/L2):
 *         for each MR = 8 rows: microkernel, 8 x 48 accumulators in 24 zmm registers;
 *         per k it loads 3 vectors of the panel and broadcasts A[i, k] for the 8 rows.
 * The first k block stores its sums, later blocks add theirs to C, the last one also adds the
 * bias and applies ReLU before its (masked, for the last <16 columns) store: no extra pass. */
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

/* The k blocks of a product with k rows: equal sizes of at most KC (one empty block if k = 0). */
static size_t k_block(size_t k) {
    const size_t nkb = k == 0 ? 1 : (k + KC - 1) / KC;
    return (k + nkb - 1) / nkb;
}

/* Epilogue flags of the k block starting at pc (kcur rows) of k. */
static int block_flags(size_t pc, size_t kcur, size_t k) {
    return (pc > 0 ? EP_LOAD : 0) | (pc + kcur >= k ? EP_LAST : 0);
}

/* The blocked product of both entry points: B gathered block by block from `b` into `pack`, or
 * (b NULL) already packed in `panels` (panel stride k*NR). k = 0 (b only) still writes the bias. */
TARGET static void product(size_t m, size_t n, size_t k, const float *a, size_t lda,
                           const senet_bsrc *b, size_t j0, const float *panels, float *pack,
                           float *c, size_t ldc, const float *bias, int relu) {
    const size_t kc = k_block(k);
    for (size_t pc = 0; pc < k || pc == 0; pc += kc) {
        const size_t kcur = k - pc < kc ? k - pc : kc;
        const int flags = block_flags(pc, kcur, k);
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
            act == SENET_ACT_RELU);
}

TARGET void senet_sgemm_avx512_packed(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                      const float *panels, float *c, size_t ldc) {
    if (m == 0 || n == 0 || k == 0) return;
    product(m, n, k, a, lda, NULL, 0, panels, NULL, c, ldc, NULL, 0);
}
