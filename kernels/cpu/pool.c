/* Pooling: the max pool over windows the caller places (MindSpore's 'same', PyTorch's symmetric
 * padding), its backward, and the global average pool. */
#include <math.h>
#include <string.h>
#include "senet_kernels.h"

void senet_max_pool2d_f32(const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
                          size_t pad_top, size_t pad_left, size_t oh, size_t ow, float *y) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        float *yc = y + ci * oh * ow;
        for (size_t oy = 0; oy < oh; oy++) {
            long y0 = (long)(oy * s) - (long)pad_top;
            long y1 = y0 + (long)k;
            if (y0 < 0) y0 = 0;
            if (y1 > (long)h) y1 = (long)h;
            for (size_t ox = 0; ox < ow; ox++) {
                long x0 = (long)(ox * s) - (long)pad_left;
                long x1 = x0 + (long)k;
                if (x0 < 0) x0 = 0;
                if (x1 > (long)w) x1 = (long)w;
                float m = -INFINITY;
                for (long iy = y0; iy < y1; iy++)
                    for (long ix = x0; ix < x1; ix++) {
                        const float v = xc[iy * (long)w + ix];
                        if (v > m) m = v;
                    }
                yc[oy * ow + ox] = m;
            }
        }
    }
}

void senet_global_avg_pool_f32(const float *x, size_t c, size_t hw, float *y) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *p = x + ci * hw;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = 0;
        for (; i + 8 <= hw; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += p[i + j];
        float sum = 0.0f;
        for (; i < hw; i++) sum += p[i];
        for (int j = 0; j < 8; j++) sum += acc[j];
        y[ci] = sum / (float)hw;
    }
}

void senet_max_pool2d_backward_f32(const float *x, const float *dy, size_t c, size_t h, size_t w,
                                   size_t k, size_t s, size_t pad_top, size_t pad_left, size_t oh,
                                   size_t ow, float *dx) {
    memset(dx, 0, c * h * w * sizeof(float));
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        const float *dyc = dy + ci * oh * ow;
        float *dxc = dx + ci * h * w;
        for (size_t oy = 0; oy < oh; oy++) {
            long y0 = (long)(oy * s) - (long)pad_top;
            long y1 = y0 + (long)k;
            if (y0 < 0) y0 = 0;
            if (y1 > (long)h) y1 = (long)h;
            for (size_t ox = 0; ox < ow; ox++) {
                long x0 = (long)(ox * s) - (long)pad_left;
                long x1 = x0 + (long)k;
                if (x0 < 0) x0 = 0;
                if (x1 > (long)w) x1 = (long)w;
                /* The same scan as the forward: the first strictly greater value wins. */
                float m = -INFINITY;
                long arg = -1;
                for (long iy = y0; iy < y1; iy++)
                    for (long ix = x0; ix < x1; ix++) {
                        const float v = xc[iy * (long)w + ix];
                        if (v > m) {
                            m = v;
                            arg = iy * (long)w + ix;
                        }
                    }
                /* A window of only -inf/NaN: the forward output came from no element; route the
                 * gradient to the window's first element. Empty windows cannot occur. */
                if (arg < 0) arg = y0 * (long)w + x0;
                dxc[arg] += dyc[oy * ow + ox];
            }
        }
    }
}
