// CVigil: the thin C layer under Vigil. It exposes the kernel and library
// headers Swift imports directly (epoll, signalfd, timerfd, eventfd, liburing,
// sd-daemon, sd-bus, sd-journal, sd-login) and wraps only what Swift cannot
// call cleanly: syscalls glibc does not wrap, accept4 (needs _GNU_SOURCE, which must stay out of this
// header: it breaks the Glibc module's fd_set), and siginfo_t's union fields.
#ifndef CVIGIL_H
#define CVIGIL_H

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <systemd/sd-login.h>
#include <sys/uio.h>

// pidfd (Linux 5.3+): glibc 2.36 has wrappers, older ones do not; go direct.
int cvigil_pidfd_open(pid_t pid, unsigned int flags);
int cvigil_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
// waitid(P_PIDFD, pidfd, ...): reaps the child; fills pid/status/code.
int cvigil_waitid_pidfd(int pidfd, int options, pid_t *pid, int *code, int *status);

// fork + exec for daemon children: the child gets default dispositions, an
// empty signal mask, a process group of its own (pgid = pid), the given
// stdio, and PR_SET_PDEATHSIG(pdeathsig) so it dies with vigild even when
// vigild is SIGKILLed (posix_spawn cannot set it). Exec failures are
// reported through a close-on-exec pipe. Returns the pid, or -errno.
pid_t cvigil_spawn(const char *file, char *const argv[], int in_fd, int out_fd, int err_fd, int pdeathsig);
// The same with the child's whole environment given (NULL: inherit ours):
// execvpe, so the PATH search uses our PATH (as a shell would).
pid_t cvigil_spawn_env(const char *file, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, int pdeathsig);
// PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to us (prctl is variadic). 0 or -errno.
int cvigil_set_child_subreaper(void);
// pipe2(O_CLOEXEC | O_NONBLOCK).
int cvigil_pipe_nonblocking(int fds[2]);
// The peer's uid on a Unix stream socket (SO_PEERCRED); -1 on error.
int cvigil_peer_uid(int fd, uid_t *uid);

int cvigil_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
pid_t cvigil_gettid(void);
int cvigil_tgkill(pid_t tgid, pid_t tid, int sig);
// sigqueue with a 64-bit payload: benchmarks stamp the send time into it.
int cvigil_sigqueue_u64(pid_t pid, int sig, uint64_t value);
// sched_setaffinity to the given CPUs (pid 0: the calling thread); the
// cpu_set_t macros and the call itself need _GNU_SOURCE. 0 or -errno.
int cvigil_set_affinity(pid_t pid, const int *cpus, int count);
// The CPUs `pid` may run on (0: the calling thread), up to `max` of them,
// ascending. Their count or -errno.
int cvigil_get_affinity(pid_t pid, int *cpus, int max);

// io_uring through liburing, behind an opaque handle. Functions returning
// int follow liburing: >= 0 success, -errno failure.
typedef struct cvigil_ring cvigil_ring;
// Sets up a ring of `entries` and registers `eventfd` for its completions.
int cvigil_ring_create(unsigned entries, int eventfd, cvigil_ring **out);
void cvigil_ring_destroy(cvigil_ring *ring);
unsigned cvigil_ring_sq_space_left(cvigil_ring *ring);
// Queue one SQE; 0 on success, -EBUSY when the SQ is full. `link` chains it
// to the next SQE (IOSQE_IO_LINK).
int cvigil_ring_prep_write(cvigil_ring *ring, int fd, const void *buf, unsigned len, uint64_t offset, uint64_t user_data, int link);
int cvigil_ring_prep_read(cvigil_ring *ring, int fd, void *buf, unsigned len, uint64_t offset, uint64_t user_data, int link);
int cvigil_ring_prep_fsync(cvigil_ring *ring, int fd, int datasync, uint64_t user_data, int link);
int cvigil_ring_submit(cvigil_ring *ring);
// Takes one completion if any is waiting: 1 and fills the outputs, 0 if none.
int cvigil_ring_peek(cvigil_ring *ring, uint64_t *user_data, int32_t *res);
// Blocks until a completion is waiting (used only when closing the ring).
int cvigil_ring_wait(cvigil_ring *ring);
// io_uring_register_iowq_max_workers: caps the ring's io-wq worker threads
// ([0] bounded: regular-file I/O, [1] unbounded); 0 leaves a cap unchanged.
// The previous caps are returned in place.
int cvigil_ring_set_iowq_max_workers(cvigil_ring *ring, unsigned *bounded, unsigned *unbounded);
// io_uring_register_iowq_aff: the CPUs the ring's io-wq workers may run on
// (must lie within the task's cpuset, else -EINVAL).
int cvigil_ring_set_iowq_affinity(cvigil_ring *ring, const int *cpus, int count);
// The calling thread's CPU affinity (sched_getaffinity) as CPU numbers:
// how many were written, or -errno.
int cvigil_thread_cpus(int *cpus, int capacity);
// Pins the calling thread to `cpus` (sched_setaffinity): 0 or -errno.
int cvigil_thread_set_cpus(const int *cpus, int count);

// memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING) (needs _GNU_SOURCE); -errno on error.
int cvigil_memfd_create(const char *name);
// Seals a memfd against any further change (shrink, grow, write, seal).
int cvigil_memfd_seal(int fd);
// Whether fd is a memfd whose contents can no longer change (all seals set): 1, 0, or -errno.
int cvigil_memfd_is_sealed(int fd);

// One datagram carrying n (at most 253) descriptors (SCM_RIGHTS) and no
// payload but a byte: 0, or -errno.
int cvigil_send_fds(int sock, const int *fds, unsigned n);
// Receives one such datagram without blocking (MSG_CMSG_CLOEXEC): the number
// of descriptors stored in fds (at most max), -EAGAIN when the queue is
// empty, -EMSGSIZE when descriptors were cut off (MSG_CTRUNC), or -errno.
int cvigil_recv_fds(int sock, int *fds, unsigned max);

#endif
