// line-worker: a small daemon on Vigil's entry point. Each line `work MS`
// is a unit of work, answered `done MS` after MS milliseconds. At SIGTERM
// the `stopping` record is durable first; new lines are then refused and
// the units in flight finish within the stop budget (or are abandoned).
//
//   line-worker [PORT] [STATE_DIR] [STOP_TIMEOUT_SECONDS]
import Glibc
import Logging
import VigilDaemon
import VigilGateway
import VigilLifecycle
import VigilReactor

final class LineWorker: DaemonService, LineHandler {
    let reactor: Reactor
    let port: UInt16
    private var server: LineServer?
    /// Units in flight: the connection to answer and the timer that will.
    private var units: [UInt64: (connection: LineConnection, timer: TimerHandle)] = [:]
    private var nextUnit: UInt64 = 0
    private var admitting = true

    init(_ context: DaemonContext, port: UInt16) {
        reactor = context.reactor
        self.port = port
        // The verdict on the previous run, decided from its record alone.
        context.logger.notice("previous run: \(context.previousRun.classification.rawValue)")
    }

    // MARK: DaemonService

    func start(_ context: DaemonContext) throws {
        let server = LineServer(reactor: reactor, handler: self, logger: context.logger)
        do {
            let bound = try server.listen(on: .ipv4(host: "127.0.0.1", port: port))
            context.logger.notice("listening on \(bound)")
        } catch {
            throw DaemonFailure(exitCode: 69, "cannot listen on 127.0.0.1:\(port): \(error)")
        }
        self.server = server
    }

    var workInFlight: Int { units.count }

    func stopAdmitting(_ signal: SignalInfo) {
        admitting = false
        server?.closeListeners()
    }

    func drain(_ deadline: DrainDeadline) async {
        // Each unit answers from its own timer; wait until none is left.
        // reactor.sleep throws once the budget is spent (task cancelled).
        while !units.isEmpty {
            do { try await reactor.sleep(for: .milliseconds(5)) } catch { return }
        }
        server?.closeAll()
    }

    func abandon() {
        for unit in units.values {
            reactor.cancelTimer(unit.timer)
            unit.connection.send(Array("abandoned\n".utf8))
        }
        units.removeAll()
    }

    func finish() { server?.closeAll() }

    // MARK: LineHandler

    func handle(line: UnsafeRawBufferPointer, from connection: LineConnection, out: inout [UInt8]) {
        let text = String(decoding: line, as: UTF8.self)
        guard admitting else { return out.append(contentsOf: "refused: stopping\n".utf8) }
        guard text.hasPrefix("work "), let ms = Int(text.dropFirst(5)), (0...600_000).contains(ms) else {
            return out.append(contentsOf: "error: expected 'work MS'\n".utf8)
        }
        nextUnit += 1
        let id = nextUnit
        let timer = reactor.schedule(after: .milliseconds(ms)) { [unowned self] in
            units[id] = nil
            connection.send(Array("done \(ms)\n".utf8))
        }
        units[id] = (connection, timer)
    }

    func lineTooLong(limit: Int, from connection: LineConnection, out: inout [UInt8]) {
        out.append(contentsOf: "error: line longer than \(limit) bytes\n".utf8)
    }
}

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? UInt16(arguments[1]) ?? 7500 : 7500
let stateDirectory = arguments.count > 2 ? arguments[2] : "line-worker-state"
let logger = Logger(label: "line-worker")
var configuration = DaemonConfiguration(name: "line-worker", stateDirectory: stateDirectory, logger: logger)
do {
    configuration.stopBudget = try StopBudget.resolve([(arguments.count > 3 ? arguments[3] : nil, "STOP_TIMEOUT_SECONDS")])
} catch {
    logger.critical("\(error)")
    exit(64)
}
exit(Daemon.run(configuration) { context in LineWorker(context, port: port) })
