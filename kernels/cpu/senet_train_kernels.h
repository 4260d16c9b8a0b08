/* Native CPU kernels of senet's training ops: BatchNorm statistics and backward, element-wise
 * gradients (ReLU, sigmoid, the SE gate + residual + ReLU) and the Momentum update. f32 data;
 * reductions accumulate in double with a fixed order (deterministic). One plane or one chunk per
 * call; the caller parallelises. Built by build.rs with cc. */
#ifndef SENET_TRAIN_KERNELS_H
#define SENET_TRAIN_KERNELS_H
#include <stddef.h>

/* Sum of x[0..len) in double (16 interleaved partial sums, combined in a fixed tree: lanes.h). */
double senet_sum_f64(const float *x, size_t len);

/* Sum of (x[i] - mean)^2 over [0, len) in double (same fixed order as senet_sum_f64). */
double senet_sum_sq_dev_f64(const float *x, size_t len, double mean);

/* y[i] = (x[i] - mean) * scale + shift, then max(0, .) when relu != 0 (NaN stays NaN). */
void senet_bn_apply_f32(const float *x, size_t len, float mean, float scale, float shift, int relu,
                        float *y);

/* BatchNorm backward reductions over one plane, in double: with g = dy[i] (or 0 where
 * mask != NULL and mask[i] <= 0), sums[0] += g and sums[1] += g * (x[i] - mean). */
void senet_bn_bwd_reduce_f64(const float *x, const float *dy, const float *mask, size_t len,
                             float mean, double *sums);

/* dx[i] = a * g + b * (x[i] - mean) + c, g as above. */
void senet_bn_bwd_dx_f32(const float *x, const float *dy, const float *mask, size_t len,
                         float mean, float a, float b, float c, float *dx);

/* dy[i] = y[i] > 0 ? dy[i] : 0. */
void senet_relu_backward_f32(const float *y, float *dy, size_t len);

/* dy[i] *= s[i] * (1 - s[i]). */
void senet_sigmoid_backward_f32(const float *s, float *dy, size_t len);

/* One (image, channel) plane of the backward of out = relu(x * gate + shortcut):
 * d = out[i] > 0 ? dout[i] : 0; dshortcut[i] = d; dx[i] = d * gate. Returns sum of d * x[i]
 * (double, in 16 lanes as senet_sum_f64; lanes.h). */
double senet_se_scale_add_relu_backward_f32(const float *x, float gate, const float *out,
                                            const float *dout, size_t len, float *dx,
                                            float *dshortcut);

/* MindSpore nn.Momentum on [0, len): g = grad[i] + wd_scaled * param[i] (skipped when
 * wd_scaled == 0); g *= inv_scale when need_scale; moment = moment * momentum + g;
 * param -= lr * moment, or with nesterov param -= g * lr + moment * momentum * lr. */
void senet_momentum_f32(float *param, const float *grad, float *moment, size_t len, float lr,
                        float momentum, float wd_scaled, float inv_scale, int need_scale,
                        int nesterov);
#endif
