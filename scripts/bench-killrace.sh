#!/usr/bin/env bash
# Kill-race survival: SIGTERM, then SIGKILL d µs later. How often does the
# next start find the stop recorded? A thin caller of `vigil-bench killrace`
# (docs/killrace.md), comparing in one sweep, on the same disk and cores:
#
#   vigild          VIGIL_DEBUG_DRAIN_MS=60000 vigild (the drain never ends by itself);
#                   verdict --vigil: `vigilctl last-shutdown --json` says
#                   killed-during-drain (the `stopping` record landed); a clean or
#                   cut-short record after death by SIGKILL counts as a lie
#   floor-rename    floor-echo --marker durable: its marker file is written to
#                   .clean_shutdown.tmp, fsync'd, renamed, directory fsync'd;
#                   verdict: test -e {state}/.clean_shutdown
#   floor-inplace   floor-echo --marker inplace: one 512-byte pwrite into a
#                   preallocated slot, then fdatasync;
#                   verdict: grep -q clean-shutdown {state}/.clean_shutdown.slot
#
#   scripts/bench-killrace.sh [--trials N] [--delays "0 100 … 3000"] [--idle] [--load ping|turns]
#                             [--skip-build] [--json FILE] [--svg FILE] [--work-dir DIR] [--seed N]
#                             [-- MORE killrace OPTIONS, e.g. --daemon-fifo 10]
#
# Defaults: 20 trials per delay and daemon, delays "0 50 100 200 300 500 700
# 1000 1500 2000 3000 5000 10000" µs, ping load (vigil-bench ping 64×16) from
# ready until the kill; --idle: no load. --load turns gives vigild the full
# gateway load (vigil-bench turns, 64 sessions, so journal fdatasyncs are in
# flight when the SIGTERM lands); the floors, which speak only ping, keep the
# ping load. Daemons on core 1, load and the SCHED_FIFO signal race on core 0
# (--cpu 1,0). Delays are shuffled per round; the daemons alternate at every
# delay. Results: markdown on stdout (per-daemon tables with Wilson 95 %
# intervals, d50/d99/d100, ratios, the timing precision), progress on stderr.
# (--coarse-trials and --budget-min of the old script are gone: the tool runs
# exactly --trials rounds.) See docs/benchmarks.md.
set -euo pipefail

trials=20
delays="0 50 100 200 300 500 700 1000 1500 2000 3000 5000 10000"
load=ping
build=1
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --load) load="$2"; shift 2; case "$load" in ping|turns) ;; *) echo "bench-killrace.sh: --load is ping or turns" >&2; exit 64 ;; esac ;;
        --trials) trials="$2"; shift 2 ;;
        --delays) delays="$2"; shift 2 ;;
        --idle) load=none; shift ;;
        --skip-build) build=0; shift ;;
        --json|--svg|--work-dir|--seed) extra+=("$1" "$2"); shift 2 ;;
        --coarse-trials|--budget-min) echo "bench-killrace.sh: $1 is gone (the tool runs exactly --trials rounds)" >&2; exit 64 ;;
        --) shift; extra+=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-killrace.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bin="$scratch/release"
floor_src="$root/../shared/reference/floor-echo.c"
work="$(mktemp -d /tmp/vigil-bench-killrace.XXXXXX)"
floor_bin="$work/floor-echo"
trap 'rm -rf "$work"' EXIT

log() { echo "bench-killrace: $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
    log "needs 2 cores (daemons on core 1, load and signals on core 0); nproc=$(nproc)"
    exit 1
fi
if [ "$build" = 1 ]; then
    log "building vigild, vigilctl and vigil-bench (release, $scratch)"
    for p in vigild vigilctl vigil-bench; do
        swift build -c release --scratch-path "$scratch" --product "$p" >&2
    done
fi
for f in "$bin/vigild" "$bin/vigilctl" "$bin/vigil-bench"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done
log "building the C floor: gcc -O2 -o $floor_bin $floor_src"
gcc -O2 -o "$floor_bin" "$floor_src"

vigild_load=$load
floor_load=$([ "$load" = turns ] && echo ping || echo "$load")

rc=0
"$bin/vigil-bench" killrace \
    --trials "$trials" --delays "$delays" --cpu 1,0 --ready 'tcp:{port}' \
    --load "$floor_load" --load-for "vigild=$vigild_load" \
    --vigilctl "$bin/vigilctl" \
    --compare "vigild=env VIGIL_DEBUG_DRAIN_MS=60000 VIGIL_LOG_LEVEL=notice '$bin/vigild' --listen 127.0.0.1:{port} --state-dir {state}" \
    --vigil-for vigild \
    --compare "floor-rename='$floor_bin' --state-dir {state} --listen 127.0.0.1:{port} --marker durable" \
    --verdict-for 'floor-rename=test -e {state}/.clean_shutdown' \
    --compare "floor-inplace='$floor_bin' --state-dir {state} --listen 127.0.0.1:{port} --marker inplace" \
    --verdict-for 'floor-inplace=grep -q clean-shutdown {state}/.clean_shutdown.slot' \
    "${extra[@]}" || rc=$?
exit "$rc"
