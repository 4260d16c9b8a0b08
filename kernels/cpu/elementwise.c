/* Element-wise epilogues: bias + activation, the fused SE scale + residual add + ReLU. */
#include <math.h>
#include "senet_kernels.h"

void senet_bias_act_f32(float *y, const float *bias, size_t c, size_t hw, int act) {
    for (size_t ci = 0; ci < c; ci++) {
        float *p = y + ci * hw;
        const float b = bias ? bias[ci] : 0.0f;
        switch (act) {
        case SENET_ACT_RELU:
            for (size_t i = 0; i < hw; i++) {
                const float v = p[i] + b;
                p[i] = v < 0.0f ? 0.0f : v; /* NaN propagates */
            }
            break;
        case SENET_ACT_SIGMOID:
            for (size_t i = 0; i < hw; i++) p[i] = 1.0f / (1.0f + expf(-(p[i] + b)));
            break;
        default:
            if (bias)
                for (size_t i = 0; i < hw; i++) p[i] += b;
            break;
        }
    }
}

void senet_scale_add_relu_into_f32(const float *x, const float *gate, const float *shortcut,
                                   size_t c, size_t hw, float *out) {
    for (size_t ci = 0; ci < c; ci++) {
        const float *p = x + ci * hw;
        const float *s = shortcut + ci * hw;
        float *o = out + ci * hw;
        const float g = gate[ci];
        for (size_t i = 0; i < hw; i++) {
            const float v = p[i] * g + s[i];
            o[i] = v < 0.0f ? 0.0f : v; /* NaN propagates */
        }
    }
}

void senet_scale_add_relu_f32(float *x, const float *gate, const float *shortcut, size_t c,
                              size_t hw) {
    senet_scale_add_relu_into_f32(x, gate, shortcut, c, hw, x);
}
