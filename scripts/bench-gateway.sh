#!/usr/bin/env bash
# The session gateway end to end (vigild release build, echo agent):
#  1. durable turns per second, work_ms 0, with 1, 16 and 256 sessions
#     (vigil-bench turns: one connection per session, one turn in flight each;
#     a turn counts when its reply arrives: two group-committed records);
#  2. drain time with 10,000 turns in flight, work_ms uniform in 0–100 ms
#     (vigil-bench drain: SIGTERM once all are accepted, until every
#     connection got its goodbye), and vigild's own "drain took" figure;
#  3. start-to-ready with 100,000 sessions in the journal, after a clean stop
#     (snapshot) and after SIGKILL (segments replayed): from exec until the
#     TCP port accepts.
#
#   scripts/bench-gateway.sh [--duration S] [--state-parent DIR] [--skip-build]
#
# vigild runs pinned to core 1, vigil-bench to core 0. State directories are
# created under --state-parent (default /var/tmp: a real disk here; /tmp may
# be tmpfs, where fdatasync costs nothing). Markdown on stdout, raw lines on
# stderr. See docs/benchmarks.md.
set -euo pipefail

duration=5
parent=/var/tmp
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --state-parent) parent="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-gateway.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bin="$scratch/release"
work="$(mktemp -d "$parent/vigil-bench-gateway.XXXXXX")"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-gateway: $*" >&2; }

[ "$(nproc)" -ge 2 ] || { log "needs 2 cores; nproc=$(nproc)"; exit 1; }
if [ "$build" = 1 ]; then
    "$root/scripts/setup.sh"
    for p in vigild vigil-bench; do
        log "building $p (release, $scratch)"
        swift build -c release --scratch-path "$scratch" --product "$p" >&2
    done
fi
for f in "$bin/vigild" "$bin/vigil-bench"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }

# start_vigild DIR PORT: starts it pinned to core 1; sets server_pid.
start_vigild() {
    VIGIL_LOG_LEVEL=notice taskset -c 1 "$bin/vigild" --listen "127.0.0.1:$2" --state-dir "$1" \
        --max-connections 20000 2>>"$work/vigild.log" &
    server_pid=$!
}

# wait_ready PORT: polls (1 ms) until the port accepts; prints ns waited.
wait_ready() {
    local t0 i
    t0=$(now_ns)
    for i in $(seq 1 60000); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then echo $(( $(now_ns) - t0 )); return 0; fi
        kill -0 "$server_pid" 2>/dev/null || { log "vigild exited; its log:"; tail -20 "$work/vigild.log" >&2; return 1; }
        sleep 0.001
    done
    log "port $1 not ready after 60 s"; return 1
}

stop_vigild() {  # signal
    kill -"$1" "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

fs=$(df --output=source,fstype "$work" | tail -1 | awk '{ print $1 " (" $2 ")" }')
log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg); state on $fs"

# 1. Durable turns per second.
dir="$work/turns"; port=$(free_port)
start_vigild "$dir" "$port"; wait_ready "$port" >/dev/null
declare -A rate
for n in 1 16 256; do
    line=$(taskset -c 0 "$bin/vigil-bench" turns --connect "127.0.0.1:$port" --sessions "$n" --duration "$duration" --warmup 1 --prefix "t$n")
    log "$line"
    rate[$n]=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$line")
done
stop_vigild TERM

# 2. Drain with 10,000 turns in flight.
dir="$work/drain"; port=$(free_port)
start_vigild "$dir" "$port"; wait_ready "$port" >/dev/null
: >"$work/vigild.log"
drain_line=$(taskset -c 0 "$bin/vigil-bench" drain --connect "127.0.0.1:$port" --turns 10000 --connections 100 --max-work-ms 100 --server-pid "$server_pid")
log "$drain_line"
wait "$server_pid" 2>/dev/null || true; server_pid=""
own=$(sed -n 's/.*drain took \([0-9]*\) ms.*/\1/p' "$work/vigild.log" | tail -1)
outcome=$(sed -n 's/.*stopped: \([a-z-]*\) .*/\1/p' "$work/vigild.log" | tail -1)

# 3. Start-to-ready with 100,000 sessions.
dir="$work/start"; port=$(free_port)
start_vigild "$dir" "$port"; wait_ready "$port" >/dev/null
open_line=$(taskset -c 0 "$bin/vigil-bench" open-sessions --connect "127.0.0.1:$port" --count 100000 --connections 16 --prefix s)
log "$open_line"
stop_vigild KILL                      # crash: the journal's segments are replayed
start_vigild "$dir" "$port"; crash_ns=$(wait_ready "$port")
replay=$(grep -o 'journal replay: [^;]*' "$work/vigild.log" | tail -1 || true)
log "after SIGKILL: ready in $crash_ns ns; $replay"
stop_vigild TERM                      # clean: snapshot + compaction
start_vigild "$dir" "$port"; clean_ns=$(wait_ready "$port")
replay2=$(grep -o 'journal replay: [^;]*' "$work/vigild.log" | tail -1 || true)
log "after a clean stop: ready in $clean_ns ns; $replay2"
stop_vigild TERM
base_ns=0
dir="$work/empty"; port=$(free_port)
start_vigild "$dir" "$port"; base_ns=$(wait_ready "$port"); stop_vigild TERM

ms() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1e6 }'; }
echo
echo "gateway: $(nproc) cores, kernel $(uname -r), state on $fs; vigild (release, echo agent) on core 1, vigil-bench on core 0"
echo
echo "| sessions (one turn in flight each) | durable turns/s (work_ms 0) | ratio to 1 session |"
echo "|---:|---:|---:|"
for n in 1 16 256; do
    echo "| $n | ${rate[$n]} | $(awk -v a="${rate[$n]}" -v b="${rate[1]}" 'BEGIN { printf "%.1f", b ? a / b : 0 }') |"
done
echo
echo "| drain, 10,000 turns in flight (work_ms 0–100) | value |"
echo "|---|---:|"
echo "| SIGTERM → last connection closed (client) | $(sed -n 's/.*drain_ms=\([0-9.]*\).*/\1/p' <<<"$drain_line") ms |"
echo "| vigild's own \"drain took\" | ${own:-?} ms |"
echo "| replies before goodbye | $(sed -n 's/.*replies=\([0-9]*\).*/\1/p' <<<"$drain_line") of 10000 |"
echo "| outcome | ${outcome:-?} |"
echo
echo "| start → port accepting | ms |"
echo "|---|---:|"
echo "| empty state directory | $(ms "$base_ns") |"
echo "| 100,000 sessions, after SIGKILL (${replay#journal replay: }) | $(ms "$crash_ns") |"
echo "| 100,000 sessions, after a clean stop (${replay2#journal replay: }) | $(ms "$clean_ns") |"
