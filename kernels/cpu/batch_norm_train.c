/* BatchNorm2d in training mode: per-plane statistics in double, the normalising epilogue, and the
 * backward reductions and input gradient. See senet_train_kernels.h; the lane sums and the
 * baseline/AVX-512 builds: lanes.h. */
#include "senet_train_kernels.h"

#include "lanes.h"

INLINE double sum_body(const float *x, size_t len) {
    double s[LANES] = {0.0};
    size_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int j = 0; j < LANES; j++) s[j] += (double)x[i + j];
    for (int j = 0; i + j < len; j++) s[j] += (double)x[i + j];
    return lanes_total(s);
}

INLINE double sum_sq_dev_body(const float *x, size_t len, double mean) {
    double s[LANES] = {0.0};
    size_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int j = 0; j < LANES; j++) {
            const double d = (double)x[i + j] - mean;
            s[j] += d * d;
        }
    for (int j = 0; i + j < len; j++) {
        const double d = (double)x[i + j] - mean;
        s[j] += d * d;
    }
    return lanes_total(s);
}

INLINE void bn_apply_body(const float *x, size_t len, float mean, float scale, float shift,
                          int relu, float *y) {
    if (relu) {
        for (size_t i = 0; i < len; i++) {
            const float v = (x[i] - mean) * scale + shift;
            y[i] = v < 0.0f ? 0.0f : v; /* NaN propagates */
        }
    } else {
        for (size_t i = 0; i < len; i++) y[i] = (x[i] - mean) * scale + shift;
    }
}

/* One value of the backward reductions into lane sums g and p: with gv = dy (or 0 where the mask
 * is not > 0, selected in float), g += gv and p += gv * (x - mean) (the difference in float, as
 * the forward centres). */
INLINE void bwd_reduce_one(float x, float dy, const float *mask, size_t i, float mean, double *g,
                           double *p) {
    const double gv = (double)((!mask || mask[i] > 0.0f) ? dy : 0.0f);
    *g += gv;
    *p += gv * (double)(x - mean);
}

INLINE void bwd_reduce_body(const float *x, const float *dy, const float *mask, size_t len,
                            float mean, double *sums) {
    /* Lane j (0..16) of the sums g, p is vector j / 8, element j % 8. */
    v8d g[2] = {{0.0}, {0.0}}, p[2] = {{0.0}, {0.0}};
    const v8f meanv = {mean, mean, mean, mean, mean, mean, mean, mean};
    size_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int h = 0; h < 2; h++) {
            const size_t at = i + 8 * (size_t)h;
            v8f d, xv;
            LOAD8(d, dy + at);
            LOAD8(xv, x + at);
            if (mask) {
                v8f m;
                LOAD8(m, mask + at);
                d = (v8f)((v8i)d & (m > 0.0f));
            }
            const v8d gv = __builtin_convertvector(d, v8d);
            g[h] += gv;
            p[h] += gv * __builtin_convertvector(xv - meanv, v8d);
        }
    double gl[LANES], pl[LANES];
    memcpy(gl, g, sizeof gl);
    memcpy(pl, p, sizeof pl);
    for (int j = 0; i + j < len; j++)
        bwd_reduce_one(x[i + j], dy[i + j], mask, i + j, mean, &gl[j], &pl[j]);
    sums[0] += lanes_total(gl);
    sums[1] += lanes_total(pl);
}

INLINE void bwd_dx_body(const float *x, const float *dy, const float *mask, size_t len, float mean,
                        float a, float b, float c, float *dx) {
    if (mask) {
        for (size_t i = 0; i < len; i++) {
            const float g = mask[i] > 0.0f ? dy[i] : 0.0f;
            dx[i] = a * g + b * (x[i] - mean) + c;
        }
    } else {
        for (size_t i = 0; i < len; i++) dx[i] = a * dy[i] + b * (x[i] - mean) + c;
    }
}

/* The public names keep their historical suffixes: senet_sum_f64, senet_sum_sq_dev_f64, ... */
#define sum_f64_body sum_body
#define sum_sq_dev_f64_body sum_sq_dev_body
#define bn_apply_f32_body bn_apply_body
#define bn_bwd_reduce_f64_body bwd_reduce_body
#define bn_bwd_dx_f32_body bwd_dx_body

DISPATCH(double, sum_f64, (const float *x, size_t len), (x, len))
DISPATCH(double, sum_sq_dev_f64, (const float *x, size_t len, double mean), (x, len, mean))
DISPATCH_VOID(bn_apply_f32,
         (const float *x, size_t len, float mean, float scale, float shift, int relu, float *y),
         (x, len, mean, scale, shift, relu, y))
DISPATCH_VOID(bn_bwd_reduce_f64,
         (const float *x, const float *dy, const float *mask, size_t len, float mean,
          double *sums),
         (x, dy, mask, len, mean, sums))
DISPATCH_VOID(bn_bwd_dx_f32,
         (const float *x, const float *dy, const float *mask, size_t len, float mean, float a,
          float b, float c, float *dx),
         (x, dy, mask, len, mean, a, b, c, dx))
