/* Shared by the guest workloads of `btvisor bench` (cli/src/bench/): each program runs one
 * operation OPS times (argv[1], or its default) and prints one result line,
 *     bench <name> <ops> <nanoseconds>
 * timed with clock_gettime(CLOCK_MONOTONIC) around the loop only (process start-up and, in a
 * guest, the boot are excluded). On failure it prints "bench <name> FAIL <what>" and exits 1.
 * The same static binaries run in the guest and natively on the host. */
#ifndef BTVISOR_BENCH_H
#define BTVISOR_BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *bench_name;

static inline unsigned long long bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static inline void bench_fail(const char *what)
{
    printf("bench %s FAIL %s: %s\n", bench_name, what, strerror(errno));
    fflush(stdout);
    exit(1);
}

/* OPS from argv[1] (a positive count), else the default. */
static inline long bench_ops(int argc, char **argv, const char *name, long dflt)
{
    bench_name = name;
    if (argc < 2)
        return dflt;
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end != '\0' || n <= 0) {
        errno = EINVAL;
        bench_fail("usage: NAME [OPS]");
    }
    return n;
}

static inline void bench_report(long ops, unsigned long long t0, unsigned long long t1)
{
    printf("bench %s %ld %llu\n", bench_name, ops, t1 - t0);
    fflush(stdout);
}

#endif
