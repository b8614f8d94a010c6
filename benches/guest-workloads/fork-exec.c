/* fork + exec + exit + wait: the child execs this same static binary (through /proc/self/exe)
 * with the argument "child", which exits at once. */
#include "bench.h"
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "child") == 0)
        return 0;
    long ops = bench_ops(argc, argv, "fork-exec", 200);
    unsigned long long t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        pid_t pid = fork();
        if (pid < 0)
            bench_fail("fork");
        if (pid == 0) {
            execl("/proc/self/exe", "forkexec", "child", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid)
            bench_fail("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            errno = 0;
            bench_fail("exec of /proc/self/exe");
        }
    }
    unsigned long long t1 = bench_now_ns();
    bench_report(ops, t0, t1);
    return 0;
}
