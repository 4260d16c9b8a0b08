/* Element-wise training kernels: ReLU and sigmoid gradients, the backward of the fused SE scale +
 * residual add + ReLU, and MindSpore's Momentum update. See senet_train_kernels.h; the lane sums
 * and the baseline/AVX-512 builds: lanes.h. */
#include "senet_train_kernels.h"

#include "lanes.h"

INLINE void relu_backward_body(const float *y, float *dy, size_t len) {
    for (size_t i = 0; i < len; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

INLINE void sigmoid_backward_body(const float *s, float *dy, size_t len) {
    for (size_t i = 0; i < len; i++) dy[i] *= s[i] * (1.0f - s[i]);
}

/* One value of the SE backward: d = out > 0 ? dout : 0 (selected in float) into dshortcut, d *
 * gate into dx, d * x added to the lane sum. */
INLINE void se_backward_one(const float *x, float gate, const float *out, const float *dout,
                            size_t i, float *dx, float *dshortcut, double *sum) {
    const float d = out[i] > 0.0f ? dout[i] : 0.0f;
    dshortcut[i] = d;
    dx[i] = d * gate;
    *sum += (double)d * (double)x[i];
}

INLINE double se_backward_body(const float *x, float gate, const float *out, const float *dout,
                               size_t len, float *dx, float *dshortcut) {
    /* Lane j (0..16) of the sum is vector j / 8, element j % 8. */
    v8d s[2] = {{0.0}, {0.0}};
    const v8f gatev = {gate, gate, gate, gate, gate, gate, gate, gate};
    size_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int h = 0; h < 2; h++) {
            const size_t at = i + 8 * (size_t)h;
            v8f o, d, xv;
            LOAD8(o, out + at);
            LOAD8(d, dout + at);
            LOAD8(xv, x + at);
            d = (v8f)((v8i)d & (o > 0.0f));
            const v8f dxv = d * gatev;
            memcpy(dshortcut + at, &d, sizeof d);
            memcpy(dx + at, &dxv, sizeof dxv);
            s[h] += __builtin_convertvector(d, v8d) * __builtin_convertvector(xv, v8d);
        }
    double sl[LANES];
    memcpy(sl, s, sizeof sl);
    for (int j = 0; i + j < len; j++) se_backward_one(x, gate, out, dout, i + j, dx, dshortcut, &sl[j]);
    return lanes_total(sl);
}

INLINE void momentum_body(float *param, const float *grad, float *moment, size_t len, float lr,
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

#define relu_backward_f32_body relu_backward_body
#define sigmoid_backward_f32_body sigmoid_backward_body
#define se_scale_add_relu_backward_f32_body se_backward_body
#define momentum_f32_body momentum_body

DISPATCH_VOID(relu_backward_f32, (const float *y, float *dy, size_t len), (y, dy, len))
DISPATCH_VOID(sigmoid_backward_f32, (const float *s, float *dy, size_t len), (s, dy, len))
DISPATCH(double, se_scale_add_relu_backward_f32,
         (const float *x, float gate, const float *out, const float *dout, size_t len, float *dx,
          float *dshortcut),
         (x, gate, out, dout, len, dx, dshortcut))
DISPATCH_VOID(momentum_f32,
              (float *param, const float *grad, float *moment, size_t len, float lr,
               float momentum, float wd_scaled, float inv_scale, int need_scale, int nesterov),
              (param, grad, moment, len, lr, momentum, wd_scaled, inv_scale, need_scale, nesterov))
