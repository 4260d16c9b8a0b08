/* The three entry points of a Winograd F(RxR, 3x3) convolution (layouts in winograd_avx512.h),
 * written once for both tile sizes. A transform file defines, then includes this body:
 *   WINO_P    the input patch side (R + 2) and WINO_R the output tile side;
 *   WINO_WEIGHTS, WINO_INPUT, WINO_OUTPUT  the names of the three entry points;
 *   weight_1d(a, b, c, r[P])   r = G (a, b, c)^T;
 *   input_1d(d[P], r[P])       r = B^T d;
 *   output_1d(m[P], r[R])      r = A^T m;
 *   patch_row(row, c0, w, lanes, d[P])  d[c] lane l = row[c0 + R*l + c] (0 outside [0, w));
 *   interleave(o[R], r[R])     the 16R floats o[0][0] o[1][0] .. o[R-1][0] o[0][1] .. as r.
 * Each 2-D transform is two 1-D passes. All three work on 16 lanes at once: 16 input channels
 * (weights), 16 tiles side by side on a tile row or 16 consecutive tiles (input, output). */
#define XI (WINO_P * WINO_P)

TARGET void WINO_WEIGHTS(const float *w, size_t rows, size_t cin, float *u) {
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
            __m512 col[3][WINO_P]; /* G g: column j of g -> P values */
            for (int j = 0; j < 3; j++) weight_1d(e[j], e[3 + j], e[6 + j], col[j]);
            for (int i = 0; i < WINO_P; i++) {
                __m512 r[WINO_P];
                weight_1d(col[0][i], col[1][i], col[2][i], r);
                for (int j = 0; j < WINO_P; j++)
                    _mm512_mask_storeu_ps(u + co * XI * cin + (size_t)(i * WINO_P + j) * cin + ci, m,
                                          r[j]);
            }
        }
    }
}

/* Both transforms go in two passes through a per-channel staging area `s` of XI rows of ldh
 * floats (ldh: the tile count rounded up to 16), so that every load and store is contiguous:
 * along image rows (16 tiles of one tile row side by side, whatever the image width), and along
 * the tile index (16 consecutive tiles, whatever the image width). */

TARGET void WINO_INPUT(const float *x, size_t cin, size_t c0, size_t c1, size_t h, size_t w,
                       size_t nimg, float *v, float *s) {
    const size_t th = (h + WINO_R - 1) / WINO_R, tw = (w + WINO_R - 1) / WINO_R;
    const size_t per_img = th * tw, ntiles = nimg * per_img;
    const size_t np = (ntiles + NR - 1) / NR, plane = h * w, ldh = (ntiles + 15) / 16 * 16;
    for (size_t ci = c0; ci < c1; ci++) {
        /* 1. s[(P j + r)*ldh + t] = (d B)[r][j] of tile t: each patch row times B. */
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
                    for (int r = 0; r < WINO_P; r++) {
                        const long iy = WINO_R * (long)ty - 1 + r;
                        __m512 hr[WINO_P];
                        if (iy < 0 || iy >= (long)h) {
                            for (int j = 0; j < WINO_P; j++) hr[j] = _mm512_setzero_ps();
                        } else {
                            __m512 d[WINO_P];
                            patch_row(chan + iy * (long)w, WINO_R * (long)tx0 - 1, (long)w, lanes, d);
                            input_1d(d, hr);
                        }
                        for (int j = 0; j < WINO_P; j++)
                            _mm512_mask_storeu_ps(dst + (size_t)(j * WINO_P + r) * ldh, live, hr[j]);
                    }
                }
        }
        /* 2. V[P i + j][ci][t] = (B^T (d B))[i][j], 16 tiles at a time. */
        for (size_t t0 = 0; t0 < ntiles; t0 += 16) {
            float *dst = v + (t0 / NR * cin + ci) * NR + t0 % NR;
            for (int j = 0; j < WINO_P; j++) {
                __m512 col[WINO_P], out[WINO_P];
                for (int r = 0; r < WINO_P; r++)
                    col[r] = _mm512_load_ps(s + (size_t)(j * WINO_P + r) * ldh + t0);
                input_1d(col, out);
                for (int i = 0; i < WINO_P; i++)
                    _mm512_store_ps(dst + (size_t)(i * WINO_P + j) * np * cin * NR, out[i]);
            }
        }
    }
}

TARGET void WINO_OUTPUT(const float *m, size_t ldm, size_t cout, size_t c0, size_t c1, size_t h,
                        size_t w, size_t nimg, const float *bias, int act, float *y, float *s) {
    const size_t th = (h + WINO_R - 1) / WINO_R, tw = (w + WINO_R - 1) / WINO_R;
    const size_t per_img = th * tw, ntiles = nimg * per_img;
    const size_t plane = h * w, xi_stride = cout * ldm, ldh = (ntiles + 15) / 16 * 16;
    for (size_t co = c0; co < c1; co++) {
        /* 1. s[(P i + c)*ldh + t] = (A^T M)[i][c] of tile t, 16 tiles at a time. */
        for (size_t t0 = 0; t0 < ntiles; t0 += 16) {
            const float *src = m + co * ldm + t0;
            for (int c = 0; c < WINO_P; c++) {
                __m512 col[WINO_P], out[WINO_R];
                for (int r = 0; r < WINO_P; r++)
                    col[r] = _mm512_load_ps(src + (size_t)(r * WINO_P + c) * xi_stride);
                output_1d(col, out);
                for (int i = 0; i < WINO_R; i++)
                    _mm512_store_ps(s + (size_t)(i * WINO_P + c) * ldh + t0, out[i]);
            }
        }
        /* 2. Output rows R ty + i: ((A^T M) A)[i][.] of 16 tiles side by side, interleaved. */
        const __m512 b = SET1(bias ? bias[co] : 0.0f);
        for (size_t img = 0; img < nimg; img++)
            for (size_t ty = 0; ty < th; ty++)
                for (size_t tx0 = 0; tx0 < tw; tx0 += 16) {
                    const long lanes = (long)(tw - tx0 < 16 ? tw - tx0 : 16);
                    const __mmask16 live = first_lanes(lanes);
                    const float *src = s + img * per_img + ty * tw + tx0;
                    const long ncols = (long)w - WINO_R * (long)tx0; /* columns from R*tx0 */
                    float *dst = y + (img * cout + co) * plane + WINO_R * (ty * w + tx0);
                    for (int i = 0; i < WINO_R && WINO_R * ty + (size_t)i < h; i++) {
                        __m512 row[WINO_P], o[WINO_R], out[WINO_R];
                        for (int c = 0; c < WINO_P; c++)
                            row[c] = _mm512_maskz_loadu_ps(live, src + (size_t)(i * WINO_P + c) * ldh);
                        output_1d(row, o);
                        for (int j = 0; j < WINO_R; j++) {
                            o[j] = ADD(o[j], b);
                            /* max(0, o): MAXPS returns its second operand on NaN, so NaN propagates. */
                            if (act == SENET_ACT_RELU) o[j] = _mm512_max_ps(_mm512_setzero_ps(), o[j]);
                        }
                        interleave(o, out);
                        for (int q = 0; q < WINO_R && 16 * q < ncols; q++)
                            _mm512_mask_storeu_ps(dst + (size_t)i * w + 16 * q,
                                                  first_lanes(ncols - 16 * q), out[q]);
                    }
                }
    }
}

#undef XI
