/* Native CPU kernels of senet: the memory-bound loops around the GEMMs (NCHW, f32, one image
 * per call; the caller parallelises over images or channels). Built by build.rs with cc. */
#ifndef SENET_KERNELS_H
#define SENET_KERNELS_H
#include <stddef.h>

/* Activation codes, as senet::backend::Activation. */
#define SENET_ACT_NONE 0
#define SENET_ACT_RELU 1
#define SENET_ACT_SIGMOID 2

/* col[(ci*kh*kw + ky*kw + kx) * ldcol + oy*ow + ox] = x[ci, oy*s - pad + ky, ox*s - pad + kx]
 * (0 outside the image), for ci in [0, c). x is (c, h, w); ldcol >= oh*ow (oh*ow: contiguous
 * rows; more: the rows of a wider matrix, other images' columns beside them untouched). */
void senet_im2col_f32(const float *x, size_t c, size_t h, size_t w, size_t kh, size_t kw,
                      size_t stride, size_t pad, size_t oh, size_t ow, float *col, size_t ldcol);

/* y[ci*ldy + oy*ow + ox] = x[ci, oy*s, ox*s]: the input of a strided 1x1 conv (ldy >= oh*ow, as
 * ldcol above). */
void senet_subsample_f32(const float *x, size_t c, size_t h, size_t w, size_t stride, size_t oh,
                         size_t ow, float *y, size_t ldy);

/* The adjoint of senet_im2col_f32 (same geometry): x is overwritten with zeros, then
 * x[ci, oy*s - pad + ky, ox*s - pad + kx] += col[(ci*kh*kw + ky*kw + kx) * (oh*ow) + oy*ow + ox]
 * for every in-image position, in a fixed order. x is (c, h, w), col (c*kh*kw, oh*ow). */
void senet_col2im_f32(const float *col, size_t c, size_t h, size_t w, size_t kh, size_t kw,
                      size_t stride, size_t pad, size_t oh, size_t ow, float *x);

/* The adjoint of senet_subsample_f32: dx (c, h, w) is zeroed, then dx[ci, oy*s, ox*s] =
 * dy[ci, oy, ox] for dy (c, oh, ow). Requires (oh-1)*s < h and (ow-1)*s < w. */
void senet_subsample_backward_f32(const float *dy, size_t c, size_t h, size_t w, size_t stride,
                                  size_t oh, size_t ow, float *dx);

/* y[ci, i] = act(y[ci, i] + bias[ci]) over (c, hw); bias may be NULL. */
void senet_bias_act_f32(float *y, const float *bias, size_t c, size_t hw, int act);

/* Max pool of (c, h, w) into (c, oh, ow), window (oy, ox) starting at (oy*s - pad_top,
 * ox*s - pad_left) and clipped to the input: padded positions are skipped. The caller places
 * the windows (TF 'SAME' or PyTorch's symmetric padding, floor or ceil mode). A window holding
 * a NaN gives NaN (PyTorch's and MindSpore's rule). */
void senet_max_pool2d_f32(const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
                          size_t pad_top, size_t pad_left, size_t oh, size_t ow, float *y);

/* senet_max_pool2d_f32 with the same results bit for bit, 16 outputs of a row at a time, for
 * strides 1 and 2 (pool_avx512.c: x86_64 with AVX-512 only, checked by the caller). */
void senet_max_pool2d_avx512(const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
                             size_t pad_top, size_t pad_left, size_t oh, size_t ow, float *y);

/* Backward of senet_max_pool2d_f32 (same geometry): dx (c, h, w) is zeroed, then each
 * dy[ci, oy, ox] is added at the position of its window's maximum in x (the first one in
 * row-major window order on ties, as the forward's strict '>' scan; the last NaN when the window
 * holds any). */
void senet_max_pool2d_backward_f32(const float *x, const float *dy, size_t c, size_t h, size_t w,
                                   size_t k, size_t s, size_t pad_top, size_t pad_left, size_t oh,
                                   size_t ow, float *dx);

/* senet_max_pool2d_backward_f32 with the same results bit for bit, 16 windows of a row at a
 * time, for strides 1 and 2 and planes of fewer than 2^31 elements (pool_avx512.c: x86_64 with
 * AVX-512 only, checked by the caller). */
void senet_max_pool2d_backward_avx512(const float *x, const float *dy, size_t c, size_t h,
                                      size_t w, size_t k, size_t s, size_t pad_top,
                                      size_t pad_left, size_t oh, size_t ow, float *dx);

/* y[ci] = mean over hw of x[ci, :]. */
void senet_global_avg_pool_f32(const float *x, size_t c, size_t hw, float *y);

/* out[ci, i] = max(0, x[ci, i] * gate[ci] + shortcut[ci, i]); NaN stays NaN. out may be x. */
void senet_scale_add_relu_into_f32(const float *x, const float *gate, const float *shortcut,
                                   size_t c, size_t hw, float *out);

/* senet_scale_add_relu_into_f32 in place (out = x). */
void senet_scale_add_relu_f32(float *x, const float *gate, const float *shortcut, size_t c,
                              size_t hw);
#endif
