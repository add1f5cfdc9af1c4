#define _GNU_SOURCE
#include "CVigil.h"
#include <sched.h>
#include <sys/syscall.h>
#include <errno.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int cvigil_pidfd_open(pid_t pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int cvigil_pidfd_send_signal(int pidfd, int sig, unsigned int flags) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

int cvigil_waitid_pidfd(int pidfd, int options, pid_t *pid, int *code, int *status) {
    siginfo_t info = {0};
    int r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, options);
    if (r == 0) {
        *pid = info.si_pid;
        *code = info.si_code;
        *status = info.si_status;
    }
    return r;
}

int cvigil_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

pid_t cvigil_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int cvigil_tgkill(pid_t tgid, pid_t tid, int sig) {
    return (int)syscall(SYS_tgkill, tgid, tid, sig);
}

int cvigil_sigqueue_u64(pid_t pid, int sig, uint64_t value) {
    union sigval v;
    v.sival_ptr = (void *)(uintptr_t)value;
    return sigqueue(pid, sig, v);
}

int cvigil_set_affinity(pid_t pid, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(pid, sizeof set, &set) == 0 ? 0 : -errno;
}

int cvigil_get_affinity(pid_t pid, int *cpus, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(pid, sizeof set, &set) != 0) return -errno;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set)) cpus[n++] = c;
    return n;
}

/* ---- io_uring ---- */
#include <liburing.h>
#include <sched.h>
#include <stdlib.h>

struct cvigil_ring { struct io_uring ring; };

int cvigil_ring_create(unsigned entries, int eventfd, cvigil_ring **out) {
    cvigil_ring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    int e = io_uring_queue_init(entries, &r->ring, 0);
    if (e < 0) { free(r); return e; }
    e = io_uring_register_eventfd(&r->ring, eventfd);
    if (e < 0) { io_uring_queue_exit(&r->ring); free(r); return e; }
    *out = r;
    return 0;
}

void cvigil_ring_destroy(cvigil_ring *r) {
    io_uring_queue_exit(&r->ring);
    free(r);
}

unsigned cvigil_ring_sq_space_left(cvigil_ring *r) { return io_uring_sq_space_left(&r->ring); }

static struct io_uring_sqe *sqe_for(cvigil_ring *r) { return io_uring_get_sqe(&r->ring); }

static void finish(struct io_uring_sqe *sqe, uint64_t user_data, int link) {
    io_uring_sqe_set_data64(sqe, user_data);
    if (link) sqe->flags |= IOSQE_IO_LINK;
}

int cvigil_ring_prep_write(cvigil_ring *r, int fd, const void *buf, unsigned len, uint64_t off, uint64_t ud, int link) {
    struct io_uring_sqe *sqe = sqe_for(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_write(sqe, fd, buf, len, off);
    finish(sqe, ud, link);
    return 0;
}

int cvigil_ring_prep_read(cvigil_ring *r, int fd, void *buf, unsigned len, uint64_t off, uint64_t ud, int link) {
    struct io_uring_sqe *sqe = sqe_for(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, fd, buf, len, off);
    finish(sqe, ud, link);
    return 0;
}

int cvigil_ring_prep_fsync(cvigil_ring *r, int fd, int datasync, uint64_t ud, int link) {
    struct io_uring_sqe *sqe = sqe_for(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    finish(sqe, ud, link);
    return 0;
}

int cvigil_ring_submit(cvigil_ring *r) { return io_uring_submit(&r->ring); }

int cvigil_ring_peek(cvigil_ring *r, uint64_t *user_data, int32_t *res) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(&r->ring, &cqe) != 0 || !cqe) return 0;
    *user_data = cqe->user_data;
    *res = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 1;
}

int cvigil_ring_set_iowq_max_workers(cvigil_ring *r, unsigned *bounded, unsigned *unbounded) {
    unsigned v[2] = { *bounded, *unbounded };
    int e = io_uring_register_iowq_max_workers(&r->ring, v);
    if (e < 0) return e;
    *bounded = v[0];
    *unbounded = v[1];
    return 0;
}

int cvigil_ring_set_iowq_affinity(cvigil_ring *r, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    return io_uring_register_iowq_aff(&r->ring, sizeof set, &set);
}

int cvigil_thread_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -errno;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < capacity; c++) if (CPU_ISSET(c, &set)) cpus[n++] = c;
    return n;
}

int cvigil_thread_set_cpus(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : -errno;
}

int cvigil_ring_wait(cvigil_ring *r) {
    struct io_uring_cqe *cqe = NULL;
    return io_uring_wait_cqe(&r->ring, &cqe);
}

/* ---- children ---- */
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

extern char **environ;

pid_t cvigil_spawn(const char *file, char *const argv[], int in_fd, int out_fd, int err_fd, int pdeathsig) {
    return cvigil_spawn_env(file, argv, NULL, in_fd, out_fd, err_fd, pdeathsig);
}

pid_t cvigil_spawn_env(const char *file, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, int pdeathsig) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]); close(report[1]);
        return -e;
    }
    if (pid == 0) {
        /* Child of a fork: async-signal-safe calls only up to the exec (a
         * lock another thread held at the fork stays held here). execvp is
         * the one exception POSIX does not bless: with a bare name it
         * searches PATH, which glibc does in stack buffers, without malloc;
         * callers that can pass a path with a slash (the exec agent's
         * /bin/sh) skip the search. Default dispositions first, then the
         * empty mask, so no inherited handler can run in between. */
        for (int s = 1; s < NSIG; s++) {
            if (s == SIGKILL || s == SIGSTOP) continue;
            signal(s, SIG_DFL);
        }
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        /* Its own process group: the daemon signals the whole group (a
         * shell's pipelines and background jobs too), and a terminal's
         * Ctrl-C meant for the daemon does not reach the children. */
        setpgid(0, 0);
        if (pdeathsig > 0) {
            prctl(PR_SET_PDEATHSIG, pdeathsig);
            if (getppid() != parent) _exit(127); /* parent already gone */
        }
        /* Move the stdio descriptors above 2 before placing them, so none
         * is clobbered by another's dup2 (a daemon started with stdin
         * closed gets pipes on 0 and 1). The copies are close-on-exec;
         * dup2 onto 0, 1 and 2 makes the child's stdio survive the exec. */
        int fds[3] = { in_fd, out_fd, err_fd };
        for (int i = 0; i < 3; i++) {
            if (fds[i] >= 0 && (fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0) goto fail;
        }
        for (int i = 0; i < 3; i++) {
            if (fds[i] >= 0 && dup2(fds[i], i) < 0) goto fail;
        }
        if (envp) execvpe(file, argv, envp); else execvp(file, argv);
    fail:;
        int e = errno;
        ssize_t w = write(report[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(report[1]);
    int child_errno = 0;
    ssize_t n;
    do { n = read(report[0], &child_errno, sizeof child_errno); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        return -child_errno;
    }
    return pid;
}

int cvigil_pipe_nonblocking(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int cvigil_peer_uid(int fd, uid_t *uid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *uid = cred.uid;
    return 0;
}

int cvigil_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0 : -errno;
}

#include <fcntl.h>
#include <sys/mman.h>

int cvigil_memfd_create(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return fd < 0 ? -errno : fd;
}

int cvigil_memfd_seal(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0 ? -errno : 0;
}

int cvigil_memfd_is_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return -errno;
    int all = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    return (seals & all) == all ? 1 : 0;
}

#include <string.h>
#include <sys/socket.h>

int cvigil_send_fds(int sock, const int *fds, unsigned n) {
    if (n == 0 || n > 253) return -EINVAL;
    char byte = 'F';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    ssize_t r;
    do { r = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int cvigil_recv_fds(int sock, int *fds, unsigned max) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(253 * sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    ssize_t r;
    do { r = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    unsigned got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (unsigned i = 0; i < k; i++) {
            if (got < max) fds[got++] = in[i];
            else close(in[i]);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        for (unsigned i = 0; i < got; i++) close(fds[i]);
        return -EMSGSIZE;
    }
    return (int)got;
}
