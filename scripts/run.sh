#!/usr/bin/env bash
# Builds vigild (release) and starts it in the foreground with the embedded
# defaults: state in ./vigil-state, newline-delimited JSON on 127.0.0.1:7411.
# Extra arguments go to vigild (see `vigild --help`). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product vigild
echo "vigild: talk to it from another shell, e.g." >&2
echo "  python3 -c 'import socket; s=socket.create_connection((\"127.0.0.1\",7411)); s.sendall(b\"{\\\"op\\\":\\\"ping\\\"}\\n\"); print(s.recv(100).decode(), end=\"\")'" >&2
exec .build/release/vigild "$@"
