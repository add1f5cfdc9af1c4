#!/usr/bin/env bash
# Fuzzes the wire protocol's line parser (Request.parse + JSONObjectScanner)
# with libFuzzer and AddressSanitizer, starting from a small corpus of valid
# and broken lines. Prints libFuzzer's summary (inputs run, coverage).
#
#   scripts/fuzz.sh [--runs N | --seconds S]     (default --seconds 60)
#
# Build: swiftc -sanitize=fuzzer,address over the parser's own sources and
# Tests/Fuzz/RequestFuzzer.swift into .build-fuzz/ (git-ignored). A crash
# leaves the input in .build-fuzz/crash-* and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=""; seconds=60
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
out=.build-fuzz
mkdir -p "$out/corpus"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name VigilFuzz \
    Sources/VigilGateway/JSONScanner.swift Sources/VigilGateway/Request.swift \
    Sources/VigilGateway/Identifier.swift Sources/VigilGateway/JSONWriter.swift \
    Tests/Fuzz/RequestFuzzer.swift -o "$out/request-fuzzer"
i=0
while IFS= read -r line; do
    printf '%s' "$line" > "$out/corpus/seed-$i"; i=$((i + 1))
done <<'SEEDS'
{"op":"ping"}
{"op":"open","session":"s-1"}
{"op":"send","session":"s","id":"m:1","text":"h\u00e9llo \"x\" \\ \n \ud83d\ude00","work_ms":25}
{"op":"stats"}
{"op":"status"}
{"\u006fp":"sessions","x":[1,2.5e-3,true,false,null,{"a":{}}]}
{"op":"send","session":"a","id":"b","text":"","work_ms":3600000}
{"op":
[1]
SEEDS
args=(-max_len=70000 -timeout=5 -artifact_prefix="$out/")
if [ -n "$runs" ]; then args+=(-runs="$runs"); else args+=(-max_total_time="$seconds"); fi
# libFuzzer's own summary: the DONE line (coverage, corpus), the run count,
# and any crash report; the full log stays in .build-fuzz/fuzz.log.
set +e
"$out/request-fuzzer" "${args[@]}" "$out/corpus" >"$out/fuzz.log" 2>&1
rc=$?
set -e
grep -E "DONE|^Done|ERROR|SUMMARY|crash-|deadly" "$out/fuzz.log" || tail -n 20 "$out/fuzz.log"
exit $rc
