// vigil-bench entry point: the load generator behind docs/benchmarks.md.
// It runs on a Vigil reactor itself (one thread, no Foundation in the hot
// path), so the client costs about what a well-behaved server costs.
// A write to a server that went away must be an EPIPE error, not a death.
import Glibc

signal(SIGPIPE, SIG_IGN)
BenchCommand.main()
