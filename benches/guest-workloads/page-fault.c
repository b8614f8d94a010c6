/* Demand paging: map anonymous memory, write one byte per 4 KiB page (one page fault each:
 * transparent huge pages are turned off for the range), unmap; OPS pages in chunks of 4 MiB. */
#include "bench.h"
#include <sys/mman.h>

#define PAGE 4096l
#define CHUNK_PAGES 1024l

int main(int argc, char **argv)
{
    long ops = bench_ops(argc, argv, "page-fault", 20000);
    long done = 0;
    unsigned long long t0 = bench_now_ns();
    while (done < ops) {
        long n = ops - done < CHUNK_PAGES ? ops - done : CHUNK_PAGES;
        char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            bench_fail("mmap");
        madvise(p, n * PAGE, MADV_NOHUGEPAGE); /* may be unsupported: then pages are 4 KiB anyway */
        for (long i = 0; i < n; i++)
            ((volatile char *)p)[i * PAGE] = (char)i;
        if (munmap(p, n * PAGE) != 0)
            bench_fail("munmap");
        done += n;
    }
    unsigned long long t1 = bench_now_ns();
    bench_report(ops, t0, t1);
    return 0;
}
