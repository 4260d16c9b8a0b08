/* Element-wise training kernels: ReLU and sigmoid gradients, the backward of the fused SE scale +
 * residual add + ReLU, and MindSpore's Momentum update. See senet_train_kernels.h. */
#include "senet_train_kernels.h"

void senet_relu_backward_f32(const float *y, float *dy, size_t len) {
    for (size_t i = 0; i < len; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void senet_sigmoid_backward_f32(const float *s, float *dy, size_t len) {
    for (size_t i = 0; i < len; i++) dy[i] *= s[i] * (1.0f - s[i]);
}

double senet_se_scale_add_relu_backward_f32(const float *x, float gate, const float *out,
                                            const float *dout, size_t len, float *dx,
                                            float *dshortcut) {
    double s0 = 0.0, s1 = 0.0;
    size_t i = 0;
    for (; i + 2 <= len; i += 2) {
        const float d0 = out[i] > 0.0f ? dout[i] : 0.0f;
        const float d1 = out[i + 1] > 0.0f ? dout[i + 1] : 0.0f;
        dshortcut[i] = d0;
        dshortcut[i + 1] = d1;
        dx[i] = d0 * gate;
        dx[i + 1] = d1 * gate;
        s0 += (double)d0 * (double)x[i];
        s1 += (double)d1 * (double)x[i + 1];
    }
    for (; i < len; i++) {
        const float d = out[i] > 0.0f ? dout[i] : 0.0f;
        dshortcut[i] = d;
        dx[i] = d * gate;
        s0 += (double)d * (double)x[i];
    }
    return s0 + s1;
}

void senet_momentum_f32(float *param, const float *grad, float *moment, size_t len, float lr,
                        float momentum, float wd_scaled, float inv_scale, int need_scale,
                        int nesterov) {
    for (size_t i = 0; i < len; i++) {
        float g = grad[i];
        /* Optimizer.decay_weight: weight * weight_decay + gradient (weight decay pre-scaled). */
        if (wd_scaled != 0.0f) g = param[i] * wd_scaled + g;
        /* Optimizer.scale_grad: gradient * (1 / loss_scale). */
        if (need_scale) g = g * inv_scale;
        /* ApplyMomentum. */
        const float v = moment[i] * momentum + g;
        moment[i] = v;
        if (nesterov)
            param[i] -= g * lr + v * momentum * lr;
        else
            param[i] -= lr * v;
    }
}
