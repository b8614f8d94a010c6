/* Process creation and teardown: fork, the child _exit(0)s at once, the parent waits. */
#include "bench.h"
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long ops = bench_ops(argc, argv, "fork-exit-wait", 1000);
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        pid_t pid = fork();
        if (pid < 0)
            bench_fail("fork");
        if (pid == 0)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) != pid)
            bench_fail("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bench_fail("child status");
    }
    unsigned long long t1 = bench_now_ns();
    bench_report(ops, t0, t1);
    return 0;
}
