#!/usr/bin/env bash
# Kill-race survival: SIGTERM, then SIGKILL d µs later. How often does the
# next start find the stop recorded? vigild against two C floors (floor-echo:
# its rename-based marker, and `--marker inplace`, one pwrite + fdatasync
# into a preallocated block), in one run, on the same disk and the same cores.
#
#   scripts/bench-killrace.sh [--trials N] [--delays "0 100 … 3000"] [--idle] [--skip-build]
#                             [--coarse-trials N] [--budget-min M] [--load ping|turns]
#
# One trial: a fresh state directory (under /tmp, on the same file system for
# both servers); the server starts pinned to core 1:
#   floor-echo --state-dir DIR --listen 127.0.0.1:PORT [--marker inplace]
#   VIGIL_DEBUG_DRAIN_MS=60000 vigild --listen 127.0.0.1:PORT --state-dir DIR
# (the drain never ends by itself); once it accepts, and unless --idle,
#   taskset -c 0 vigil-bench ping --connect … --connections 64 --depth 16 --duration 30 --warmup 0
# loads it for ~100 ms. With --load turns, vigild gets the full gateway load
# instead: `vigil-bench turns --sessions 64` (every session with a turn in
# flight, each turn two group-committed journal records, so the journal's
# io_uring writes and fdatasyncs run when the SIGTERM lands); the floor, which
# only speaks ping, keeps the ping load. Then a small C helper built by this script, pinned to
# core 0 and SCHED_FIFO where permitted (so the load generator on the same
# core cannot delay it), calls kill(pid, SIGTERM), busy-waits d µs on
# CLOCK_MONOTONIC and calls kill(pid, SIGKILL); it reports the real gap.
# The load is stopped and the state directory inspected:
#   floor-echo survived: DIR/.clean_shutdown exists (its durable marker);
#   the in-place floor: DIR/.clean_shutdown.slot begins with its marker text;
#   vigild survived: `vigilctl last-shutdown --state-dir DIR --json` says
#   "classification":"killed-during-drain" (the `stopping` record landed).
#   "crash" means it did not; "clean" or "cut-short" after a SIGKILL would be
#   a bug and is counted separately (must be 0), as is anything else.
# floor, in-place floor and vigild trials alternate, so all see the same disturbances.
#
# d50 = smallest d with ≥ 50 % survival, d99 = smallest d with 100 %.
# Goals: vigild d99 ≤ 1.5 × floor d99; against the in-place floor (issue 11)
# vigild d50 ≤ 1.5 × and d99 ≤ 2 × its d50 and d99.
#
# Run time: a few trials are timed first. If N trials × all delays × 2 servers
# would take longer than --budget-min (25), a coarse pass with --coarse-trials
# (20) runs over all delays, and then N trials run only at the delays of the
# transition (for either server: from the first delay above the last 0 %
# through one delay above the first 100 %); if even that does not fit, N is
# lowered to what fits, and the output says so. Rows show how many trials
# each figure rests on.
# Results: markdown on stdout; per-trial raw lines and progress on stderr.
# See docs/benchmarks.md.
set -euo pipefail

trials=200
delays="0 100 200 300 400 500 600 800 1000 1500 2000 3000"
idle=0
build=1
coarse_trials=20
budget_min=25
load=ping
while [ $# -gt 0 ]; do
    case "$1" in
        --load) load="$2"; shift 2; case "$load" in ping|turns) ;; *) echo "bench-killrace.sh: --load is ping or turns" >&2; exit 64 ;; esac ;;
        --trials) trials="$2"; shift 2 ;;
        --delays) delays="$2"; shift 2 ;;
        --idle) idle=1; shift ;;
        --skip-build) build=0; shift ;;
        --coarse-trials) coarse_trials="$2"; shift 2 ;;
        --budget-min) budget_min="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-killrace.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done
read -r -a delay_list <<<"$delays"
[ "${#delay_list[@]}" -gt 0 ] || { echo "bench-killrace.sh: --delays is empty" >&2; exit 64; }
sorted=$(printf '%s\n' "${delay_list[@]}" | sort -n | tr '\n' ' ')
read -r -a delay_list <<<"$sorted"

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bin="$scratch/release"
floor_src="$root/../shared/reference/floor-echo.c"
work="$(mktemp -d /tmp/vigil-bench-killrace.XXXXXX)"
floor_bin="$work/floor-echo"
helper="$work/killrace"
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

log() { echo "bench-killrace: $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
    log "needs 2 cores (server on core 1, load and signals on core 0); nproc=$(nproc)"
    exit 1
fi

if [ "$build" = 1 ]; then
    log "building vigild, vigilctl and vigil-bench (release, $scratch)"
    for p in vigild vigilctl vigil-bench; do
        swift build -c release --scratch-path "$scratch" --product "$p" >&2
    done
fi
log "building the C floor: gcc -O2 -o $floor_bin $floor_src"
gcc -O2 -o "$floor_bin" "$floor_src"
for f in "$bin/vigild" "$bin/vigilctl" "$bin/vigil-bench"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done

# The race helper: `killrace race PID D_US` sends SIGTERM, busy-waits D µs,
# sends SIGKILL, prints the real gap; `killrace port` prints a free port.
cat >"$work/killrace.c" <<'EOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "port")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t l = sizeof a;
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &l)) { perror("port"); return 1; }
        printf("%d\n", ntohs(a.sin_port));
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "race")) { fprintf(stderr, "usage: killrace race PID D_US | killrace port\n"); return 2; }
    pid_t pid = (pid_t)atoi(argv[2]);
    long long d = atoll(argv[3]) * 1000LL;
    struct sched_param sp = { .sched_priority = 50 };
    int fifo = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    mlockall(MCL_CURRENT | MCL_FUTURE);
    now_ns();                                   /* vDSO warm */
    long long t0 = now_ns(), t1;
    if (kill(pid, SIGTERM)) { perror("kill SIGTERM"); return 1; }
    do t1 = now_ns(); while (t1 - t0 < d);
    int r = kill(pid, SIGKILL);
    printf("gap_ns=%lld fifo=%d kill_rc=%d\n", t1 - t0, fifo, r);
    return 0;
}
EOF
gcc -O2 -o "$helper" "$work/killrace.c"

# Waits until 127.0.0.1:$1 accepts (server $2 must stay alive).
wait_for_port() {
    local i
    for i in $(seq 1 2000); do
        kill -0 "$2" 2>/dev/null || { log "server exited before accepting"; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.005
    done
    log "127.0.0.1:$1 does not accept connections after 10 s"
    return 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# counters, keyed "pass,server,d"
declare -A n surv gapmax cls_kdd cls_crash cls_clean cls_cut cls_other early cpu_sum lost lost_tmp
bugs=0
trial_count=0

# One trial; appends to the counters of pass $1.
trial() {  # pass server d
    local pass="$1" s="$2" d="$3" k="$1,$2,$3" dir="$work/state" port out t0 t1 rc cls="" ok=0 gap cpu="" tmp=0
    rm -rf "$dir"
    port=$("$helper" port)
    case "$s" in
        floor)
            mkdir -p "$dir"
            taskset -c 1 "$floor_bin" --state-dir "$dir" --listen "127.0.0.1:$port" >/dev/null 2>"$work/server.err" & ;;
        inplace)
            mkdir -p "$dir"
            taskset -c 1 "$floor_bin" --state-dir "$dir" --listen "127.0.0.1:$port" --marker inplace >/dev/null 2>"$work/server.err" & ;;
        vigild)
            VIGIL_DEBUG_DRAIN_MS=60000 VIGIL_LOG_LEVEL=notice taskset -c 1 "$bin/vigild" \
                --listen "127.0.0.1:$port" --state-dir "$dir" >/dev/null 2>"$work/server.err" & ;;
    esac
    server_pid=$!
    wait_for_port "$port" "$server_pid"
    if [ "$idle" = 0 ]; then
        t0=$(cpu_ticks "$server_pid")
        if [ "$load" = turns ] && [ "$s" = vigild ]; then
            taskset -c 0 "$bin/vigil-bench" turns --connect "127.0.0.1:$port" --sessions 64 \
                --duration 30 --warmup 0 >/dev/null 2>&1 &
        else
            taskset -c 0 "$bin/vigil-bench" ping --connect "127.0.0.1:$port" --connections 64 --depth 16 \
                --duration 30 --warmup 0 >/dev/null 2>&1 &
        fi
        load_pid=$!
        sleep 0.1
        t1=$(cpu_ticks "$server_pid")
        cpu=$(( t1 - t0 ))  # ticks of 1/100 s over ~0.1 s: ~10 = one busy core
    else
        sleep 0.1
    fi
    out=$(taskset -c 0 "$helper" race "$server_pid" "$d")
    rc=0; { wait "$server_pid"; } 2>/dev/null || rc=$?
    server_pid=""
    if [ -n "$load_pid" ]; then kill -KILL "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; load_pid=""; fi
    gap=$(sed -n 's/.*gap_ns=\([0-9]*\).*/\1/p' <<<"$out")
    case "$out" in *fifo=0*) fifo_denied=1 ;; esac
    case "$s" in
        floor)
            if [ -e "$dir/.clean_shutdown" ]; then ok=1; fi
            if [ -e "$dir/.clean_shutdown.tmp" ]; then tmp=1; fi
            cls=$([ "$ok" = 1 ] && echo marker || echo no-marker) ;;
        inplace)
            if [ "$(head -c 14 "$dir/.clean_shutdown.slot" 2>/dev/null | tr -d '\0')" = clean-shutdown ]; then ok=1; fi
            cls=$([ "$ok" = 1 ] && echo marker || echo no-marker) ;;
        vigild)
            if [ -e "$dir/shutdown.record.tmp" ]; then tmp=1; fi
            cls=$("$bin/vigilctl" last-shutdown --state-dir "$dir" --json 2>&1 | sed -n 's/.*"classification":"\([^"]*\)".*/\1/p')
            case "$cls" in
                killed-during-drain) ok=1; cls_kdd[$k]=$(( ${cls_kdd[$k]:-0} + 1 )) ;;
                crash) cls_crash[$k]=$(( ${cls_crash[$k]:-0} + 1 )) ;;
                clean) cls_clean[$k]=$(( ${cls_clean[$k]:-0} + 1 )); bugs=$((bugs + 1)) ;;
                cut-short) cls_cut[$k]=$(( ${cls_cut[$k]:-0} + 1 )); bugs=$((bugs + 1)) ;;
                *) cls_other[$k]=$(( ${cls_other[$k]:-0} + 1 )) ;;
            esac
            if [ "$rc" != 137 ]; then early[$k]=$(( ${early[$k]:-0} + 1 )); fi
            case "$cls" in killed-during-drain|crash) ;; *)
                log "UNEXPECTED vigild classification '$cls' (d=$d, exit $rc); its log:"
                sed 's/^/    /' "$work/server.err" >&2 ;;
            esac ;;
    esac
    n[$k]=$(( ${n[$k]:-0} + 1 ))
    surv[$k]=$(( ${surv[$k]:-0} + ok ))
    if [ "${gap:-0}" -gt "${gapmax[$k]:-0}" ]; then gapmax[$k]=$gap; fi
    if [ -n "$cpu" ]; then cpu_sum[$k]=$(( ${cpu_sum[$k]:-0} + cpu )); fi
    if [ "$ok" = 0 ]; then
        lost[$s]=$(( ${lost[$s]:-0} + 1 ))
        lost_tmp[$s]=$(( ${lost_tmp[$s]:-0} + tmp ))
    fi
    trial_count=$((trial_count + 1))
    echo "trial pass=$pass server=$s d_us=$d survived=$ok result=$cls tmp_left=$tmp exit=$rc gap_ns=${gap:-?} server_ticks_100ms=${cpu:--}" >&2
}

# N trials at each of the given delays, floor and vigild alternating.
run_pass() {  # pass N delays...
    local pass="$1" count="$2" d i
    shift 2
    for d in "$@"; do
        for i in $(seq 1 "$count"); do
            trial "$pass" floor "$d"
            trial "$pass" inplace "$d"
            trial "$pass" vigild "$d"
        done
        log "$pass d=${d}µs: floor ${surv[$pass,floor,$d]}/${n[$pass,floor,$d]}, inplace ${surv[$pass,inplace,$d]}/${n[$pass,inplace,$d]}, vigild ${surv[$pass,vigild,$d]}/${n[$pass,vigild,$d]} (loadavg $(cut -d' ' -f1 /proc/loadavg))"
    done
}

fifo_denied=0
mode=$([ "$idle" = 1 ] && echo "idle" || { [ "$load" = turns ] && echo "under load: vigild 64 sessions of turns (journal group commits), the floor ping 64×16" || echo "under ping load 64×16"; })
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
fs=$(df --output=source,fstype "$work" | tail -1 | awk '{ print $1 " (" $2 ")" }')
log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$load_before state dirs on $fs; $mode"

# Load rate for the record: one second of the same load against each server.
declare -A rate
if [ "$idle" = 0 ]; then
    for s in floor vigild; do
        port=$("$helper" port)
        mkdir -p "$work/cal"
        case "$s" in
            floor) taskset -c 1 "$floor_bin" --state-dir "$work/cal" --listen "127.0.0.1:$port" >/dev/null 2>&1 & ;;
            vigild) taskset -c 1 "$bin/vigild" --listen "127.0.0.1:$port" --state-dir "$work/cal" >/dev/null 2>&1 & ;;
        esac
        server_pid=$!
        wait_for_port "$port" "$server_pid"
        if [ "$load" = turns ] && [ "$s" = vigild ]; then
            line=$(taskset -c 0 "$bin/vigil-bench" turns --connect "127.0.0.1:$port" --sessions 64 --duration 1 --warmup 0.2)
        else
            line=$(taskset -c 0 "$bin/vigil-bench" ping --connect "127.0.0.1:$port" --connections 64 --depth 16 \
                --duration 1 --warmup 0.2 --server-pid "$server_pid")
        fi
        log "load calibration, $s: $line"
        rate[$s]=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$line")
        kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
        rm -rf "$work/cal"
    done
fi

# Time a few trials (not counted) to size the run.
t_start=$(date +%s%N)
run_pass timing 2 "${delay_list[$(( ${#delay_list[@]} / 2 ))]}"
per_trial_ms=$(( ($(date +%s%N) - t_start) / 6 / 1000000 ))
full_min=$(awk -v t="$per_trial_ms" -v n="$trials" -v k="${#delay_list[@]}" 'BEGIN { printf "%.1f", t * n * k * 3 / 60000 }')
log "one trial takes ~${per_trial_ms} ms: $trials trials × ${#delay_list[@]} delays × 3 servers ≈ ${full_min} min (budget ${budget_min} min)"

plan=""
final_trials=$trials
if awk -v f="$full_min" -v b="$budget_min" 'BEGIN { exit !(f <= b) }'; then
    plan="single pass: $trials trials at every delay"
    run_pass fine "$trials" "${delay_list[@]}"
    fine_delays=("${delay_list[@]}")
else
    log "too long for the budget: coarse pass ($coarse_trials trials at every delay), then $trials at the transition"
    run_pass coarse "$coarse_trials" "${delay_list[@]}"
    # For each server: from the delay after its last 0 % below the first
    # nonzero, through one delay above its first 100 %.
    declare -A pick=()
    for s in floor inplace vigild; do
        first_nz=-1; first_full=-1
        for i in "${!delay_list[@]}"; do
            d=${delay_list[$i]}
            if [ "$first_nz" -lt 0 ] && [ "${surv[coarse,$s,$d]}" -gt 0 ]; then first_nz=$i; fi
            if [ "$first_full" -lt 0 ] && [ "${surv[coarse,$s,$d]}" -eq "${n[coarse,$s,$d]}" ]; then first_full=$i; fi
        done
        [ "$first_nz" -ge 0 ] || first_nz=0
        last=$(( first_full < 0 ? ${#delay_list[@]} - 1 : first_full + 1 ))
        [ "$last" -lt "${#delay_list[@]}" ] || last=$(( ${#delay_list[@]} - 1 ))
        for i in $(seq "$first_nz" "$last"); do pick[${delay_list[$i]}]=1; done
    done
    fine_delays=()
    for d in "${delay_list[@]}"; do [ -n "${pick[$d]:-}" ] && fine_delays+=("$d"); done
    left_ms=$(awk -v b="$budget_min" -v t0="$t_start" -v now="$(date +%s%N)" 'BEGIN { printf "%d", b * 60000 - (now - t0) / 1e6 }')
    fits=$(( left_ms / (per_trial_ms * 3 * ${#fine_delays[@]}) ))
    if [ "$fits" -lt "$trials" ]; then
        final_trials=$(( fits > coarse_trials ? fits : coarse_trials ))
        log "only $final_trials trials per delay fit the remaining budget at ${#fine_delays[@]} delays"
    fi
    plan="coarse pass: $coarse_trials trials at every delay; then $final_trials trials at ${fine_delays[*]} µs (the transition)"
    run_pass fine "$final_trials" "${fine_delays[@]}"
fi
elapsed_min=$(awk -v t0="$t_start" -v now="$(date +%s%N)" 'BEGIN { printf "%.1f", (now - t0) / 6e10 }')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "done: $trial_count trials in ${elapsed_min} min; loadavg after: $load_after"

# The figures per delay: the N-trial pass where it ran, else the coarse pass.
src() { if [ -n "${n[fine,$1,$2]:-}" ]; then echo fine; else echo coarse; fi; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) { x = 100 * a / b; if (x == int(x)) printf "%d", x; else printf "%.1f", x } else print "-" }'; }

# smallest d whose survival is ≥ q (fraction) for server $1
dq() {
    local s="$1" q="$2" d p
    for d in "${delay_list[@]}"; do
        p=$(src "$s" "$d")
        if awk -v a="${surv[$p,$s,$d]}" -v b="${n[$p,$s,$d]}" -v q="$q" 'BEGIN { exit !(b > 0 && a >= q * b) }'; then echo "$d"; return; fi
    done
    echo "-"
}
# a delay above d99 with less than 100 %: the curve is not monotonic (noise)
dips() {
    local s="$1" from="$2" d p out=""
    if [ "$from" = - ]; then return; fi
    for d in "${delay_list[@]}"; do
        [ "$d" -gt "$from" ] || continue
        p=$(src "$s" "$d")
        if [ "${surv[$p,$s,$d]}" -lt "${n[$p,$s,$d]}" ]; then out+=" $d µs ($(pct "${surv[$p,$s,$d]}" "${n[$p,$s,$d]}") %)"; fi
    done
    echo "$out"
}

sum_over() {  # array-name server
    local -n arr="$1"
    local total=0 d p
    for d in "${delay_list[@]}"; do p=$(src "$2" "$d"); total=$(( total + ${arr[$p,$2,$d]:-0} )); done
    echo "$total"
}

echo
echo "kill-race survival: $(nproc) cores, kernel $(uname -r), $mode; state dirs on $fs; servers on core 1, load and the SIGTERM→SIGKILL helper on core 0$( [ "$fifo_denied" = 1 ] && echo ' (helper NOT SCHED_FIFO: permission denied)' || echo ' (helper SCHED_FIFO)'); loadavg before $load_before, after $load_after"
if [ "$idle" = 0 ]; then
    echo
    if [ "$load" = turns ]; then
        echo "load: floor vigil-bench ping 64 × 16, 1 s calibration $(awk -v r="${rate[floor]:-0}" 'BEGIN { printf "%.2f", r / 1e6 }') M round trips/s; vigild vigil-bench turns 64 sessions, 1 s calibration ${rate[vigild]:-0} durable turns/s"
    else
        echo "load: vigil-bench ping 64 connections × 16 in flight; 1 s calibration: floor $(awk -v r="${rate[floor]:-0}" 'BEGIN { printf "%.2f", r / 1e6 }') M round trips/s, vigild $(awk -v r="${rate[vigild]:-0}" 'BEGIN { printf "%.2f", r / 1e6 }') M/s"
    fi
fi
echo
echo "plan: $plan; ${elapsed_min} min, $trial_count trials (one trial ~${per_trial_ms} ms)"
echo
echo "| d (µs) | trials per server | rename floor survival % | in-place floor survival % | vigild survival % | vigild crash / killed-during-drain | max real TERM→KILL gap µs |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for d in "${delay_list[@]}"; do
    pf=$(src floor "$d"); pi=$(src inplace "$d"); pv=$(src vigild "$d")
    g=$(( ${gapmax[$pf,floor,$d]:-0} > ${gapmax[$pv,vigild,$d]:-0} ? ${gapmax[$pf,floor,$d]:-0} : ${gapmax[$pv,vigild,$d]:-0} ))
    g=$(( ${gapmax[$pi,inplace,$d]:-0} > g ? ${gapmax[$pi,inplace,$d]:-0} : g ))
    echo "| $d | ${n[$pv,vigild,$d]} | $(pct "${surv[$pf,floor,$d]}" "${n[$pf,floor,$d]}") | $(pct "${surv[$pi,inplace,$d]}" "${n[$pi,inplace,$d]}") | $(pct "${surv[$pv,vigild,$d]}" "${n[$pv,vigild,$d]}") | ${cls_crash[$pv,vigild,$d]:-0} / ${cls_kdd[$pv,vigild,$d]:-0} | $(awk -v g="$g" 'BEGIN { printf "%.1f", g / 1000 }') |"
done
f50=$(dq floor 0.5); f99=$(dq floor 1); v50=$(dq vigild 0.5); v99=$(dq vigild 1); i50=$(dq inplace 0.5); i99=$(dq inplace 1)
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else if (a != "-" && b == 0) print (a == 0 ? "1.00" : "inf"); else print "-" }'; }
ratio=$(awk -v a="$v99" -v b="$f99" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }')
echo
echo "| | d50 µs (≥ 50 %) | d99 µs (100 %) |"
echo "|---|---:|---:|"
echo "| C floor, rename marker (floor-echo) | $f50 | $f99 |"
echo "| C floor, in-place marker (floor-echo --marker inplace) | $i50 | $i99 |"
echo "| vigild | $v50 | $v99 |"
echo "| vigild / rename floor | $(ratio_of "$v50" "$f50") | $ratio |"
echo "| vigild / in-place floor | $(ratio_of "$v50" "$i50") | $(ratio_of "$v99" "$i99") |"
echo
verdict=$(awk -v r="$ratio" 'BEGIN { if (r == "-") print "undecided (a d99 is missing: no delay reached 100 %)"; else if (r <= 1.5) print "met"; else print "NOT met" }')
echo "Goal (vigild d99 ≤ 1.5 × rename floor d99): $verdict (ratio $ratio)"
r50=$(ratio_of "$v50" "$i50"); r99=$(ratio_of "$v99" "$i99")
echo "Goal (vigild d50 ≤ 1.5 × and d99 ≤ 2 × the in-place floor's): d50 $(awk -v r="$r50" 'BEGIN { if (r == "-") print "undecided"; else if (r == "inf" || r > 1.5) print "NOT met"; else print "met" }') ($r50), d99 $(awk -v r="$r99" 'BEGIN { if (r == "-") print "undecided"; else if (r == "inf" || r > 2) print "NOT met"; else print "met" }') ($r99)"
for s in floor inplace vigild; do
    dd=$(dips "$s" "$(dq "$s" 1)")
    if [ -n "$dd" ]; then echo "Note: $s is below 100 % again above its d99 at$dd: noise, or d99 is really higher."; fi
done
clean=$(sum_over cls_clean vigild); cut=$(sum_over cls_cut vigild); other=$(sum_over cls_other vigild); earl=$(sum_over early vigild)
echo
echo "vigild after SIGKILL: clean $clean, cut-short $cut, other $other (all must be 0); exited before the SIGKILL: $earl (must be 0)"
echo "lost trials (all passes) killed inside the rename floor's marker write, i.e. its .tmp file left behind: ${lost_tmp[floor]:-0} of ${lost[floor]:-0}; lost trials: in-place floor ${lost[inplace]:-0}, vigild ${lost[vigild]:-0} (vigild's record is written in place: no .tmp to tell)"
if [ "$idle" = 0 ]; then
    ft=0; fc=0; vt=0; vc=0; it=0; ic=0
    for k in "${!cpu_sum[@]}"; do
        case "$k" in *,floor,*) fc=$((fc + cpu_sum[$k])); ft=$((ft + n[$k])) ;; *,inplace,*) ic=$((ic + cpu_sum[$k])); it=$((it + n[$k])) ;; *,vigild,*) vc=$((vc + cpu_sum[$k])); vt=$((vt + n[$k])) ;; esac
    done
    echo "server CPU in the ~100 ms of load before the SIGTERM (mean, cores): floor $(awk -v a="$fc" -v b="$ft" 'BEGIN { printf "%.2f", b ? a / b / 10 : 0 }'), in-place floor $(awk -v a="$ic" -v b="$it" 'BEGIN { printf "%.2f", b ? a / b / 10 : 0 }'), vigild $(awk -v a="$vc" -v b="$vt" 'BEGIN { printf "%.2f", b ? a / b / 10 : 0 }')"
fi
if [ "$bugs" -gt 0 ] || [ "$other" -gt 0 ] || [ "$earl" -gt 0 ]; then exit 2; fi
