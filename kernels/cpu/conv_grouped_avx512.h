/* Direct grouped convolution of senet (x86_64 AVX-512; built by build.rs for x86_64 targets,
 * called only after the Rust side has checked the CPU at run time). For convs with few channels
 * per group (ResNeXt's 3x3, groups = 32, 4 to 16 channels per group), where an im2col GEMM per
 * group is too small to amortise its packing.
 *
 * Method ("flat padded rows"): the group's input channels are copied into a zero-padded buffer
 * whose rows are wp = stride * wq floats long, wq = ceil((w + 2*pad) / stride), the padded rows
 * of each phase r % stride stored together (phase p of a channel at p * ps). Output position
 * j = oy*wq + ox of that grid reads, for tap (ky, kx), the padded input at
 *   (ky % stride)*ps + (ky / stride)*wp + kx + stride*j,
 * so 16 consecutive positions are 16 consecutive floats (stride 1) or the even lanes of 32
 * (stride 2): no im2col, no border masks. The columns ox >= ow of the grid are computed and
 * dropped. Each output is sum over (ci, ky, kx) ascending, by FMA from 0, then + bias and the
 * activation: the order of the im2col GEMM of one k block. */
#ifndef SENET_CONV_GROUPED_AVX512_H
#define SENET_CONV_GROUPED_AVX512_H
#include <stddef.h>

/* One grouped convolution of one image. */
typedef struct senet_gconv {
    const float *x;    /* the image, (cin, h, w) row-major */
    const float *wt;   /* the weight, (cout, cin/groups, kh, kw) */
    const float *bias; /* cout values, or NULL */
    size_t cin, h, w, cout, groups, kh, kw, stride, pad, oh, ow;
    int act; /* SENET_ACT_NONE or SENET_ACT_RELU */
} senet_gconv;

/* Floats of the scratch area senet_gconv_group needs for p (64-byte aligned by the caller).
 * p->stride must be 1 or 2. */
size_t senet_gconv_scratch_floats(const senet_gconv *p);

/* y[c*oh*ow + oy*ow + ox] = act(bias[co] + sum_{ci, ky, kx} wt[co, ci, ky, kx] *
 * x[g*cin_g + ci, oy*stride + ky - pad, ox*stride + kx - pad]) for the output channels
 * co = g*cout_g + c of group g, c < cout_g (x is 0 outside the image); y is the group's part of
 * the image's output, (cout_g, oh, ow). */
void senet_gconv_group(const senet_gconv *p, size_t g, float *y, float *scratch);
#endif
