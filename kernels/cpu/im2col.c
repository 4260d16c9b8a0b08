/* im2col and subsampling: the gathers that turn a convolution into one GEMM, and their adjoints
 * (col2im, subsample backward) that scatter column gradients back to the input. */
#include <string.h>
#include "senet_kernels.h"

void senet_im2col_f32(const float *x, size_t c, size_t h, size_t w, size_t kh, size_t kw,
                      size_t stride, size_t pad, size_t oh, size_t ow, float *col, size_t ldcol) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        for (size_t ky = 0; ky < kh; ky++) {
            for (size_t kx = 0; kx < kw; kx++) {
                float *dst = col + ((ci * kh + ky) * kw + kx) * ldcol;
                for (size_t oy = 0; oy < oh; oy++) {
                    const long iy = (long)(oy * stride + ky) - (long)pad;
                    float *d = dst + oy * ow;
                    if (iy < 0 || iy >= (long)h) {
                        memset(d, 0, ow * sizeof(float));
                        continue;
                    }
                    const float *src = xc + (size_t)iy * w;
                    if (stride == 1) {
                        /* valid ox: 0 <= ox + kx - pad < w */
                        long lo = (long)pad - (long)kx;
                        long hi = (long)w + (long)pad - (long)kx;
                        if (lo < 0) lo = 0;
                        if (hi > (long)ow) hi = (long)ow;
                        if (hi < lo) hi = lo;
                        for (long ox = 0; ox < lo; ox++) d[ox] = 0.0f;
                        if (hi > lo)
                            memcpy(d + lo, src + (lo + (long)kx - (long)pad),
                                   (size_t)(hi - lo) * sizeof(float));
                        for (long ox = hi; ox < (long)ow; ox++) d[ox] = 0.0f;
                    } else {
                        for (size_t ox = 0; ox < ow; ox++) {
                            const long ix = (long)(ox * stride + kx) - (long)pad;
                            d[ox] = (ix >= 0 && ix < (long)w) ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

void senet_subsample_f32(const float *x, size_t c, size_t h, size_t w, size_t stride, size_t oh,
                         size_t ow, float *y, size_t ldy) {
    for (size_t ci = 0; ci < c; ci++) {
        for (size_t oy = 0; oy < oh; oy++) {
            const float *src = x + (ci * h + oy * stride) * w;
            float *d = y + ci * ldy + oy * ow;
            for (size_t ox = 0; ox < ow; ox++) d[ox] = src[ox * stride];
        }
    }
}

/* The adjoint of senet_im2col_f32: zero x, then scatter-add every in-image column entry back to
 * the input pixel it was gathered from. The loop order is fixed, so the sums are deterministic. */
void senet_col2im_f32(const float *col, size_t c, size_t h, size_t w, size_t kh, size_t kw,
                      size_t stride, size_t pad, size_t oh, size_t ow, float *x) {
    const size_t plane = oh * ow;
    memset(x, 0, c * h * w * sizeof(float));
    for (size_t ci = 0; ci < c; ci++) {
        float *xc = x + ci * h * w;
        for (size_t ky = 0; ky < kh; ky++) {
            for (size_t kx = 0; kx < kw; kx++) {
                const float *srcp = col + ((ci * kh + ky) * kw + kx) * plane;
                /* valid ox: 0 <= ox*stride + kx - pad < w */
                long lo = 0;
                while (lo < (long)ow && (long)((size_t)lo * stride + kx) < (long)pad) lo++;
                long hi = lo;
                while (hi < (long)ow && (long)((size_t)hi * stride + kx) - (long)pad < (long)w)
                    hi++;
                if (hi <= lo) continue; /* this kernel column never lands inside the image */
                for (size_t oy = 0; oy < oh; oy++) {
                    const long iy = (long)(oy * stride + ky) - (long)pad;
                    if (iy < 0 || iy >= (long)h) continue;
                    const float *s = srcp + oy * ow;
                    float *d = xc + (size_t)iy * w;
                    if (stride == 1) {
                        float *dd = d + (lo + (long)kx - (long)pad);
                        for (long ox = lo; ox < hi; ox++) dd[ox - lo] += s[ox];
                    } else {
                        for (long ox = lo; ox < hi; ox++)
                            d[(size_t)ox * stride + kx - pad] += s[ox];
                    }
                }
            }
        }
    }
}

/* The adjoint of senet_subsample_f32: zero dx, then dx[ci, oy*s, ox*s] = dy[ci, oy, ox]. */
void senet_subsample_backward_f32(const float *dy, size_t c, size_t h, size_t w, size_t stride,
                                  size_t oh, size_t ow, float *dx) {
    memset(dx, 0, c * h * w * sizeof(float));
    for (size_t ci = 0; ci < c; ci++) {
        for (size_t oy = 0; oy < oh; oy++) {
            float *d = dx + (ci * h + oy * stride) * w;
            const float *s = dy + (ci * oh + oy) * ow;
            for (size_t ox = 0; ox < ow; ox++) d[ox * stride] = s[ox];
        }
    }
}
