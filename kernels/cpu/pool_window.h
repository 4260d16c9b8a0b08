/* The max-pool window along one axis, shared by pool.c and pool_avx512.c. */
#ifndef SENET_POOL_WINDOW_H
#define SENET_POOL_WINDOW_H
#include <stddef.h>

/* The input positions [*lo, *hi) of output position `o` along an axis of length `n`: the
 * window of `k` taps starting at o*s - pad, clipped to [0, n). Callers' sizes come from the
 * Rust side's checked pool geometry, so the products fit a long. */
static inline void pool_window(size_t o, size_t s, size_t pad, size_t k, size_t n, long *lo,
                               long *hi) {
    long a = (long)(o * s) - (long)pad;
    long b = a + (long)k;
    if (a < 0) a = 0;
    if (b > (long)n) b = (long)n;
    *lo = a;
    *hi = b;
}

#endif
