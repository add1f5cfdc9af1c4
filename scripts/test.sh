#!/usr/bin/env bash
# The whole test suite: system packages, build (debug), every test.
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter VigildTests]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build
# The tests are XCTest; --disable-swift-testing keeps the empty Swift
# Testing pass from printing a "0 tests" summary after the real one.
swift test --disable-swift-testing "$@"
