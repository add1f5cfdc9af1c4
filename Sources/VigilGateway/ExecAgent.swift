// Runs a configured command per turn: the message on stdin, the reply from
// stdout, a per-turn time limit. Children are supervised on the reactor
// through pidfds and die with vigild (PR_SET_PDEATHSIG).
import Glibc
import Logging
import VigilReactor

public final class ExecAgent: Agent {
    public let name = "exec"
    let reactor: Reactor
    let command: String
    let timeLimit: Duration
    let logger: Logger
    /// Replies larger than this are refused (the turn is reported failed):
    /// the reply is journaled, and a journal record's body is at most 1 MiB.
    static let maxReply = 512 << 10

    public init(reactor: Reactor, command: String, timeLimit: Duration, logger: Logger) {
        self.reactor = reactor
        self.command = command
        self.timeLimit = timeLimit
        self.logger = logger
    }

    final class Running: RunningTurn {
        let reactor: Reactor
        var child: ChildHandle?
        var stdinFD: Int32 = -1, stdoutFD: Int32 = -1
        var stdinToken: Token?, stdoutToken: Token?
        var pendingInput: [UInt8] = []
        var output: [UInt8] = []
        var exit: ChildExit?
        var eof = false
        var timer: TimerHandle?
        var timedOut = false
        var finished = false
        var completion: ((AgentResult) -> Void)?

        init(reactor: Reactor) { self.reactor = reactor }

        /// The child leads its own process group (cvigil_spawn): signals go
        /// to the group, so a shell's pipelines and background jobs get them too.
        func signalGroup(_ sig: Int32) -> Bool {
            guard let child else { return false }
            return Glibc.kill(-child.pid, sig) == 0
        }

        func terminate() -> Bool {
            guard !finished, exit == nil else { return false }  // it has answered already
            return signalGroup(SIGTERM)
        }

        func kill() {
            _ = signalGroup(SIGKILL)
            completion = nil
            closeFDs()
        }

        /// The group is killed and its output so far taken as it is.
        func forceEnd() {
            _ = signalGroup(SIGKILL)
            if let t = stdoutToken { reactor.deregister(t); stdoutToken = nil }
            eof = true
            maybeFinish()
        }

        func closeFDs() {
            if let t = stdinToken { reactor.deregister(t); stdinToken = nil }
            if let t = stdoutToken { reactor.deregister(t); stdoutToken = nil }
            if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
            if stdoutFD >= 0 { close(stdoutFD); stdoutFD = -1 }
        }

        /// Done once the child has exited and its stdout is drained.
        func maybeFinish() {
            guard !finished, let exit, eof else { return }
            finished = true
            if let t = timer { reactor.cancelTimer(t) }
            closeFDs()
            let result: AgentResult
            if timedOut {
                result = .failed("agent exceeded its time limit and was killed")
            } else if exit != .exited(0) {
                result = .failed("agent \(exit)")
            } else {
                // Counted after decoding: invalid UTF-8 grows (U+FFFD is 3
                // bytes), and the journal holds at most 1 MiB per record.
                var text = String(decoding: output.prefix(ExecAgent.maxReply + 1), as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                result = output.count > ExecAgent.maxReply || text.utf8.count > ExecAgent.maxReply
                    ? .failed("agent reply longer than \(ExecAgent.maxReply) bytes") : .reply(text)
            }
            completion?(result)
            completion = nil
        }
    }

    public func start(_ turn: TurnWork, completion: @escaping (AgentResult) -> Void) -> any RunningTurn {
        let run = Running(reactor: reactor)
        run.completion = completion
        do {
            let input = try ChildSpawner.pipe(nonblocking: .write)
            let output: (read: Int32, write: Int32)
            do { output = try ChildSpawner.pipe(nonblocking: .read) } catch {
                close(input.read); close(input.write)
                throw error
            }
            let pid: pid_t
            do {
                pid = try ChildSpawner.spawn(["/bin/sh", "-c", command], io: .init(stdin: input.read, stdout: output.write))
            } catch {
                close(input.read); close(input.write); close(output.read); close(output.write)
                throw error
            }
            close(input.read)
            close(output.write)
            run.stdinFD = input.write
            run.stdoutFD = output.read
            run.pendingInput = Array(turn.text.utf8)
            run.child = try reactor.watchChild(pid: pid) { [weak run] exit in
                guard let run else { return }
                run.exit = exit
                run.maybeFinish()
                // Exited, but something it started still holds stdout open
                // (`cmd &`): a short grace, then the group goes.
                if !run.finished {
                    run.reactor.schedule(after: .milliseconds(200)) { [weak run] in run?.forceEnd() }
                }
            }
            run.stdoutToken = try reactor.register(output.read, interest: .readable) { [weak run] _ in
                guard let run else { return }
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    // The reactor's non-blocking read: EINTR retried, EAGAIN
                    // is "wait for the next readiness", anything else ends it.
                    let r = try? buf.withUnsafeMutableBytes { try StreamSocket.read(run.stdoutFD, into: $0) }
                    switch r {
                    case .processed(let n) where n > 0:
                        if run.output.count <= ExecAgent.maxReply { run.output.append(contentsOf: buf[0..<n]) }
                        continue
                    case .wouldBlock:
                        return
                    default:  // EOF or an error: the output is complete
                        run.eof = true
                        if let t = run.stdoutToken { run.reactor.deregister(t); run.stdoutToken = nil }
                        run.maybeFinish()
                        return
                    }
                }
            }
            writeInput(run)
            run.timer = reactor.schedule(after: timeLimit) { [weak run] in
                guard let run, !run.finished else { return }
                run.timedOut = true
                run.forceEnd()  // finishes once the child's exit is seen
            }
        } catch {
            logger.error("exec agent: cannot start '\(command)': \(error)")
            run.closeFDs()
            reactor.deliverOnLoop { completion(.failed("agent could not be started: \(error)")) }
        }
        return run
    }

    /// Writes the message to the child's stdin without blocking, then closes it.
    private func writeInput(_ run: Running) {
        while !run.pendingInput.isEmpty {
            let r = try? run.pendingInput.withUnsafeBytes { try StreamSocket.write(run.stdinFD, from: $0) }
            if case .processed(let n) = r, n > 0 { run.pendingInput.removeFirst(n); continue }
            if r == .wouldBlock {
                if run.stdinToken == nil {
                    run.stdinToken = try? reactor.register(run.stdinFD, interest: .writable) { [weak self, weak run] _ in
                        guard let self, let run else { return }
                        self.writeInput(run)
                    }
                }
                return
            }
            break  // EPIPE: the child does not read its input; that is its business
        }
        if let t = run.stdinToken { reactor.deregister(t); run.stdinToken = nil }
        if run.stdinFD >= 0 { close(run.stdinFD); run.stdinFD = -1 }
    }
}
