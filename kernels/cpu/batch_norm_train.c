/* BatchNorm2d in training mode: per-plane statistics in double, the normalising epilogue, and the
 * backward reductions and input gradient. See senet_train_kernels.h. */
#include "senet_train_kernels.h"

double senet_sum_f64(const float *x, size_t len) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        s0 += (double)x[i];
        s1 += (double)x[i + 1];
        s2 += (double)x[i + 2];
        s3 += (double)x[i + 3];
    }
    for (; i < len; i++) s0 += (double)x[i];
    return (s0 + s1) + (s2 + s3);
}

double senet_sum_sq_dev_f64(const float *x, size_t len, double mean) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        const double d0 = (double)x[i] - mean, d1 = (double)x[i + 1] - mean;
        const double d2 = (double)x[i + 2] - mean, d3 = (double)x[i + 3] - mean;
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < len; i++) {
        const double d = (double)x[i] - mean;
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

void senet_bn_apply_f32(const float *x, size_t len, float mean, float scale, float shift, int relu,
                        float *y) {
    if (relu) {
        for (size_t i = 0; i < len; i++) {
            const float v = (x[i] - mean) * scale + shift;
            y[i] = v < 0.0f ? 0.0f : v; /* NaN propagates */
        }
    } else {
        for (size_t i = 0; i < len; i++) y[i] = (x[i] - mean) * scale + shift;
    }
}

void senet_bn_bwd_reduce_f64(const float *x, const float *dy, const float *mask, size_t len,
                             float mean, double *sums) {
    double g0 = 0.0, g1 = 0.0, p0 = 0.0, p1 = 0.0;
    size_t i = 0;
    if (mask) {
        for (; i + 2 <= len; i += 2) {
            const double a = mask[i] > 0.0f ? (double)dy[i] : 0.0;
            const double b = mask[i + 1] > 0.0f ? (double)dy[i + 1] : 0.0;
            g0 += a;
            g1 += b;
            p0 += a * (double)(x[i] - mean);
            p1 += b * (double)(x[i + 1] - mean);
        }
        for (; i < len; i++) {
            const double a = mask[i] > 0.0f ? (double)dy[i] : 0.0;
            g0 += a;
            p0 += a * (double)(x[i] - mean);
        }
    } else {
        for (; i + 2 <= len; i += 2) {
            const double a = (double)dy[i], b = (double)dy[i + 1];
            g0 += a;
            g1 += b;
            p0 += a * (double)(x[i] - mean);
            p1 += b * (double)(x[i + 1] - mean);
        }
        for (; i < len; i++) {
            const double a = (double)dy[i];
            g0 += a;
            p0 += a * (double)(x[i] - mean);
        }
    }
    sums[0] += g0 + g1;
    sums[1] += p0 + p1;
}

void senet_bn_bwd_dx_f32(const float *x, const float *dy, const float *mask, size_t len,
                         float mean, float a, float b, float c, float *dx) {
    if (mask) {
        for (size_t i = 0; i < len; i++) {
            const float g = mask[i] > 0.0f ? dy[i] : 0.0f;
            dx[i] = a * g + b * (x[i] - mean) + c;
        }
    } else {
        for (size_t i = 0; i < len; i++) dx[i] = a * dy[i] + b * (x[i] - mean) + c;
    }
}
