/* Pipe ping-pong between two processes: one byte each way per operation (two context
 * switches and four pipe syscalls). */
#include "bench.h"
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long ops = bench_ops(argc, argv, "pipe-pingpong", 10000);
    int ping[2], pong[2];
    if (pipe(ping) != 0 || pipe(pong) != 0)
        bench_fail("pipe");
    pid_t pid = fork();
    if (pid < 0)
        bench_fail("fork");
    char c = 0;
    if (pid == 0) {
        for (long i = 0; i < ops; i++) {
            if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        c = (char)i;
        if (write(ping[1], &c, 1) != 1)
            bench_fail("write");
        if (read(pong[0], &c, 1) != 1)
            bench_fail("read");
        if (c != (char)i) {
            errno = 0;
            bench_fail("wrong byte back");
        }
    }
    unsigned long long t1 = bench_now_ns();
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_fail("child");
    bench_report(ops, t0, t1);
    return 0;
}
