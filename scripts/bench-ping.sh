#!/usr/bin/env bash
# Ping throughput and latency: vigild against the C floor (floor-echo) and the
# SwiftNIO comparison server, in one run, on the same cores.
#
#   scripts/bench-ping.sh [--duration S] [--warmup S] [--rounds N] [--skip-build]
#
# Every server runs pinned to core 1 (taskset -c 1); the load generator
# (vigil-bench ping, itself on a Vigil reactor) runs pinned to core 0. Per
# server: 256 connections × 16 in flight (throughput), then 1 × 1 (latency).
# With --rounds N the three servers are measured N times, interleaved, and
# the table shows the median of each figure.
# The server's CPU time over the measured window is read from /proc
# (vigil-bench --server-pid): the load generator needs a full core as well,
# so CPU ns per round trip compares the servers even when the generator is
# the bottleneck. "Other CPU" is what the rest of the machine used meanwhile
# (from /proc/stat; above 0.05 of a core the run counts as disturbed).
# Results: a markdown table on stdout; the raw vigil-bench lines go to
# stderr. See docs/benchmarks.md.
set -euo pipefail

duration=5
warmup=1
rounds=1
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-ping.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
floor_src="$root/../shared/reference/floor-echo.c"
floor_bin=/tmp/floor-echo
nio_bin="$root/Benchmarks/.build/release/nio-ping-server"
work="$(mktemp -d /tmp/vigil-bench-ping.XXXXXX)"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-ping: $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
    log "needs 2 cores (server on core 1, load on core 0); nproc=$(nproc)"
    exit 1
fi

if [ "$build" = 1 ]; then
    log "building vigild and vigil-bench (release, $scratch)"
    swift build -c release --scratch-path "$scratch" --product vigild >&2
    swift build -c release --scratch-path "$scratch" --product vigil-bench >&2
    log "building the C floor: gcc -O2 -o $floor_bin $floor_src"
    gcc -O2 -o "$floor_bin" "$floor_src"
    log "building the SwiftNIO server (Benchmarks/, release)"
    (cd "$root/Benchmarks" && swift build -c release >&2)
fi
bin="$scratch/release"
for f in "$bin/vigild" "$bin/vigil-bench" "$floor_bin" "$nio_bin"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts a connection (the server $2 must stay alive).
wait_for_port() {
    local port="$1" pid="$2" i
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || { log "server exited before accepting"; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "127.0.0.1:$port does not accept connections after 10 s"
    return 1
}

start_server() {  # name port → sets server_pid
    local name="$1" port="$2" state="$work/state-$1"
    mkdir -p "$state"
    case "$name" in
        floor) taskset -c 1 "$floor_bin" --state-dir "$state" --listen "127.0.0.1:$port" >"$work/$name.out" 2>&1 & ;;
        vigild) VIGIL_LOG_LEVEL=notice taskset -c 1 "$bin/vigild" --listen "127.0.0.1:$port" --state-dir "$state" >"$work/$name.out" 2>&1 & ;;
        nio) taskset -c 1 "$nio_bin" --listen "127.0.0.1:$port" >"$work/$name.out" 2>&1 & ;;
    esac
    server_pid=$!
    wait_for_port "$port" "$server_pid"
}

stop_server() {
    local rc=0
    kill -TERM "$server_pid"
    wait "$server_pid" || rc=$?
    server_pid=""
    [ "$rc" = 0 ] || log "warning: server exited with status $rc after SIGTERM"
}

# vigil-bench ping; prints its summary line (also to stderr).
load() {  # port connections depth
    local line limit
    limit=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 60 }')
    line=$(timeout "$limit" taskset -c 0 "$bin/vigil-bench" ping --connect "127.0.0.1:$1" \
        --connections "$2" --depth "$3" --duration "$duration" --warmup "$warmup" --server-pid "$server_pid")
    echo "  $line" >&2
    echo "$line"
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

servers="floor vigild nio"
declare -A rate p50 p99 lrate cpu nsrt other
for s in $servers; do rate[$s]=""; p50[$s]=""; p99[$s]=""; lrate[$s]=""; cpu[$s]=""; nsrt[$s]=""; other[$s]=""; done
noisy=0

log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
    for s in $servers; do
        port=$(free_port)
        log "round $r/$rounds: $s on 127.0.0.1:$port (core 1), load from core 0"
        start_server "$s" "$port"
        out=$(load "$port" 256 16)
        rate[$s]+=" $(field rate "$out")"
        cpu[$s]+=" $(field server_cpu "$out")"
        nsrt[$s]+=" $(field server_ns_per_rt "$out")"
        o=$(field other_cpu "$out")
        other[$s]+=" $o"
        if awk -v o="${o:-0}" 'BEGIN { exit !(o > 0.05) }'; then
            noisy=$((noisy + 1))
            log "warning: other processes used $o of a core during that run: its figures are disturbed"
        fi
        out=$(load "$port" 1 1)
        lrate[$s]+=" $(field rate "$out")"
        p50[$s]+=" $(field p50_us "$out")"
        p99[$s]+=" $(field p99_us "$out")"
        stop_server
    done
done
log "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A M_rate M_p50 M_p99 M_lrate M_cpu M_nsrt M_other
for s in $servers; do
    M_cpu[$s]=$(median <<<"${cpu[$s]}")
    M_nsrt[$s]=$(median <<<"${nsrt[$s]}")
    M_other[$s]=$(median <<<"${other[$s]}")
    M_rate[$s]=$(median <<<"${rate[$s]}")
    M_lrate[$s]=$(median <<<"${lrate[$s]}")
    M_p50[$s]=$(median <<<"${p50[$s]}")
    M_p99[$s]=$(median <<<"${p99[$s]}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
fmt() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

echo
echo "ping: $(nproc) cores, kernel $(uname -r), duration ${duration}s, warmup ${warmup}s, rounds $rounds$( [ "$rounds" -gt 1 ] && echo ' (medians)')"
echo
echo "| server | 256×16 round trips/s | server CPU (cores) | server CPU ns / round trip | other CPU (noise) | 1×1 round trips/s | 1×1 p50 µs | 1×1 p99 µs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for s in $servers; do
    case "$s" in floor) label="C floor (floor-echo)" ;; vigild) label="vigild" ;; nio) label="SwiftNIO (nio-ping-server)" ;; esac
    echo "| $label | $(fmt "${M_rate[$s]}") | ${M_cpu[$s]} | $(fmt "${M_nsrt[$s]}") | ${M_other[$s]} | $(fmt "${M_lrate[$s]}") | ${M_p50[$s]} | ${M_p99[$s]} |"
done
echo
echo "| ratio | 256×16 throughput | 256×16 CPU efficiency (other's ns/rt ÷ vigild's) | 1×1 throughput | 1×1 p50 latency |"
echo "|---|---:|---:|---:|---:|"
echo "| vigild / floor | $(ratio "${M_rate[vigild]}" "${M_rate[floor]}") | $(ratio "${M_nsrt[floor]}" "${M_nsrt[vigild]}") | $(ratio "${M_lrate[vigild]}" "${M_lrate[floor]}") | $(ratio "${M_p50[vigild]}" "${M_p50[floor]}") |"
echo "| vigild / nio | $(ratio "${M_rate[vigild]}" "${M_rate[nio]}") | $(ratio "${M_nsrt[nio]}" "${M_nsrt[vigild]}") | $(ratio "${M_lrate[vigild]}" "${M_lrate[nio]}") | $(ratio "${M_p50[vigild]}" "${M_p50[nio]}") |"
echo
goal=$(awk -v v="${M_rate[vigild]}" -v f="${M_rate[floor]}" -v n="${M_rate[nio]}" 'BEGIN { print (v >= 0.8 * f && v > n) ? "met" : "NOT met" }')
echo "Goal (256×16: vigild ≥ 0.8 × floor and ahead of SwiftNIO): $goal"
if [ "$noisy" -gt 0 ]; then
    echo
    echo "Warning: in $noisy of $((rounds * 3)) throughput runs other processes used more than 5% of a core (see stderr); rerun on a quiet machine or with more --rounds."
fi
