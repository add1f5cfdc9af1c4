#!/usr/bin/env bash
# Turn journal: durable acknowledged turns per second and replay speed, in one
# run (docs/benchmarks.md, "Turn journal"; the journal itself: docs/journal.md).
#
#   scripts/bench-journal.sh [--dir DIR] [--duration S] [--warmup S] [--rounds N] [--records N] [--skip-build]
#
# Turns: `vigil-bench journal turns` with 1, 16 and 256 sessions, each looping
# "append turnAccepted → durable → append turnCompleted → durable" on one
# reactor; a turn counts when its completion is durable. Four journal
# configurations: group commit and one fdatasync per record
# (maxBatchRecords = 1), each on io_uring and on the pwrite/fdatasync
# fallback. The same turns on SQLite (Benchmarks/ sqlite-turn-bench: WAL,
# synchronous=FULL, one transaction per step). Replay: `vigil-bench journal
# replay` writes --records records in batches of 10,000, closes without
# compaction, and times reopening, cold (segments evicted from the page
# cache) and warm.
# Everything runs in a fresh directory under --dir (default /var/tmp, or
# .bench-tmp in the work tree when /var/tmp is tmpfs): it must be on the disk
# you want to measure; tmpfs figures mean nothing (fdatasync is a no-op).
# With --rounds N every figure is the median of N measurements, interleaved.
# Noise: "other user CPU" is the user time of every other process during the
# measured window; above 0.05 of a core a run counts as disturbed. (Busy CPU
# outside the process, "other CPU", is no noise figure here: it includes the
# kernel's block-layer work for the benchmark's own fdatasyncs — softirq,
# kblockd — about 0.1–0.2 of a core on the reference VM.)
# Results: markdown on stdout; the raw benchmark lines go to stderr.
set -euo pipefail

duration=3
warmup=0.5
rounds=1
records=1000000
build=1
dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --records) records="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-journal.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
done

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
scratch="$root/.build-bench"
bench="$scratch/release/vigil-bench"
sqlite_bench="$root/Benchmarks/.build/release/sqlite-turn-bench"

log() { echo "bench-journal: $*" >&2; }

# System packages: the main package's (liburing, libsystemd) and SQLite's.
packages=(libsystemd-dev liburing-dev libsqlite3-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "missing system packages: ${missing[*]}"
        log "run as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
fi

# The directory: on a real disk, never tmpfs unless asked for explicitly.
if [ -z "$dir" ]; then
    dir=/var/tmp
    if [ "$(stat -f -c %T "$dir" 2>/dev/null)" = tmpfs ]; then dir="$root/.bench-tmp"; fi
fi
mkdir -p "$dir"
fstype="$(findmnt -no FSTYPE -T "$dir" 2>/dev/null || stat -f -c %T "$dir")"
source="$(findmnt -no SOURCE -T "$dir" 2>/dev/null || echo '?')"
mntopts="$(findmnt -no OPTIONS -T "$dir" 2>/dev/null || echo '?')"
disk="$(lsblk -no PKNAME "$source" 2>/dev/null | head -n1)"
[ -n "$disk" ] || disk="$(basename "$source")"
write_cache="$(cat "/sys/block/$disk/queue/write_cache" 2>/dev/null || echo '?')"
if [ "$fstype" = tmpfs ]; then
    log "WARNING: $dir is on tmpfs: fdatasync does nothing there and every figure below is meaningless"
fi

if [ "$build" = 1 ]; then
    log "building vigil-bench (release, $scratch)"
    swift build -c release --scratch-path "$scratch" --product vigil-bench >&2
    log "building sqlite-turn-bench (Benchmarks/, release)"
    (cd "$root/Benchmarks" && swift build -c release --product sqlite-turn-bench >&2)
fi
for f in "$bench" "$sqlite_bench"; do
    [ -x "$f" ] || { log "missing $f (run without --skip-build)"; exit 1; }
done

limit=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 120 }')
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | sed 's,/s$,,'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }
fmt() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.0f", x }'; }

configs="uring-group uring-record sys-group sys-record sqlite"
counts="1 16 256"
declare -A rate fsyncs perbatch p50 p99 cpu other ouser
for c in $configs; do for n in $counts; do
    k="$c,$n"; rate[$k]=""; fsyncs[$k]=""; perbatch[$k]=""; p50[$k]=""; p99[$k]=""; cpu[$k]=""; other[$k]=""; ouser[$k]=""
done; done
noisy=0
fellback=0

record() {  # key line
    local k="$1" line="$2" o
    rate[$k]+=" $(field rate "$line")"
    p50[$k]+=" $(field p50_us "$line")"
    p99[$k]+=" $(field p99_us "$line")"
    cpu[$k]+=" $(field cpu "$line")"
    if [[ "$k" == sqlite,* ]]; then fsyncs[$k]+=" $(field commits_per_s "$line")"; perbatch[$k]+=" 1"
    else fsyncs[$k]+=" $(field fsyncs_per_s "$line")"; perbatch[$k]+=" $(field records_per_batch "$line")"; fi
    other[$k]+=" $(field other_cpu "$line")"
    o=$(field other_user_cpu "$line")
    ouser[$k]+=" $o"
    if awk -v o="${o:-0}" 'BEGIN { exit !(o > 0.05) }'; then
        noisy=$((noisy + 1))
        log "warning: other processes used $o of a core (user time) during that run: its figures are disturbed"
    fi
}

turns() {  # config sessions
    local c="$1" n="$2" backend batch line
    case "$c" in uring-*) backend=io_uring ;; *) backend=syscalls ;; esac
    case "$c" in *-record) batch=1 ;; *) batch=0 ;; esac
    line=$(timeout "$limit" "$bench" journal turns --dir "$dir" --sessions "$n" --duration "$duration" \
        --warmup "$warmup" --backend "$backend" --max-batch "$batch")
    echo "  $line" >&2
    if [ "$backend" = io_uring ] && [ "$(field backend "$line")" != io_uring ]; then
        fellback=1
        log "warning: io_uring was refused by the kernel; that run used the syscall fallback"
    fi
    record "$c,$n" "$line"
}

sqlite() {  # sessions
    local line
    line=$(timeout "$limit" "$sqlite_bench" --dir "$dir" --sessions "$1" --duration "$duration" --warmup "$warmup")
    echo "  $line" >&2
    sqlite_version=$(field sqlite "$line")
    record "sqlite,$1" "$line"
}

log "machine: nproc=$(nproc) kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
log "directory: $dir on $fstype ($source, $mntopts), write cache: $write_cache"
sqlite_version="?"
for r in $(seq 1 "$rounds"); do
    for n in $counts; do
        for c in $configs; do
            log "round $r/$rounds: $c, $n session(s)"
            if [ "$c" = sqlite ]; then sqlite "$n"; else turns "$c" "$n"; fi
        done
    done
done

log "replay: writing $records records, then reopening (cold, then warm)"
replay=$(timeout 900 "$bench" journal replay --dir "$dir" --records "$records")
echo "  $replay" >&2
log "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A M
for c in $configs; do for n in $counts; do
    k="$c,$n"
    M[rate,$k]=$(median <<<"${rate[$k]}")
    M[fsyncs,$k]=$(median <<<"${fsyncs[$k]}")
    M[perbatch,$k]=$(median <<<"${perbatch[$k]}")
    M[p50,$k]=$(median <<<"${p50[$k]}")
    M[p99,$k]=$(median <<<"${p99[$k]}")
    M[cpu,$k]=$(median <<<"${cpu[$k]}")
    M[other,$k]=$(median <<<"${other[$k]}")
    M[ouser,$k]=$(median <<<"${ouser[$k]}")
done; done

label() {
    case "$1" in
        uring-group) echo "journal, io_uring, group commit" ;;
        uring-record) echo "journal, io_uring, one fdatasync per record" ;;
        sys-group) echo "journal, syscall fallback, group commit" ;;
        sys-record) echo "journal, syscall fallback, one fdatasync per record" ;;
        sqlite) echo "SQLite $sqlite_version, WAL, synchronous=FULL" ;;
    esac
}

echo
echo "Turn journal: $(nproc) cores, kernel $(uname -r), $dir on $fstype ($source, write cache: $write_cache), duration ${duration}s, warmup ${warmup}s, rounds $rounds$( [ "$rounds" -gt 1 ] && echo ' (medians)')"
echo
echo "| durable turns/s | 1 session | 16 sessions | 256 sessions |"
echo "|---|---:|---:|---:|"
for c in $configs; do
    echo "| $(label "$c") | $(fmt "${M[rate,$c,1]}") | $(fmt "${M[rate,$c,16]}") | $(fmt "${M[rate,$c,256]}") |"
done
echo
echo "| ratio | 1 session | 16 sessions | 256 sessions |"
echo "|---|---:|---:|---:|"
row() {  # label numerator-config denominator-config
    echo "| $1 | $(ratio "${M[rate,$2,1]}" "${M[rate,$3,1]}") | $(ratio "${M[rate,$2,16]}" "${M[rate,$3,16]}") | $(ratio "${M[rate,$2,256]}" "${M[rate,$3,256]}") |"
}
row "group commit / per record, io_uring" uring-group uring-record
row "group commit / per record, syscall fallback" sys-group sys-record
row "journal (io_uring, group) / SQLite" uring-group sqlite
row "journal (fallback, group) / SQLite" sys-group sqlite
row "io_uring / fallback (group commit)" uring-group sys-group
echo
echo "| configuration | sessions | turns/s | fdatasyncs (SQLite: commits)/s | records per fdatasync | turn p50 µs | turn p99 µs | CPU (cores) | other CPU (incl. kernel I/O) | other user CPU (noise) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $configs; do for n in $counts; do
    echo "| $(label "$c") | $n | $(fmt "${M[rate,$c,$n]}") | $(fmt "${M[fsyncs,$c,$n]}") | ${M[perbatch,$c,$n]} | ${M[p50,$c,$n]} | ${M[p99,$c,$n]} | ${M[cpu,$c,$n]} | ${M[other,$c,$n]} | ${M[ouser,$c,$n]} |"
done; done
echo
echo "| replay of $(field records "$replay") records | segments | MiB | replay ms | records/s | start → ready ms |"
echo "|---|---:|---:|---:|---:|---:|"
for t in cold warm; do
    echo "| $t page cache$( [ "$t" = cold ] && [ "$(field evicted "$replay")" != yes ] && echo ' (eviction FAILED: actually warm)') | $(field segments "$replay") | $(field mib "$replay") | $(field ${t}_replay_ms "$replay") | $(fmt "$(field ${t}_rate "$replay")") | $(field ${t}_ready_ms "$replay") |"
done
echo
echo "Writing them (batches of 10,000 records, one write + fdatasync each): $(fmt "$(field write_rate "$replay")") records/s."
echo
goal() { awk -v r="$1" 'BEGIN { print (r != "-" && r >= 10) ? "met" : "NOT met" }'; }
gu=$(ratio "${M[rate,uring-group,256]}" "${M[rate,uring-record,256]}")
gs=$(ratio "${M[rate,sys-group,256]}" "${M[rate,sys-record,256]}")
echo "Goal (256 sessions: group commit ≥ 10 × one fdatasync per record): io_uring $gu× — $(goal "$gu"); syscall fallback $gs× — $(goal "$gs")"
if [ "$fellback" = 1 ]; then
    echo
    echo "Warning: io_uring was refused in some runs (see stderr): their \"io_uring\" figures are the fallback's."
fi
if [ "$noisy" -gt 0 ]; then
    echo
    echo "Warning: in $noisy of $((rounds * 15)) runs other processes used more than 5% of a core in user time (see stderr); rerun on a quiet machine or with more --rounds."
fi
