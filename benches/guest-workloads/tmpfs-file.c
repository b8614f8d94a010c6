/* File-system calls on tmpfs: one operation creates a file, writes 4 KiB, closes it, opens it
 * again, reads it back, closes and unlinks it. The directory is argv[2] (default /tmp, a tmpfs
 * in the guest; `btvisor bench` passes /dev/shm on the host). */
#include "bench.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long ops = bench_ops(argc > 2 ? 2 : argc, argv, "tmpfs-file", 2000);
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char path[4096], buf[4096], back[4096];
    snprintf(path, sizeof path, "%s/btvisor-bench.%ld", dir, (long)getpid());
    for (int i = 0; i < (int)sizeof buf; i++)
        buf[i] = (char)(i * 7);
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0)
            bench_fail("open for writing");
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            bench_fail("write");
        if (close(fd) != 0)
            bench_fail("close");
        fd = open(path, O_RDONLY);
        if (fd < 0)
            bench_fail("open for reading");
        if (read(fd, back, sizeof back) != (ssize_t)sizeof back)
            bench_fail("read");
        if (close(fd) != 0)
            bench_fail("close");
        if (unlink(path) != 0)
            bench_fail("unlink");
    }
    unsigned long long t1 = bench_now_ns();
    if (memcmp(buf, back, sizeof buf) != 0) {
        errno = 0;
        bench_fail("read back different data");
    }
    bench_report(ops, t0, t1);
    return 0;
}
