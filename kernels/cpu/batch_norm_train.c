/* BatchNorm2d in training mode: per-plane statistics in double, the normalising epilogue, and the
 * backward reductions and input gradient. See senet_train_kernels.h.
 *
 * Each kernel's body is written once (an always-inline function) and compiled twice on x86-64: for
 * the baseline ISA and with AVX-512 (a `target` attribute), the public function picking the latter
 * when the CPU has it (`__builtin_cpu_supports`). The reductions keep LANES separate double
 * partial sums (lane j takes the values at j, j + LANES, ...), combined in a fixed tree at the end:
 * the compiler maps the lanes onto vector registers without reordering any sum (ISO C mode: no
 * floating-point contraction or reassociation), so both builds return the same bits, and the
 * result depends only on the data and its length. */
#include "senet_train_kernels.h"

#include <string.h>

#define LANES 16
#define INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX512_BUILD 1
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
static int use_avx512(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define HAVE_AVX512_BUILD 0
#endif

/* The sum of the LANES partial sums, as a balanced tree in lane order. */
INLINE double lanes_total(const double *s) {
    double t[LANES / 2];
    for (int j = 0; j < LANES / 2; j++) t[j] = s[2 * j] + s[2 * j + 1];
    for (int w = LANES / 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) t[j] = t[2 * j] + t[2 * j + 1];
    return t[0];
}

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

/* Eight floats / doubles / ints in one GCC vector (two SSE registers in the baseline build, one
 * AVX-512 register in the other): the 16 lanes of the backward reduction as two of each. */
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

/* v = the 8 floats at ptr (unaligned). */
#define LOAD8(v, ptr) memcpy(&(v), (ptr), sizeof(v))

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

/* The baseline and the AVX-512 build of each body, and the public function choosing one
 * (DISPATCH_VOID for the bodies without a result). */
#if HAVE_AVX512_BUILD
#define DISPATCH(ret, name, params, args)                                                         \
    static ret name##_base params { return name##_body args; }                                    \
    AVX512 static ret name##_avx512 params { return name##_body args; }                           \
    ret senet_##name params { return use_avx512() ? name##_avx512 args : name##_base args; }
#define DISPATCH_VOID(name, params, args)                                                         \
    static void name##_base params { name##_body args; }                                          \
    AVX512 static void name##_avx512 params { name##_body args; }                                 \
    void senet_##name params {                                                                    \
        if (use_avx512())                                                                         \
            name##_avx512 args;                                                                   \
        else                                                                                      \
            name##_base args;                                                                     \
    }
#else
#define DISPATCH(ret, name, params, args)                                                         \
    ret senet_##name params { return name##_body args; }
#define DISPATCH_VOID(name, params, args)                                                         \
    void senet_##name params { name##_body args; }
#endif

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
