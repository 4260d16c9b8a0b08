/* Packing of one B block of the AVX-512 conv GEMM: the implicit im2col gather (see
 * sgemm_avx512.h for the layout). A block holds up to NC output pixels as consecutive panels of
 * NR columns; the pixels fall in at most NC "segments": runs of consecutive pixels on one
 * output row of one image within one panel. Rows (one (ci, ky, kx) each) are filled in order,
 * each across the whole block, so the input is read along its rows (whole cache lines, in the
 * order the prefetcher expects) rather than in NR-wide strips. Stride 1 copies 16-float vectors,
 * stride 2 takes the even lanes of two loads, other strides go scalar; masks only where a
 * segment touches the image border (masked-off lanes load as 0 and never touch memory). For
 * kernels wider than 1x1 (strides 1 and 2, kw <= 7) each segment's masks are computed once per
 * block for every kx, so that a row's copy is a few masked moves, whatever the border; the
 * prefetch of the next block is issued on kx = 0 rows only (the other kx read the same lines). */
#include <immintrin.h>
#include <stdint.h>
#include "senet_kernels.h"
#include "sgemm_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* Widest kernel whose gathers use precomputed masks (the 7x7 stem). */
#define MASKED_KW 7
/* 16-lane vectors of one segment (at most NR = 48 pixels). */
#define SEG_VECS (SENET_SGEMM_NR / 16)

/* A run of `len` pixels starting at panel column t0: image img, output row oy, column ox0.
 * Strides 1 and 2 with kw <= MASKED_KW also carry the masks of their gathers, which depend only
 * on the segment and kx: vector v of the row of kx loads input lanes ld[kx][v][0] (stride 2:
 * and ld[kx][v][1] of the next 16 floats) and stores lanes st[v]. */
typedef struct {
    size_t t0, len;
    const float *img; /* image base */
    long iy0;         /* oy*stride - pad */
    long ix0;         /* ox0*stride - pad */
    int nv;           /* vectors: ceil(len / 16) */
    __mmask16 st[SEG_VECS];
    __mmask16 ld[MASKED_KW][SEG_VECS][2];
} segment;

/* Lanes [lo, hi) of a 16-lane mask (clipped to 0..16). */
static inline __mmask16 lane_range(long lo, long hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)((((uint32_t)1 << (hi - lo)) - 1) << lo);
}

/* dst[u] = row[ix0 + u] for u < len where 0 <= ix0 + u < w, else 0. */
TARGET static void gather_s1(float *dst, const float *row, long ix0, size_t len, long w) {
    if (ix0 >= 0 && ix0 + (long)len <= w) {
        size_t u = 0;
        for (; u + 16 <= len; u += 16) _mm512_storeu_ps(dst + u, _mm512_loadu_ps(row + ix0 + u));
        if (u < len) {
            const __mmask16 m = lane_range(0, (long)(len - u));
            _mm512_mask_storeu_ps(dst + u, m, _mm512_maskz_loadu_ps(m, row + ix0 + u));
        }
        return;
    }
    for (size_t u = 0; u < len; u += 16) {
        const long n = (long)(len - u) < 16 ? (long)(len - u) : 16;
        const long base = ix0 + (long)u;
        const __mmask16 m = lane_range(-base, w - base) & lane_range(0, n);
        const __m512 v = m ? _mm512_maskz_loadu_ps(m, row + base) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(dst + u, lane_range(0, n), v);
    }
}

/* dst[u] = row[ix0 + 2u] for u < len where 0 <= ix0 + 2u < w, else 0. */
TARGET static void gather_s2(float *dst, const float *row, long ix0, size_t len, long w) {
    const __m512i evens =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    size_t u = 0;
    /* Interior chunks: both 16-float loads inside the row. */
    for (; u + 16 <= len && ix0 + 2 * (long)u >= 0 && ix0 + 2 * (long)u + 32 <= w; u += 16) {
        const float *p = row + ix0 + 2 * (long)u;
        _mm512_storeu_ps(dst + u,
                         _mm512_permutex2var_ps(_mm512_loadu_ps(p), evens, _mm512_loadu_ps(p + 16)));
    }
    for (; u < len; u += 16) {
        const long n = (long)(len - u) < 16 ? (long)(len - u) : 16;
        const long base = ix0 + 2 * (long)u;
        const long need = 2 * n - 1; /* input lanes 0..need */
        if (base >= 0 && base + need <= w) { /* interior tail: masks by count only */
            const __mmask16 lo = lane_range(0, need), hi = lane_range(0, need - 16);
            const __m512 a = _mm512_maskz_loadu_ps(lo, row + base);
            const __m512 b = hi ? _mm512_maskz_loadu_ps(hi, row + base + 16) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(dst + u, lane_range(0, n), _mm512_permutex2var_ps(a, evens, b));
            continue;
        }
        const __mmask16 lo = lane_range(-base, w - base) & lane_range(0, need);
        const __mmask16 hi = lane_range(-base - 16, w - base - 16) & lane_range(0, need - 16);
        const __m512 a = lo ? _mm512_maskz_loadu_ps(lo, row + base) : _mm512_setzero_ps();
        const __m512 b = hi ? _mm512_maskz_loadu_ps(hi, row + base + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(dst + u, lane_range(0, n), _mm512_permutex2var_ps(a, evens, b));
    }
}

/* dst[u] = row[ix0 + s*u] for u < len where in range, else 0. */
static void gather_any(float *dst, const float *row, long ix0, size_t len, long w, long s) {
    for (size_t u = 0; u < len; u++) {
        const long ix = ix0 + s * (long)u;
        dst[u] = (ix >= 0 && ix < w) ? row[ix] : 0.0f;
    }
}

/* The gather masks of segment g (see segment), for strides 1 and 2. */
static void segment_masks(segment *g, long w, long s, size_t kw) {
    g->nv = (int)((g->len + 15) / 16);
    for (int v = 0; v < g->nv; v++) {
        const long n = (long)g->len - 16 * v < 16 ? (long)g->len - 16 * v : 16;
        g->st[v] = lane_range(0, n);
        for (size_t kx = 0; kx < kw; kx++) {
            const long base = g->ix0 + (long)kx + 16 * s * v;
            if (s == 1) {
                g->ld[kx][v][0] = lane_range(-base, w - base) & lane_range(0, n);
                g->ld[kx][v][1] = 0;
            } else {
                const long need = 2 * n - 1; /* input lanes 0..need */
                g->ld[kx][v][0] = lane_range(-base, w - base) & lane_range(0, need);
                g->ld[kx][v][1] = lane_range(-base - 16, w - base - 16) & lane_range(0, need - 16);
            }
        }
    }
}

TARGET void senet_sgemm_pack_b(const senet_bsrc *b, size_t r0, size_t kc, size_t j0, size_t nw,
                               float *panels) {
    const size_t plane = b->oh * b->ow, khw = b->kh * b->kw, chw = b->h * b->w;
    const long s = (long)b->stride, pad = (long)b->pad, h = (long)b->h, w = (long)b->w;
    /* Segments end at output-row ends and at panel boundaries; dst is relative to row r. */
    /* Pointwise blocks (always stride 1 here, never padded) keep the plain copies. */
    const int masked = (s == 1 || s == 2) && b->kw <= MASKED_KW && b->kh * b->kw > 1;
    segment seg[SENET_SGEMM_NC];
    size_t nseg = 0;
    for (size_t t = 0; t < nw;) {
        const size_t j = j0 + t, img = j / plane, p = j % plane, oy = p / b->ow, ox = p % b->ow;
        const size_t q = t / SENET_SGEMM_NR, in_panel = t % SENET_SGEMM_NR;
        size_t len = b->ow - ox;
        if (len > nw - t) len = nw - t;
        if (len > SENET_SGEMM_NR - in_panel) len = SENET_SGEMM_NR - in_panel;
        seg[nseg].t0 = q * kc * SENET_SGEMM_NR + in_panel;
        seg[nseg].len = len;
        seg[nseg].img = b->x + img * b->img_stride;
        seg[nseg].iy0 = (long)oy * s - pad;
        seg[nseg].ix0 = (long)ox * s - pad;
        if (masked) segment_masks(&seg[nseg], w, s, b->kw);
        nseg++;
        t += len;
    }
    /* Zero lanes of the last panel beyond nw, up to its last 16-lane vector. */
    const size_t tail_q = nw / SENET_SGEMM_NR, tail_t = nw % SENET_SGEMM_NR;
    const size_t tail_end = (tail_t + 15) & ~(size_t)15;
    size_t ci = r0 / khw, ky = r0 % khw / b->kw, kx = r0 % b->kw;
    for (size_t r = 0; r < kc; r++) {
        float *dst = panels + r * SENET_SGEMM_NR;
        for (size_t t = tail_t; t < tail_end; t++)
            dst[tail_q * kc * SENET_SGEMM_NR + t] = 0.0f;
        for (size_t i = 0; i < nseg; i++) {
            const segment *g = &seg[i];
            const long iy = g->iy0 + (long)ky;
            float *d = dst + g->t0;
            if (iy < 0 || iy >= h) {
                for (size_t u = 0; u < g->len; u++) d[u] = 0.0f;
                continue;
            }
            const float *row = g->img + ci * chw + (size_t)iy * b->w;
            const long ix0 = g->ix0 + (long)kx;
            /* The next block reads on along this row (pointwise: exactly NC pixels on; 3x3/7x7:
             * about NC/ow output rows down): start fetching it now, streaming images from DRAM
             * otherwise leaves the gathers waiting on one of K strided streams per row. */
            if (kx == 0) {
                const char *ahead = (const char *)row + 4 * (ix0 + s * (long)SENET_SGEMM_NC);
                for (long off = 0; off < 4 * (s * (long)g->len + (long)b->kw - 1); off += 64)
                    _mm_prefetch(ahead + off, _MM_HINT_T0);
            }
            if (masked && s == 1) {
                for (int v = 0; v < g->nv; v++)
                    _mm512_mask_storeu_ps(
                        d + 16 * v, g->st[v],
                        _mm512_maskz_loadu_ps(g->ld[kx][v][0], row + ix0 + 16 * v));
            } else if (masked) {
                const __m512i evens =
                    _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                for (int v = 0; v < g->nv; v++) {
                    const float *p = row + ix0 + 32 * v;
                    const __m512 lo = _mm512_maskz_loadu_ps(g->ld[kx][v][0], p);
                    const __m512 hi = _mm512_maskz_loadu_ps(g->ld[kx][v][1], p + 16);
                    _mm512_mask_storeu_ps(d + 16 * v, g->st[v],
                                          _mm512_permutex2var_ps(lo, evens, hi));
                }
            } else if (s == 1)
                gather_s1(d, row, ix0, g->len, w);
            else if (s == 2)
                gather_s2(d, row, ix0, g->len, w);
            else
                gather_any(d, row, ix0, g->len, w, s);
        }
        if (++kx == b->kw) {
            kx = 0;
            if (++ky == b->kh) {
                ky = 0;
                ci++;
            }
        }
    }
}
