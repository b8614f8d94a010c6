/* Syscall round trip: getpid through syscall(2), so no libc caching can skip the kernel. */
#include "bench.h"
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long ops = bench_ops(argc, argv, "getpid", 100000);
    long pid = syscall(SYS_getpid);
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        if (syscall(SYS_getpid) != pid)
            bench_fail("getpid changed");
    }
    unsigned long long t1 = bench_now_ns();
    bench_report(ops, t0, t1);
    return 0;
}
