#!/usr/bin/env bash
# Signal latency and idle memory of vigild.
#
#   scripts/bench-signal.sh [--count N] [--interval-ms MS] [--idle-connections N] [--skip-build]
#
# 1. Signal latency: vigild runs with VIGIL_DEBUG_SIGNAL_LATENCY=1 pinned to
#    core 1; `vigil-bench signal` (core 0) sends N SIGUSR1 by sigqueue, each
#    carrying CLOCK_MONOTONIC at sending; vigild's handler prints, as its
#    first action, `signal-latency-ns SIGUSR1 <now - payload>` on stderr.
#    Once idle, once while `vigil-bench ping` (core 0, 256 × 16) loads it.
#    The same is done against a C reference receiver built from this script
#    (epoll + signalfd + a ping-answering listener, ~ floor-echo), which gives
#    the machine's own floor in the same run.
# 2. Memory: vigild's VmRSS when idle, then with N idle connections held by a
#    python3 client; reports (RSS_with - RSS_idle) / N.
# Results: markdown on stdout; progress and raw lines on stderr. See
# docs/benchmarks.md. Standard signals do not queue: a SIGUSR1 sent while the
# previous one is still pending is merged into it, hence "received".
set -euo pipefail

count=1000
interval_ms=2
idle_connections=10000
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count="$2"; shift 2 ;;
        --interval-ms) interval_ms="$2"; shift 2 ;;
        --idle-connections) idle_connections="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-signal.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bin="$scratch/release"
work="$(mktemp -d /tmp/vigil-bench-signal.XXXXXX)"
cref="$work/signal-floor"
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-signal: $*" >&2; }

# Both vigild and the python client hold one descriptor per idle connection.
wanted_fds=$((idle_connections + 1000))
if ! ulimit -n 65536 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "note: cannot raise the open-files limit to 65536 (hard limit $(ulimit -Hn)); using $(ulimit -n)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$wanted_fds" ]; then
    log "open-files limit $(ulimit -n) is too low for $idle_connections idle connections"
    exit 1
fi

if [ "$build" = 1 ]; then
    log "building vigild and vigil-bench (release, $scratch)"
    swift build -c release --scratch-path "$scratch" --product vigild >&2
    swift build -c release --scratch-path "$scratch" --product vigil-bench >&2
fi

# The C reference receiver: the same measurement, nothing but C and syscalls.
cat >"$work/signal-floor.c" <<'EOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One reply line per request line, replies of one read in one write. */
static const char PONG[] = "{\"op\":\"pong\"}\n";
#define L (sizeof PONG - 1)
static char pongs[(64 * 1024 / L) * L], buf[64 * 1024];
struct conn { int fd; size_t owed; int want_out; };
static int ep;

static uint64_t now_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
static void drop(struct conn *c) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); free(c); }
static int flush(struct conn *c) {
    while (c->owed > 0) {
        size_t start = (L - c->owed % L) % L;   /* resume inside a line */
        size_t n = c->owed < sizeof pongs - start ? c->owed : sizeof pongs - start;
        ssize_t k = write(c->fd, pongs + start, n);
        if (k > 0) { c->owed -= (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) break;
        drop(c); return -1;
    }
    int want = c->owed > 0;
    if (want != c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); c->want_out = want;
    }
    return 0;
}
int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "--listen")) { fprintf(stderr, "usage: signal-floor --listen 127.0.0.1:PORT\n"); return 2; }
    for (size_t i = 0; i < sizeof pongs; i += L) memcpy(pongs + i, PONG, L);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1); sigaddset(&set, SIGTERM); sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(argv[2], ':') + 1)) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) { perror("listen"); return 1; }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &sfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    ev.data.ptr = &lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("ready\n"); fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {             /* signals first, as in vigild */
            if (evs[i].data.ptr != &sfd) continue;
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                uint64_t t = now_ns();
                if (si.ssi_signo != SIGUSR1) return 0;
                fprintf(stderr, "signal-latency-ns SIGUSR1 %llu\n",
                        (unsigned long long)(si.ssi_ptr && si.ssi_ptr <= t ? t - si.ssi_ptr : 0));
            }
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &sfd) continue;
            if (p == &lfd) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c); c->fd = fd;
                    struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            struct conn *c = p;
            if (evs[i].events & EPOLLOUT) { if (flush(c)) continue; }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t k = read(c->fd, buf, sizeof buf);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) { drop(c); continue; }
            for (ssize_t j = 0; j < k; j++) if (buf[j] == '\n') c->owed += L;
            flush(c);
        }
    }
}
EOF
gcc -O2 -o "$cref" "$work/signal-floor.c"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {  # port pid
    local i
    for i in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || { log "receiver exited before accepting"; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "127.0.0.1:$1 does not accept connections after 10 s"
    return 1
}

start_receiver() {  # name port errfile → sets rpid
    case "$1" in
        vigild)
            mkdir -p "$work/state"
            VIGIL_DEBUG_SIGNAL_LATENCY=1 VIGIL_LOG_LEVEL=notice taskset -c 1 "$bin/vigild" \
                --listen "127.0.0.1:$2" --state-dir "$work/state" >/dev/null 2>"$3" & ;;
        cfloor)
            taskset -c 1 "$cref" --listen "127.0.0.1:$2" >/dev/null 2>"$3" & ;;
    esac
    rpid=$!
    pids+=("$rpid")
    wait_for_port "$2" "$rpid"
}

stop_receiver() {
    kill -TERM "$rpid"
    wait "$rpid" || log "warning: receiver exited with status $? after SIGTERM"
}

latencies() { grep '^signal-latency-ns SIGUSR1 ' "$1" | awk '{ print $3 }'; }

# n median p99 max (µs) of the nanosecond values on stdin; nearest rank.
stats() {
    sort -n | awk '
        { a[NR] = $1 }
        function rank(q,  r) { r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; return a[r] }
        END {
            if (NR == 0) { print "0 - - -"; exit }
            printf "%d %.1f %.1f %.1f\n", NR, rank(0.5) / 1000, rank(0.99) / 1000, a[NR] / 1000
        }'
}

send_signals() {  # pid
    taskset -c 0 "$bin/vigil-bench" signal --pid "$1" --signal USR1 --count "$count" --interval-ms "$interval_ms" >&2
    sleep 0.2  # let the last handler print
}

# Sends the signals idle, then under ping load; fills idle_<name>, load_<name>, rate_<name>.
measure_signals() {  # name
    local name="$1" port err before
    port=$(free_port)
    err="$work/$name.err"
    log "$name: receiver on 127.0.0.1:$port (core 1); signals from core 0"
    start_receiver "$name" "$port" "$err"
    send_signals "$rpid"
    latencies "$err" >"$work/$name.idle"
    before=$(wc -l <"$work/$name.idle")

    local send_s load_s pingpid
    send_s=$(awk -v c="$count" -v i="$interval_ms" 'BEGIN { printf "%.1f", c * i / 1000 }')
    load_s=$(awk -v s="$send_s" 'BEGIN { printf "%.1f", s + 2 }')
    log "$name: same again under vigil-bench ping 256×16 (core 0) for ${load_s}s"
    taskset -c 0 "$bin/vigil-bench" ping --connect "127.0.0.1:$port" --connections 256 --depth 16 \
        --duration "$load_s" --warmup 0.5 --server-pid "$rpid" >"$work/$name.ping" &
    pingpid=$!
    pids+=("$pingpid")
    sleep 1
    send_signals "$rpid"
    wait "$pingpid"
    cat "$work/$name.ping" >&2
    latencies "$err" | tail -n +"$((before + 1))" >"$work/$name.load"
    stop_receiver
    idle[$name]=$(stats <"$work/$name.idle")
    load[$name]=$(stats <"$work/$name.load")
    rate[$name]=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$work/$name.ping")
    rcpu[$name]=$(sed -n 's/.* server_cpu=\([0-9.]*\).*/\1/p' "$work/$name.ping")
    other[$name]=$(sed -n 's/.* other_cpu=\([0-9.]*\).*/\1/p' "$work/$name.ping")
}

vm_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
open_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

measure_memory() {
    local port err client cpid base want i
    port=$(free_port)
    err="$work/rss.err"
    log "vigild: idle RSS, then with $idle_connections idle connections"
    start_receiver vigild "$port" "$err"
    sleep 0.5
    rss_idle=$(vm_rss_kb "$rpid")
    base=$(open_fds "$rpid")
    cat >"$work/idle-client.py" <<'EOF'
import signal, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print(len(held), flush=True)
signal.pause()
EOF
    taskset -c 0 python3 "$work/idle-client.py" "$port" "$idle_connections" >"$work/client.out" &
    cpid=$!
    pids+=("$cpid")
    want=$((base + idle_connections))
    for i in $(seq 1 600); do
        [ "$(open_fds "$rpid")" -ge "$want" ] && break
        kill -0 "$cpid" 2>/dev/null || { log "idle client failed"; return 1; }
        sleep 0.1
    done
    if [ "$(open_fds "$rpid")" -lt "$want" ]; then log "vigild holds only $(open_fds "$rpid") descriptors (expected $want)"; return 1; fi
    sleep 1
    rss_with=$(vm_rss_kb "$rpid")
    kill -TERM "$cpid"; wait "$cpid" 2>/dev/null || true
    stop_receiver
}

declare -A idle load rate rcpu other
log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
measure_signals cfloor
measure_signals vigild
measure_memory
log "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"

row() {  # label stats
    local n p50 p99 max
    read -r n p50 p99 max <<<"$2"
    echo "| $1 | $n / $count | $p50 | $p99 | $max |"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
med() { awk '{ print $2 }' <<<"$1"; }

echo
echo "signal latency: $(nproc) cores, kernel $(uname -r), $count × SIGUSR1 every ${interval_ms} ms (sigqueue → handler), receiver on core 1, sender and load on core 0"
echo
echo "| receiver, condition | received / sent | median µs | p99 µs | max µs |"
echo "|---|---:|---:|---:|---:|"
row "C reference, idle" "${idle[cfloor]}"
row "vigild, idle" "${idle[vigild]}"
row "C reference, under ping 256×16 (${rate[cfloor]:-?} round trips/s, receiver CPU ${rcpu[cfloor]:-?}, other ${other[cfloor]:-?})" "${load[cfloor]}"
row "vigild, under ping 256×16 (${rate[vigild]:-?} round trips/s, receiver CPU ${rcpu[vigild]:-?}, other ${other[vigild]:-?})" "${load[vigild]}"
echo
echo "vigild / C median: idle $(ratio "$(med "${idle[vigild]}")" "$(med "${idle[cfloor]}")"), under load $(ratio "$(med "${load[vigild]}")" "$(med "${load[cfloor]}")")"
echo
per_conn=$(awk -v a="$rss_idle" -v b="$rss_with" -v n="$idle_connections" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
echo "| vigild memory | value |"
echo "|---|---:|"
echo "| idle VmRSS | $rss_idle KiB |"
echo "| VmRSS with $idle_connections idle connections | $rss_with KiB |"
echo "| RSS per idle connection | $per_conn bytes |"
