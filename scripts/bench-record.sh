#!/usr/bin/env bash
# The in-place shutdown record (docs/shutdown.md), measured in one run:
#
# 1. The floor: one pwrite of a block into a preallocated file and one
#    fdatasync, timed alone by a small C program built by this script, in a
#    directory on the same file system as vigild's state directory, each
#    after --gap-ms (300) of quiet like vigild's single write after its
#    start (back-to-back flushes measure several times faster on this VM's disk).
#    512- and 4096-byte writes alternate, with the page cached ("warm") and
#    evicted first with posix_fadvise(DONTNEED) ("cold": a 512-byte write
#    into an uncached 4 KiB page must read it first). Run before and after
#    step 2.
# 2. SIGTERM → record, from vigild's own timestamps: vigild runs with
#    VIGIL_DEBUG_SIGNAL_LATENCY=1 pinned to core 1; `vigil-bench signal
#    --signal TERM --count 1` stamps CLOCK_MONOTONIC into the sigqueue
#    payload; vigild prints signal-visible-ns (its pwrite returned: safe from
#    SIGKILL) and signal-durable-ns (its fdatasync returned). One SIGTERM per
#    start, the state directory kept (the record file exists, as in
#    production; one uncounted start creates it), idle and under each load
#    from core 0:
#      ping:  vigil-bench ping --connections 64 --depth 16
#      turns: vigil-bench turns --sessions 64 (journal group commits in flight)
#
#   scripts/bench-record.sh [--trials N] [--writes N] [--gap-ms MS] [--loads "idle ping turns"] [--skip-build]
#                           [--binaries "NAME=PATH NAME=PATH …"] [--vigil-run [PATH]] [--bin DIR]
#
# --bin DIR takes vigild, vigil and vigil-bench from DIR (e.g. .build/release,
# after `swift build -c release`) instead of building into .build-bench.
#
# --binaries compares vigild builds (e.g. io_uring worker policies): their
# trials alternate, one start each in turn, so they share the disturbances;
# each gets its own state directory per load.
#
# --vigil-run adds `vigil run` (PATH, default the release build's vigil) to
# the alternation: `VIGIL_DEBUG_SIGNAL_LATENCY=1 vigil run --state-dir DIR
# -- sleep infinity` on core 1, the same SIGTERM, the same three stamps (the
# entry point's onStoppingRecorded hook, as vigild's). It has no ping or
# turn protocol: under the ping and turns loads it gets its own journal
# load instead, `vigil-bench ledger --clients 64` (group commits in flight
# when the signal arrives, as with turns). The table then also gives each
# build's median durable time over the first (vigild) build's: the issue-12
# goal is ≤ 1.1×.
#
# Markdown on stdout, progress and raw values on stderr. Medians and p99 are
# nearest rank. Goal (issue 11): SIGTERM → durable median, idle, ≤ 1.3 × the
# floor's 4096-byte warm pwrite + fdatasync median.
set -euo pipefail

trials=40
writes=40
gap_ms=300
loads="idle ping turns"
build=1
binaries=""
vigil_run=""
bin_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --trials) trials="$2"; shift 2 ;;
        --writes) writes="$2"; shift 2 ;;
        --gap-ms) gap_ms="$2"; shift 2 ;;
        --loads) loads="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        --bin) bin_dir="$2"; build=0; shift 2 ;;
        --binaries) binaries="$2"; shift 2 ;;
        --vigil-run)
            if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then vigil_run="$2"; shift 2; else vigil_run=default; shift; fi ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-record.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bin="${bin_dir:-$scratch/release}"
work="$(mktemp -d /tmp/vigil-bench-record.XXXXXX)"
server_pid=""
load_pid=""
cleanup() {
    local p
    for p in "$load_pid" "$server_pid"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "bench-record: $*" >&2; }

if [ "$build" = 1 ]; then
    log "building vigild and vigil-bench (release, $scratch)"
    for p in vigild vigil-bench $([ -n "$vigil_run" ] && echo vigil); do swift build -c release --scratch-path "$scratch" --product "$p" >&2; done
fi
for f in "$bin/vigild" "$bin/vigil-bench"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done
[ -n "$binaries" ] || binaries="vigild=$bin/vigild"
declare -A vigild_of kind_of
names=()
for nb in $binaries; do
    names+=("${nb%%=*}"); vigild_of[${nb%%=*}]="${nb#*=}"; kind_of[${nb%%=*}]=vigild
    [ -x "${nb#*=}" ] || { log "missing ${nb#*=}"; exit 1; }
done
if [ -n "$vigil_run" ]; then
    [ "$vigil_run" = default ] && vigil_run="$bin/vigil"
    [ -x "$vigil_run" ] || { log "missing $vigil_run (run without --skip-build)"; exit 1; }
    names+=("vigil-run"); vigild_of[vigil-run]="$vigil_run"; kind_of[vigil-run]=run
fi

cat >"$work/blockwrite.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}
static long long rank(long long *v, int n, double q) {
    int r = (int)(q * n); if (r < q * n) r++; if (r < 1) r = 1; return v[r - 1];
}
/* blockwrite DIR N GAP_MS: N rounds; each round times every (size, cache)
 * case once, each after GAP_MS of sleep. */
int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: blockwrite DIR N GAP_MS\n"); return 2; }
    int n = atoi(argv[2]);
    struct timespec gap = { .tv_sec = atoi(argv[3]) / 1000, .tv_nsec = (atoi(argv[3]) % 1000) * 1000000L };
    char path[4096];
    snprintf(path, sizeof path, "%s/blockwrite.slots", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    static char zero[8192], block[4096];
    if (fd < 0 || pwrite(fd, zero, sizeof zero, 0) != (ssize_t)sizeof zero || fsync(fd) != 0) { perror("prepare"); return 1; }
    int dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) { perror("dir fsync"); return 1; }
    close(dfd);
    memset(block, 'r', sizeof block);
    const int sizes[2] = { 512, 4096 };
    long long *vis[4], *dur[4];
    for (int c = 0; c < 4; c++) { vis[c] = calloc(n, sizeof **vis); dur[c] = calloc(n, sizeof **dur); }
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < 4; c++) {
            int size = sizes[c % 2], cold = c / 2;
            off_t off = (i % 2) * 4096;
            /* The whole file: ext4 may cache both slots in one large folio, which a
             * 4 KiB range would not evict. */
            if (cold && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) { perror("fadvise"); return 1; }
            if (!cold && pread(fd, zero, sizeof zero, 0) != (ssize_t)sizeof zero) { perror("pread"); return 1; }
            nanosleep(&gap, NULL);
            long long t0 = now_ns();
            if (pwrite(fd, block, size, off) != size) { perror("pwrite"); return 1; }
            long long t1 = now_ns();
            if (fdatasync(fd) != 0) { perror("fdatasync"); return 1; }
            long long t2 = now_ns();
            vis[c][i] = t1 - t0; dur[c][i] = t2 - t0;
        }
    }
    for (int c = 0; c < 4; c++) {
        qsort(vis[c], n, sizeof **vis, cmp); qsort(dur[c], n, sizeof **dur, cmp);
        printf("size=%d cache=%s n=%d pwrite_med_us=%.1f pwrite_p99_us=%.1f durable_med_us=%.1f durable_p99_us=%.1f\n",
               sizes[c % 2], c / 2 ? "cold" : "warm", n, rank(vis[c], n, 0.5) / 1e3, rank(vis[c], n, 0.99) / 1e3,
               rank(dur[c], n, 0.5) / 1e3, rank(dur[c], n, 0.99) / 1e3);
    }
    return 0;
}
EOF
gcc -O2 -o "$work/blockwrite" "$work/blockwrite.c"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for_port() {  # port pid
    local i
    for i in $(seq 1 2000); do
        kill -0 "$2" 2>/dev/null || { log "vigild exited before accepting"; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.005
    done
    return 1
}
# n median p99 max (µs) of nanosecond values on stdin; nearest rank.
stats() {
    sort -n | awk '
        { a[NR] = $1 }
        function rank(q,  r) { r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; return a[r] }
        END { if (NR == 0) { print "0 - - -"; exit } printf "%d %.1f %.1f %.1f\n", NR, rank(0.5) / 1000, rank(0.99) / 1000, a[NR] / 1000 }'
}

mkdir -p "$work/floor"
fs=$(df --output=source,fstype "$work" | tail -1 | awk '{ print $1 " (" $2 ")" }')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$load_before; files on $fs"
log "floor (before): $writes rounds"
taskset -c 1 "$work/blockwrite" "$work/floor" "$writes" "$gap_ms" >"$work/floor.before"
cat "$work/floor.before" >&2

wait_for_file() {  # path pid
    local i
    for i in $(seq 1 2000); do
        kill -0 "$2" 2>/dev/null || { log "vigil run exited before its ledger socket appeared"; return 1; }
        [ -S "$1" ] && return 0
        sleep 0.005
    done
    return 1
}

# One start, load, SIGTERM, exit; appends the two latencies.
trial() {  # load dir tag (the files the latencies go to) binary [kind: vigild|run]
    local load="$1" dir="$2" tag="$3" vbin="$4" kind="${5:-vigild}" port err
    err="$work/vigild.err"
    if [ "$kind" = run ]; then
        VIGIL_DEBUG_SIGNAL_LATENCY=1 VIGIL_LOG_LEVEL=notice taskset -c 1 "$vbin" \
            run --state-dir "$dir" --stop-timeout 10 -- sleep infinity >/dev/null 2>"$err" &
        server_pid=$!
        wait_for_file "$dir/ledger.sock" "$server_pid"
        case "$load" in
            ping|turns) taskset -c 0 "$bin/vigil-bench" ledger --connect "unix:$dir/ledger.sock" --clients 64 --duration 30 --warmup 0 >/dev/null 2>&1 & load_pid=$! ;;
        esac
    else
        port=$(free_port)
        VIGIL_DEBUG_SIGNAL_LATENCY=1 VIGIL_LOG_LEVEL=notice taskset -c 1 "$vbin" \
            --listen "127.0.0.1:$port" --state-dir "$dir" >/dev/null 2>"$err" &
        server_pid=$!
        wait_for_port "$port" "$server_pid"
        case "$load" in
            ping) taskset -c 0 "$bin/vigil-bench" ping --connect "127.0.0.1:$port" --connections 64 --depth 16 --duration 30 --warmup 0 >/dev/null 2>&1 & load_pid=$! ;;
            turns) taskset -c 0 "$bin/vigil-bench" turns --connect "127.0.0.1:$port" --sessions 64 --duration 30 --warmup 0 >/dev/null 2>&1 & load_pid=$! ;;
        esac
    fi
    sleep 0.3
    taskset -c 0 "$bin/vigil-bench" signal --pid "$server_pid" --signal TERM --count 1 --interval-ms 0 >/dev/null
    local rc=0 i
    for i in $(seq 1 3000); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.01; done
    wait "$server_pid" 2>/dev/null || rc=$?
    server_pid=""
    if [ -n "$load_pid" ]; then kill -KILL "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; load_pid=""; fi
    [ "$rc" = 0 ] || log "warning: vigild exited $rc ($load)"
    sed -n 's/^signal-visible-ns SIGTERM \([0-9]*\)$/\1/p' "$err" >>"$work/$tag.visible"
    sed -n 's/^signal-durable-ns SIGTERM \([0-9]*\)$/\1/p' "$err" >>"$work/$tag.durable"
    sed -n 's/^signal-latency-ns SIGTERM \([0-9]*\)$/\1/p' "$err" >>"$work/$tag.latency"
    # From the handler's signalfd read: the record's own part.
    awk '$1 == "signal-latency-ns" { l = $3 } $1 == "signal-durable-ns" && l != "" { print $3 - l }' "$err" >>"$work/$tag.own"
    echo "trial $tag load=$load $(grep -E '^signal-(latency|visible|durable)-ns' "$err" | tr '\n' ' ')" >&2
}

declare -A vis dur lat own
for load in $loads; do
    for nm in "${names[@]}"; do
        : >"$work/$nm-$load.visible"; : >"$work/$nm-$load.durable"; : >"$work/$nm-$load.latency"; : >"$work/$nm-$load.own"
        trial idle "$work/state-$nm-$load" warmup "${vigild_of[$nm]}" "${kind_of[$nm]}"  # creates the record file (first start); not counted
    done
    for i in $(seq 1 "$trials"); do
        for nm in "${names[@]}"; do trial "$load" "$work/state-$nm-$load" "$nm-$load" "${vigild_of[$nm]}" "${kind_of[$nm]}"; done
    done
    for nm in "${names[@]}"; do
        vis[$nm-$load]=$(stats <"$work/$nm-$load.visible")
        dur[$nm-$load]=$(stats <"$work/$nm-$load.durable")
        lat[$nm-$load]=$(stats <"$work/$nm-$load.latency")
        own[$nm-$load]=$(stats <"$work/$nm-$load.own")
        log "$nm $load: visible ${vis[$nm-$load]}, durable ${dur[$nm-$load]} (n median p99 max µs)"
    done
done

log "floor (after): $writes rounds"
taskset -c 1 "$work/blockwrite" "$work/floor" "$writes" "$gap_ms" >"$work/floor.after"
cat "$work/floor.after" >&2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "in-place record: $(nproc) cores, kernel $(uname -r), files on $fs; vigild and the floor on core 1, load and signals on core 0; loadavg before $load_before, after $load_after"
echo
echo "Floor: one pwrite + one fdatasync into a preallocated file ($writes rounds, before | after the vigild trials):"
echo
echo "| write | page | pwrite median µs | pwrite p99 µs | pwrite + fdatasync median µs | p99 µs |"
echo "|---|---|---:|---:|---:|---:|"
paste -d' ' "$work/floor.before" "$work/floor.after" | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); k = kv[1]; if (i > 7) k = k "_2"; v[k] = kv[2] }
    printf "| %d bytes | %s | %s \\| %s | %s \\| %s | %s \\| %s | %s \\| %s |\n", v["size"], v["cache"], v["pwrite_med_us"], v["pwrite_med_us_2"], v["pwrite_p99_us"], v["pwrite_p99_us_2"], v["durable_med_us"], v["durable_med_us_2"], v["durable_p99_us"], v["durable_p99_us_2"]
}'
echo
echo "vigild$([ -n "$vigil_run" ] && echo " and vigil run (-- sleep infinity)"), SIGTERM sent → stopping record (their own stamps; $trials starts per condition$([ -n "$vigil_run" ] && echo "; vigil run's ping/turns load is vigil-bench ledger --clients 64"), builds alternating):"
echo
echo "| build | condition | n | → handler (signalfd read) median µs | p99 µs | → pwrite returned (SIGKILL-safe) median µs | p99 µs | → fdatasync returned (durable) median µs | p99 µs | max µs | handler → durable median µs | p99 µs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for load in $loads; do
    for nm in "${names[@]}"; do
        read -r ln lm lp lx <<<"${lat[$nm-$load]}"
        read -r vn vm vp vx <<<"${vis[$nm-$load]}"
        read -r dn dm dp dx <<<"${dur[$nm-$load]}"
        read -r on om op ox <<<"${own[$nm-$load]}"
        echo "| $nm | $load | $dn | $lm | $lp | $vm | $vp | $dm | $dp | $dx | $om | $op |"
    done
done
fb=$(awk '$1 == "size=4096" && $2 == "cache=warm" { sub("durable_med_us=", "", $6); print $6 }' "$work/floor.before")
fa=$(awk '$1 == "size=4096" && $2 == "cache=warm" { sub("durable_med_us=", "", $6); print $6 }' "$work/floor.after")
if [[ " $loads " == *" idle "* ]]; then
    read -r _ im _ _ <<<"${dur[${names[0]}-idle]}"
    read -r _ om _ _ <<<"${own[${names[0]}-idle]}"
    echo
    awk -v v="$im" -v o="$om" -v a="$fb" -v b="$fa" 'BEGIN {
        f = (a + b) / 2
        printf "Goal (idle SIGTERM → durable median ≤ 1.3 × the floor'"'"'s 4096-byte pwrite + fdatasync median; first build): %.1f µs / %.1f µs (mean of before %.1f and after %.1f) = %.2f: %s\n", v, f, a, b, v / f, (v / f <= 1.3 ? "met" : "NOT met")
        printf "The record'"'"'s own part (handler'"'"'s signalfd read → durable) / floor: %.1f µs / %.1f µs = %.2f\n", o, f, o / f
    }'
fi
if [ -n "$vigil_run" ]; then
    echo
    echo "vigil run against ${names[0]} (same run, alternating starts; ratio of medians, and of p99s):"
    echo
    echo "| condition | → durable median µs, vigil run / ${names[0]} | ratio | p99 µs | p99 ratio | handler → durable median µs | ratio | goal (median ratio ≤ 1.1) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for load in $loads; do
        read -r _ rm rp _ <<<"${dur[vigil-run-$load]}"
        read -r _ bm bp _ <<<"${dur[${names[0]}-$load]}"
        read -r _ ro _ _ <<<"${own[vigil-run-$load]}"
        read -r _ bo _ _ <<<"${own[${names[0]}-$load]}"
        awk -v l="$load$([ "$load" != idle ] && echo " (vigil run: ledger 64)")" -v rm="$rm" -v bm="$bm" -v rp="$rp" -v bp="$bp" -v ro="$ro" -v bo="$bo" 'BEGIN {
            printf "| %s | %s / %s | %.2f | %s / %s | %.2f | %s / %s | %.2f | %s |\n", l, rm, bm, rm / bm, rp, bp, rp / bp, ro, bo, ro / bo, (rm / bm <= 1.1 ? "met" : "NOT met")
        }'
    done
fi
