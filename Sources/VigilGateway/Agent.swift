// Agents produce a turn's reply. They run on the reactor; `start` returns a
// handle the gateway uses to stop the work when the drain runs out of time.
import VigilReactor

/// One turn handed to an agent.
public struct TurnWork: Sendable {
    public let session: String
    public let id: String
    public let text: String
    public let workMs: Int
}

public enum AgentResult: Equatable, Sendable {
    case reply(String)
    case failed(String)
}

public protocol RunningTurn: AnyObject {
    /// Asks the work to stop (exec: SIGTERM to the child). Returns whether
    /// it was asked: an echo timer ignores it and still answers in time.
    @discardableResult
    func terminate() -> Bool
    /// Stops it now (exec: SIGKILL). The completion is not called afterwards.
    func kill()
}

public protocol Agent: AnyObject {
    var name: String { get }
    func start(_ turn: TurnWork, completion: @escaping (AgentResult) -> Void) -> any RunningTurn
}

/// Replies with the text after `work_ms` on a reactor timer.
public final class EchoAgent: Agent {
    public let name = "echo"
    let reactor: Reactor

    public init(reactor: Reactor) { self.reactor = reactor }

    final class Running: RunningTurn {
        let reactor: Reactor
        var timer: TimerHandle?
        init(reactor: Reactor) { self.reactor = reactor }
        func terminate() -> Bool { false }  // an echo finishes on its own within work_ms
        func kill() {
            if let t = timer { reactor.cancelTimer(t) }
            timer = nil
        }
    }

    public func start(_ turn: TurnWork, completion: @escaping (AgentResult) -> Void) -> any RunningTurn {
        let running = Running(reactor: reactor)
        let text = turn.text
        running.timer = reactor.schedule(after: .milliseconds(turn.workMs)) { [weak running] in
            running?.timer = nil
            completion(.reply(text))
        }
        return running
    }
}
