#!/usr/bin/env bash
# Builds every executable (release: vigild, vigilctl, vigil-bench) and starts
# vigild in the foreground with the embedded defaults: state in
# ./vigil-state, newline-delimited JSON on 127.0.0.1:7411. Extra arguments go
# to vigild (see `vigild --help`). Stop it with Ctrl-C.
# `scripts/install.sh [PREFIX]` puts the tools on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
bin="$(swift build -c release --show-bin-path)"
echo "vigild: talk to it from another shell, e.g." >&2
echo "  python3 -c 'import socket; s=socket.create_connection((\"127.0.0.1\",7411)); s.sendall(b\"{\\\"op\\\":\\\"ping\\\"}\\n\"); print(s.recv(100).decode(), end=\"\")'" >&2
echo "  $bin/vigilctl status --state-dir vigil-state" >&2
exec "$bin/vigild" "$@"
