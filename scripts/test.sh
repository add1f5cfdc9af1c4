#!/usr/bin/env bash
# The whole test suite: system packages, build (debug), the Python client's
# tests, every Swift test.
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter VigildTests]
#
# When ../shared/tools/systemd-sandbox.sh exists (this project's machines
# have it) and VIGIL_SYSTEMD_SANDBOX is not set, the systemd integration
# tests run vigild as real units under that sandboxed systemd user manager,
# which is stopped again at the end. Elsewhere they use the host's
# `systemctl --user` when it answers, or skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
sandbox="$(cd .. && pwd)/shared/tools/systemd-sandbox.sh"
if [ -z "${VIGIL_SYSTEMD_SANDBOX:-}" ] && [ -x "$sandbox" ]; then
    export VIGIL_SYSTEMD_SANDBOX="$sandbox"
    export SYSTEMD_SANDBOX_DIR="${SYSTEMD_SANDBOX_DIR:-/tmp/vigil-test-systemd-sandbox}"
    trap '"$sandbox" down --purge >/dev/null 2>&1 || true' EXIT
fi
swift build
# The Python client of `vigil run` (clients/python/, standard library only):
# its tests use the vigil just built.
python3 -m unittest discover -s clients/python/tests -t clients/python
# The tests are XCTest; --disable-swift-testing keeps the empty Swift
# Testing pass from printing a "0 tests" summary after the real one.
swift test --disable-swift-testing "$@"
