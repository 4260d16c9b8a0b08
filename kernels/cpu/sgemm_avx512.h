/* The AVX-512 convolution GEMM of senet (x86_64 only; built by build.rs for x86_64 targets,
 * called only after the Rust side has checked avx512f/bw/dq/vl at run time).
 *
 * C[m x n] = act(bias + A[m x k] . B[k x n]), where A is the row-major weight matrix
 * (Cout_g, Cin_g*kh*kw) as stored (not packed), and B is *virtual*: the im2col matrix of one or
 * more input images, described by a senet_bsrc and gathered straight into a small per-call
 * panel buffer (no im2col buffer). Column j of B is pixel p = j % (oh*ow) of image j / (oh*ow);
 * row r is (ci, ky, kx) = (r / (kh*kw), r / kw % kh, r % kw):
 *   B[r, j] = x[img*img_stride + ci*h*w + (oy*stride + ky - pad)*w + ox*stride + kx - pad]
 * (0 outside the image). A plain row-major K x N matrix with row stride ldb is the descriptor
 * {c = K, h = 1, w = ldb, kh = kw = 1, stride = 1, pad = 0, oh = 1, ow = N}.
 *
 * Summation order is fixed (k ascending within blocks of the same size, blocks added in order),
 * so results do not depend on how callers split m or n across threads. */
#ifndef SENET_SGEMM_AVX512_H
#define SENET_SGEMM_AVX512_H
#include <stddef.h>

/* Width of a packed B panel (3 zmm registers), of a packed block of panels, the largest k block. */
#define SENET_SGEMM_NR 48
#ifndef SENET_SGEMM_NC
#define SENET_SGEMM_NC (SENET_SGEMM_NR * 4)
#endif
#define SENET_SGEMM_KC 512
/* Floats of the caller-provided pack buffer (64-byte aligned). */
#define SENET_SGEMM_PACK_FLOATS (SENET_SGEMM_NC * SENET_SGEMM_KC)

/* The B operand: the input of a convolution seen as its im2col matrix (see above). */
typedef struct senet_bsrc {
    const float *x;    /* image 0, (c, h, w) row-major */
    size_t img_stride; /* floats from one image to the next */
    size_t c, h, w;
    size_t kh, kw, stride, pad;
    size_t oh, ow;
} senet_bsrc;

/* c[i*ldc + j] = act(bias[i] + sum_r a[i*lda + r] * B[r, j0 + j]) for i < m, j < n, with
 * k = b->c * b->kh * b->kw. bias may be NULL; act is SENET_ACT_NONE or SENET_ACT_RELU.
 * pack: SENET_SGEMM_PACK_FLOATS floats, 64-byte aligned. */
/* Limits the k blocks to kc rows (clamped to [16, SENET_SGEMM_KC]; SENET_SGEMM_KC until called):
 * for same-run comparisons of block sizes only. Call it before any product: the products read
 * the limit without synchronisation. */
void senet_sgemm_set_kc(size_t kc);

void senet_sgemm_avx512(size_t m, size_t n, const float *a, size_t lda, const senet_bsrc *b,
                        size_t j0, float *c, size_t ldc, const float *bias, int act, float *pack);

/* c[i*ldc + j] += sum_r a[i*lda + r] * B[r, j0 + j] for i < m, j < n (k = b->c * b->kh * b->kw):
 * the product of senet_sgemm_avx512 without bias or activation, each k block's sum added to C
 * in block order (so c + the k-block sums, in the order senet_sgemm_avx512 adds them; on a zero
 * C the same values as senet_sgemm_avx512). For sums over more than one call (the filter
 * gradient's sum over images). pack as senet_sgemm_avx512. */
void senet_sgemm_avx512_acc(size_t m, size_t n, const float *a, size_t lda, const senet_bsrc *b,
                            size_t j0, float *c, size_t ldc, float *pack);

/* dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (15*lds must fit an int32). */
void senet_sgemm_transpose(const float *src, size_t lds, size_t rows, size_t cols, float *dst,
                           size_t ldd);

/* c[i*ldc + j] = sum_r a[i*lda + r] * B[r, j] for i < m, j < n, r < k, with B already packed:
 * the panel of columns [q*NR, q*NR + NR) at panels + q*k*NR holds B[r, q*NR + t] at r*NR + t
 * (64-byte aligned; lanes beyond n up to the next multiple of 16 are read, their results are not
 * stored). No bias, no activation. */
void senet_sgemm_avx512_packed(size_t m, size_t n, size_t k, const float *a, size_t lda,
                               const float *panels, float *c, size_t ldc);

/* The transposed product (batch 1, small planes; see sgemm_avx512.c):
 * y[j*ldy + i] = act(bias[j] + sum_r a[r*lda + i] * W[j0 + j, r]) for i < m, j < n, r < k, with
 * W (rows x k, row-major) packed by senet_sgemm_t_panels; j0 a multiple of 16. Every output is
 * rounded as senet_sgemm_avx512 rounds the same sum. bias may be NULL (else n values, for the
 * channels j0..); act SENET_ACT_NONE or SENET_ACT_RELU; scratch: senet_sgemm_t_scratch_floats(m)
 * floats. */
void senet_sgemm_avx512_t(size_t m, size_t n, size_t k, const float *a, size_t lda,
                          const float *panels, size_t j0, float *y, size_t ldy, const float *bias,
                          int act, float *scratch);

/* W^T of a rows x k row-major W as panels of NR channels: panel q at panels + q*k*NR holds
 * W[q*NR + t, r] at r*NR + t (0 for q*NR + t >= rows); ceil(rows / NR) * k * NR floats. */
void senet_sgemm_t_panels(const float *w, size_t rows, size_t k, float *panels);

/* Floats of the scratch of senet_sgemm_avx512_t for m pixels. */
size_t senet_sgemm_t_scratch_floats(size_t m);

/* SENET_SGEMM_PACK_FLOATS, for the Rust side. */
size_t senet_sgemm_pack_floats(void);

/* Internal (sgemm_pack_avx512.c): for nw <= NC columns, panel q = t / NR at panels + q*kc*NR
 * holds panels[q*kc*NR + r*NR + t % NR] = B[r0 + r, j0 + t] for r < kc, t < nw, and 0 for
 * nw <= t < round_up(nw, 16). */
void senet_sgemm_pack_b(const senet_bsrc *b, size_t r0, size_t kc, size_t j0, size_t nw,
                        float *panels);
#endif
