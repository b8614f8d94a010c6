/*
 * forkexec: a static guest program that exercises the process and memory machinery a Linux
 * guest needs from the monitor: fork (copy-on-write page tables), execve, wait, exit status,
 * anonymous demand-zero memory, a shared file mapping written back with msync, and a pipe.
 *
 * Built on the host by scripts/fetch-guest.sh (gcc -O2 -static) and installed in the guest
 * initramfs as /bin/forkexec. Runs unchanged on the host, which is how its expected output is
 * checked. Prints exactly "forkexec: ok" and exits 0, or "forkexec: FAIL <what>" and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noreturn)) static void vfail(int err, const char *fmt, va_list ap)
{
    fputs("forkexec: FAIL ", stdout);
    vprintf(fmt, ap);
    if (err)
        printf(" (errno %d: %s)", err, strerror(err));
    putchar('\n');
    fflush(stdout);
    exit(1);
}

/* A check failed. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(0, fmt, ap);
}

/* A system call failed: also reports errno. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail_sys(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vfail(err, fmt, ap);
}

/* Waits for pid and returns its wait status; fails on anything but a normal wait. */
static int wait_for(pid_t pid, const char *what)
{
    int status;
    pid_t r;
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid)
        fail_sys("waitpid %s returned %d", what, (int)r);
    return status;
}

static void check_fork_exec(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_sys("fork (exec child)");
    if (pid == 0) {
        char *const argv[] = { "true", NULL };
        char *const envp[] = { "PATH=/bin:/usr/bin", NULL };
        execve("/bin/true", argv, envp);
        _exit(127); /* exec failed */
    }
    int status = wait_for(pid, "exec child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("exec /bin/true: wait status 0x%x", status);
}

static void check_exit_status(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_sys("fork (exit child)");
    if (pid == 0)
        _exit(42);
    int status = wait_for(pid, "exit child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
        fail("child exit 42: wait status 0x%x", status);
}

static void check_anon_mmap(void)
{
    const size_t len = 8u << 20;
    const long page = sysconf(_SC_PAGESIZE);
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail_sys("mmap anonymous %zu bytes", len);
    /* Fresh anonymous memory reads as zero. */
    for (size_t off = 0; off < len; off += (size_t)page)
        if (p[off] != 0 || p[off + (size_t)page - 1] != 0)
            fail("anonymous page at +0x%zx not zero", off);
    /* Touch every page with a pattern that differs per page and per word, then read it back. */
    for (size_t off = 0; off < len; off += sizeof(uint64_t))
        *(uint64_t *)(p + off) = (uint64_t)off * 0x9E3779B97F4A7C15ull;
    for (size_t off = 0; off < len; off += sizeof(uint64_t))
        if (*(uint64_t *)(p + off) != (uint64_t)off * 0x9E3779B97F4A7C15ull)
            fail("anonymous memory at +0x%zx reads back wrong", off);
    /* A forked child sees the parent's contents (copy-on-write) and its writes stay private. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_sys("fork (cow child)");
    if (pid == 0) {
        for (size_t off = 0; off < len; off += (size_t)page) {
            if (*(uint64_t *)(p + off) != (uint64_t)off * 0x9E3779B97F4A7C15ull)
                _exit(2);
            *(uint64_t *)(p + off) = 0;
        }
        _exit(0);
    }
    int status = wait_for(pid, "cow child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("child reading parent memory after fork: wait status 0x%x", status);
    for (size_t off = 0; off < len; off += (size_t)page)
        if (*(uint64_t *)(p + off) != (uint64_t)off * 0x9E3779B97F4A7C15ull)
            fail("child's write after fork visible in parent at +0x%zx", off);
    if (munmap(p, len) != 0)
        fail_sys("munmap anonymous");
}

static void check_file_mmap(void)
{
    char path[64];
    const size_t len = 3 * 4096 + 100; /* not a whole number of pages */
    char *buf = malloc(len);
    char *back = malloc(len);
    if (!buf || !back)
        fail_sys("malloc");
    snprintf(path, sizeof path, "/tmp/forkexec.%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        fail_sys("open %s", path);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + i % 26);
    if (write(fd, buf, len) != (ssize_t)len)
        fail_sys("write %s", path);
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        fail_sys("mmap MAP_SHARED %s", path);
    if (memcmp(m, buf, len) != 0)
        fail("file mapping does not show the written data");
    /* Modify through the mapping: one byte in each page and the last byte of the file. */
    for (size_t i = 0; i < len; i += 4096) {
        m[i] = 'X';
        buf[i] = 'X';
    }
    m[len - 1] = 'Z';
    buf[len - 1] = 'Z';
    if (msync(m, len, MS_SYNC) != 0)
        fail_sys("msync");
    if (lseek(fd, 0, SEEK_SET) != 0)
        fail_sys("lseek");
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, back + got, len - got);
        if (r <= 0)
            fail_sys("read back %s after %zu bytes", path, got);
        got += (size_t)r;
    }
    if (memcmp(back, buf, len) != 0)
        fail("read() does not see writes made through MAP_SHARED mapping");
    if (munmap(m, len) != 0)
        fail_sys("munmap file");
    close(fd);
    unlink(path);
    free(buf);
    free(back);
}

static void check_pipe(void)
{
    static const char msg[] = "hello from the child through a pipe";
    char got[sizeof msg];
    int fds[2];
    if (pipe(fds) != 0)
        fail_sys("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_sys("fork (pipe child)");
    if (pid == 0) {
        close(fds[0]);
        if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(3);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fds[0], got + n, sizeof got - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail_sys("read pipe");
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == sizeof got)
            break;
    }
    close(fds[0]);
    int status = wait_for(pid, "pipe child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("pipe child: wait status 0x%x", status);
    if (n != sizeof msg || memcmp(got, msg, sizeof msg) != 0)
        fail("pipe message: got %zu bytes, expected %zu", n, sizeof msg);
}

int main(void)
{
    check_fork_exec();
    check_exit_status();
    check_anon_mmap();
    check_file_mmap();
    check_pipe();
    puts("forkexec: ok");
    return 0;
}
