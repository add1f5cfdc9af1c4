// Connections with no input and no turn in flight for the idle timeout are
// told goodbye and closed, from one repeating timer. Activity is stamped
// with the sweep's tick (no clock read per line on the hot path).
import Logging
import VigilReactor

extension SessionGateway {
    func startIdleSweep() {
        let period = min(options.idleTimeout, .seconds(1))
        // Idle for `needed` whole periods at least, so for the timeout at least.
        let needed = Int((options.idleTimeout.nanosecondsValue + period.nanosecondsValue - 1) / max(period.nanosecondsValue, 1))
        idleSweep = reactor.scheduleRepeating(every: period) { [weak self] in
            guard let self else { return }
            tick += 1
            for c in Array(clients.values) where c.turnsInFlight == 0 && !c.isWaiting && tick - c.lastActivityTick > needed {
                logger.info("closing connection \(c.connection.id): idle for more than \(options.idleTimeout)")
                var o: [UInt8] = []
                JSONWriter.append("{\"op\":\"goodbye\",\"reason\":\"idle\"}\n", to: &o)
                c.connection.send(o)
                c.connection.closeAfterWriting()
            }
        }
    }
}
