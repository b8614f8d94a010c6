/* CPU-bound user code, no system calls: one operation is a sieve of Eratosthenes up to 65536
 * followed by an FNV-1a hash of the sieve (loads, stores, compare-and-branch, multiplies). */
#include "bench.h"
#include <stdint.h>

#define N 65536

static unsigned char composite[N];

static uint64_t sieve_hash(void)
{
    memset(composite, 0, sizeof composite);
    for (uint32_t i = 2; i * i < N; i++) {
        if (!composite[i]) {
            for (uint32_t j = i * i; j < N; j += i)
                composite[j] = 1;
        }
    }
    uint64_t h = 0xcbf29ce484222325ull;
    uint32_t primes = 0;
    for (uint32_t i = 2; i < N; i++) {
        if (!composite[i]) {
            primes++;
            h = (h ^ i) * 0x100000001b3ull;
        }
    }
    return h ^ primes;
}

int main(int argc, char **argv)
{
    long ops = bench_ops(argc, argv, "compute", 200);
    uint64_t first = sieve_hash(); /* warm up, and the value every later pass must give */
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        if (sieve_hash() != first) {
            errno = 0;
            bench_fail("sieve result changed");
        }
    }
    unsigned long long t1 = bench_now_ns();
    bench_report(ops, t0, t1);
    return 0;
}
