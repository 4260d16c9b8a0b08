/* Winograd F(4x4, 3x3) convolution of senet (x86_64 AVX-512; built by build.rs for x86_64
 * targets, called only after the Rust side has checked the CPU at run time).
 *
 * For a 3x3 convolution with stride 1 and padding 1 (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", CVPR 2016, section 4): the output is cut into 4x4 tiles, tile
 * (ty, tx) of an image reads the 6x6 input patch at rows 4ty-1.., columns 4tx-1.. (0 outside the
 * image), and with xi = 6*i + j (i, j < 6):
 *   U[co][xi][ci] = (G g[co][ci] G^T)[i][j]                      (senet_winograd_weights)
 *   V[xi][ci][t]  = (B^T d[ci][t] B)[i][j]                        (senet_winograd_input)
 *   M[xi][co][t]  = sum_ci U[co][xi][ci] V[xi][ci][t]            (36 GEMMs)
 *   y[co][t]      = act(bias[co] + A^T M[.][co][t] A)            (senet_winograd_output)
 * 16 multiplications per output and input channel pair per 4x4 tile instead of 144.
 * Tiles are numbered image by image, row by row: t = img * th*tw + ty * tw + tx, with
 * th = ceil(h/4), tw = ceil(w/4). */
#ifndef SENET_WINOGRAD_AVX512_H
#define SENET_WINOGRAD_AVX512_H
#include <stddef.h>

/* Tile side of F(4x4, 3x3) (input patch) and number of transformed positions. */
#define SENET_WINO_PATCH 6
#define SENET_WINO_XI 36
/* Floats of the staging area of either transform for ntiles tiles. */
#define SENET_WINO_SCRATCH(ntiles) (SENET_WINO_XI * (((ntiles) + 15) / 16 * 16))

/* u[co*36*cin + xi*cin + ci] = (G g G^T)[xi / 6][xi % 6] of g = w[(co*cin + ci)*9 ..] for
 * co < rows, ci < cin. */
void senet_winograd_weights(const float *w, size_t rows, size_t cin, float *u);

/* V of the ntiles = nimg*th*tw tiles of nimg images x[img*cin*h*w ..] (cin, h, w), for the
 * input channels c0 <= ci < c1, packed as the B panels of senet_sgemm_avx512_packed, one GEMM per
 * xi: with np = ceil(ntiles / 48), V[xi][ci][t] at v[((xi*np + t/48)*cin + ci)*48 + t%48] (lanes
 * past ntiles, up to a multiple of 16, hold finite values of no meaning). Calls for disjoint
 * channel ranges write disjoint parts of v. v and scratch (SENET_WINO_SCRATCH(ntiles) floats,
 * one per concurrent call): 64-byte aligned. */
void senet_winograd_input(const float *x, size_t cin, size_t c0, size_t c1, size_t h, size_t w,
                          size_t nimg, float *v, float *scratch);

/* y[img*cout*h*w + co*h*w + oy*w + ox] = act(bias[co] + (A^T M A)[oy%4][ox%4]) for every output
 * pixel of the nimg images and the output channels c0 <= co < c1, M[xi][co][t] at
 * m[(xi*cout + co)*ldm + t] (ldm: a multiple of 16, at least ntiles; m and scratch
 * (SENET_WINO_SCRATCH(ntiles) floats, one per concurrent call) 64-byte aligned). bias may be
 * NULL; act is SENET_ACT_NONE or SENET_ACT_RELU. */
void senet_winograd_output(const float *m, size_t ldm, size_t cout, size_t c0, size_t c1,
                           size_t h, size_t w, size_t nimg, const float *bias, int act, float *y,
                           float *scratch);

/* F(2x2, 3x3) (winograd2_avx512.c): the same three functions and layouts with 2x2 output tiles,
 * 4x4 input patches at rows 2ty-1.., columns 2tx-1.., xi = 4*i + j (i, j < 4), th = ceil(h/2),
 * tw = ceil(w/2), (Cout, 16, Cin) weights; 16 multiplications per 2x2 tile instead of 36.
 * Scratch: SENET_WINO2_SCRATCH(ntiles) floats. */
#define SENET_WINO2_PATCH 4
#define SENET_WINO2_XI 16
#define SENET_WINO2_SCRATCH(ntiles) (SENET_WINO2_XI * (((ntiles) + 15) / 16 * 16))
void senet_winograd2_weights(const float *w, size_t rows, size_t cin, float *u);
void senet_winograd2_input(const float *x, size_t cin, size_t c0, size_t c1, size_t h, size_t w,
                           size_t nimg, float *v, float *scratch);
void senet_winograd2_output(const float *m, size_t ldm, size_t cout, size_t c0, size_t c1,
                            size_t h, size_t w, size_t nimg, const float *bias, int act, float *y,
                            float *scratch);
#endif
