/* Pooling: the max pool over windows the caller places (MindSpore's 'same', PyTorch's symmetric
 * padding), its backward, and the global average pool. */
#include <math.h>
#include <string.h>
#include "pool_window.h"
#include "senet_kernels.h"

void senet_max_pool2d_f32(const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
                          size_t pad_top, size_t pad_left, size_t oh, size_t ow, float *y) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *xc = x + ci * h * w;
        float *yc = y + ci * oh * ow;
        for (size_t oy = 0; oy < oh; oy++) {
            long y0, y1;
            pool_window(oy, s, pad_top, k, h, &y0, &y1);
            for (size_t ox = 0; ox < ow; ox++) {
                long x0, x1;
                pool_window(ox, s, pad_left, k, w, &x0, &x1);
                float m = -INFINITY;
                for (long iy = y0; iy < y1; iy++)
                    for (long ix = x0; ix < x1; ix++) {
                        const float v = xc[iy * (long)w + ix];
                        if (v > m || isnan(v)) m = v;
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
            long y0, y1;
            pool_window(oy, s, pad_top, k, h, &y0, &y1);
            for (size_t ox = 0; ox < ow; ox++) {
                long x0, x1;
                pool_window(ox, s, pad_left, k, w, &x0, &x1);
                /* The same scan as the forward: the first strictly greater value wins; a NaN
                 * wins over anything (PyTorch's and MindSpore's rule), the last NaN if several. */
                float m = -INFINITY;
                long arg = -1;
                for (long iy = y0; iy < y1; iy++)
                    for (long ix = x0; ix < x1; ix++) {
                        const float v = xc[iy * (long)w + ix];
                        if (v > m || isnan(v)) {
                            m = v;
                            arg = iy * (long)w + ix;
                        }
                    }
                /* A window of only -inf: the forward output came from no element; route the
                 * gradient to the window's first element. Empty windows cannot occur. */
                if (arg < 0) arg = y0 * (long)w + x0;
                dxc[arg] += dyc[oy * ow + ox];
            }
        }
    }
}
