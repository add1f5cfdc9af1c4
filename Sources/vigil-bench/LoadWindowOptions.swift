// The measured window's options, shared by the loads (`ping`, `ledger`):
// warm-up, duration, the server whose CPU is reported, and the output form.
import ArgumentParser

struct LoadWindowOptions: ParsableArguments {
    @Option(help: "Seconds measured (after the warm-up).")
    var duration: Double = 5

    @Option(help: "Seconds of load before measuring.")
    var warmup: Double = 1

    @Option(name: .customLong("server-pid"), help: "Also report this process's CPU time over the measured window (from /proc).")
    var serverPID: Int32?

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func validate() throws {
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be in (0, 3600] seconds") }
        guard warmup >= 0, warmup <= 3600 else { throw ValidationError("--warmup must be in [0, 3600] seconds") }
    }
}
