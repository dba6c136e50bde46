/* Clocks: the wall clock for epoch times shared with peers (job deadlines, drain deadlines) and
 * the monotonic clock for durations measured inside skiff. */
#ifndef SK_CLOCK_H
#define SK_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Wall clock, epoch milliseconds. */
static inline int64_t sk_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic clock, seconds (for durations and histograms). */
static inline double sk_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
