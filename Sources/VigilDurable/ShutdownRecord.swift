// The shutdown record: its state moves running → stopping → stopped, like
// PostgreSQL's pg_control. The record's content is a payload of UTF-8
// "key=value\n" lines; it is framed either in a slot of the fixed-size
// record file (format 2, ShutdownRecordSlot.swift, written in place) or, in
// format 1 — the rename-based file of earlier versions, still read so a
// state directory can be migrated — as (docs/shutdown.md):
//   "VIGILSR\0"  8 bytes magic
//   version      UInt16 LE (1)
//   reserved     UInt16 LE (0)
//   length       UInt32 LE  payload bytes
//   payload      UTF-8 "key=value\n" lines
//   crc32c       UInt32 LE  over everything before it
// A torn or garbled file fails the magic, length or CRC check.

public struct ShutdownRecord: Equatable, Sendable {
    public enum State: String, Sendable {
        case running, stopping, stopped
    }

    public enum Outcome: String, Sendable {
        case clean
        case cutShort = "cut-short"
    }

    public var state: State
    // running: written once the lock is held
    public var pid: Int32
    public var bootID: String
    /// Wall clock, nanoseconds since the epoch.
    public var startedAtNs: UInt64
    public var version: String
    // stopping: written inside the signal handler
    public var signal: Int32?
    public var senderPID: Int32?
    public var senderUID: UInt32?
    public var stopRequestedAtNs: UInt64?
    public var budgetMs: UInt64?
    public var inFlight: Int?
    // stopped: written when the drain is over
    public var outcome: Outcome?
    public var abandoned: Int?
    public var drainMs: UInt64?
    public var stoppedAtNs: UInt64?
    /// The stop signal's sender's command name (`/proc/PID/comm`), read
    /// after the `stopping` record, when the sender still existed.
    public var senderCommand: String?
    // A supervised program that ended without a stop request (`vigil run`):
    // its exit status or the signal that killed it. Optional keys, so older
    // readers still classify the record by its state alone.
    public var programExitStatus: Int32?
    public var programExitSignal: Int32?
    /// Connections this stop gave to systemd's fd store for the next
    /// instance (issue 13's handover), written after the store took them.
    public var handedOver: Int?

    public init(running pid: Int32, bootID: String, startedAtNs: UInt64, version: String) {
        state = .running
        self.pid = pid
        self.bootID = bootID
        self.startedAtNs = startedAtNs
        self.version = version
    }

    public static let magic: [UInt8] = Array("VIGILSR".utf8) + [0]
    /// The rename-based whole-file format (read for migration).
    public static let version1: UInt16 = 1

    // MARK: Payload

    /// The "key=value\n" lines shared by both formats.
    public func payload() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 1024 + bootID.utf8.count + version.utf8.count)
        let n = out.withUnsafeMutableBytes { writePayload(into: $0) }!
        out.removeSubrange(n...)
        return out
    }

    /// Writes the payload at the start of `buffer` without allocating (the
    /// signal handler encodes `stopping` this way, into a buffer prepared at
    /// start-up): its length, or nil when it does not fit.
    func writePayload(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        var w = PayloadWriter(buffer)
        w.line("state", state.rawValue)
        w.line("pid", Int64(pid))
        w.line("boot_id", bootID)
        w.line("started_at_ns", startedAtNs)
        w.line("version", version)
        if let signal { w.line("signal", Int64(signal)) }
        if let senderPID { w.line("sender_pid", Int64(senderPID)) }
        if let senderUID { w.line("sender_uid", UInt64(senderUID)) }
        if let stopRequestedAtNs { w.line("stop_requested_at_ns", stopRequestedAtNs) }
        if let budgetMs { w.line("budget_ms", budgetMs) }
        if let inFlight { w.line("in_flight", Int64(inFlight)) }
        if let outcome { w.line("outcome", outcome.rawValue) }
        if let abandoned { w.line("abandoned", Int64(abandoned)) }
        if let drainMs { w.line("drain_ms", drainMs) }
        if let stoppedAtNs { w.line("stopped_at_ns", stoppedAtNs) }
        if let senderCommand { w.line("sender_comm", senderCommand) }
        if let programExitStatus { w.line("program_exit_status", Int64(programExitStatus)) }
        if let programExitSignal { w.line("program_exit_signal", Int64(programExitSignal)) }
        if let handedOver { w.line("handed_over", Int64(handedOver)) }
        return w.overflow ? nil : w.count
    }

    /// The record as a whole format-1 file (what earlier versions wrote by
    /// rename; kept for tests of the migration).
    public func version1Encoded() -> [UInt8] {
        let payload = payload()
        var out = Self.magic
        out.appendLE(Self.version1)
        out.appendLE(UInt16(0))
        out.appendLE(UInt32(payload.count))
        out.append(contentsOf: payload)
        out.appendLE(CRC32C.checksum(out))
        return out
    }

    public struct DecodeError: Error, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// Decodes a whole format-1 file.
    public init(version1 bytes: [UInt8]) throws(DecodeError) {
        guard !bytes.isEmpty else { throw DecodeError(reason: "empty file") }
        guard bytes.count >= 20 else { throw DecodeError(reason: "truncated: \(bytes.count) bytes") }
        guard Array(bytes[0..<8]) == Self.magic else { throw DecodeError(reason: "wrong magic") }
        let version = bytes.readLE(UInt16.self, at: 8)
        guard version == Self.version1 else { throw DecodeError(reason: "unsupported format version \(version)") }
        let length = Int(bytes.readLE(UInt32.self, at: 12))
        guard bytes.count == 16 + length + 4 else {
            throw DecodeError(reason: "length mismatch: header says \(length) payload bytes, file has \(bytes.count - 20)")
        }
        let stored = bytes.readLE(UInt32.self, at: 16 + length)
        let computed = CRC32C.checksum(Array(bytes[0..<(16 + length)]))
        guard stored == computed else {
            throw DecodeError(reason: "CRC32C mismatch (stored \(hex(stored)), computed \(hex(computed)))")
        }
        try self.init(payload: bytes[16..<(16 + length)])
    }

    /// Parses the "key=value\n" lines (already checked by a CRC).
    public init(payload: ArraySlice<UInt8>) throws(DecodeError) {
        var fields: [String: String] = [:]
        for line in String(decoding: payload, as: UTF8.self).split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { throw DecodeError(reason: "malformed payload line") }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        func req(_ k: String) throws(DecodeError) -> String {
            guard let v = fields[k] else { throw DecodeError(reason: "missing field \(k)") }
            return v
        }
        func num<T: FixedWidthInteger>(_ k: String, _: T.Type) throws(DecodeError) -> T? {
            guard let v = fields[k] else { return nil }
            guard let n = T(v) else { throw DecodeError(reason: "field \(k) is not a number") }
            return n
        }
        guard let state = State(rawValue: try req("state")) else { throw DecodeError(reason: "unknown state") }
        guard let pid = try num("pid", Int32.self), let started = try num("started_at_ns", UInt64.self) else {
            throw DecodeError(reason: "missing field pid or started_at_ns")
        }
        self.init(running: pid, bootID: try req("boot_id"), startedAtNs: started, version: try req("version"))
        self.state = state
        signal = try num("signal", Int32.self)
        senderPID = try num("sender_pid", Int32.self)
        senderUID = try num("sender_uid", UInt32.self)
        stopRequestedAtNs = try num("stop_requested_at_ns", UInt64.self)
        budgetMs = try num("budget_ms", UInt64.self)
        inFlight = try num("in_flight", Int.self)
        if let o = fields["outcome"] {
            guard let outcome = Outcome(rawValue: o) else { throw DecodeError(reason: "unknown outcome \(o)") }
            self.outcome = outcome
        }
        abandoned = try num("abandoned", Int.self)
        drainMs = try num("drain_ms", UInt64.self)
        stoppedAtNs = try num("stopped_at_ns", UInt64.self)
        senderCommand = fields["sender_comm"]
        programExitStatus = try num("program_exit_status", Int32.self)
        programExitSignal = try num("program_exit_signal", Int32.self)
        handedOver = try num("handed_over", Int.self)
        if state == .stopped && outcome == nil { throw DecodeError(reason: "stopped record without outcome") }
    }
}

/// Appends "key=value\n" lines to a fixed buffer: bytes and decimal digits,
/// no String building, no allocation.
struct PayloadWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var count = 0
    private(set) var overflow = false

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    private mutating func byte(_ b: UInt8) {
        guard count < buffer.count else { overflow = true; return }
        buffer[count] = b
        count += 1
    }

    private mutating func text(_ s: String) {
        var s = s
        s.withUTF8 { for b in $0 { byte(b) } }
    }

    private mutating func digits(_ v: UInt64) {
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ 20 digits
        withUnsafeMutableBytes(of: &tmp) { t in
            var v = v, n = 0
            repeat { t[n] = UInt8(truncatingIfNeeded: v % 10) + 48; v /= 10; n += 1 } while v > 0
            while n > 0 { n -= 1; byte(t[n]) }
        }
    }

    mutating func line(_ key: StaticString, _ value: String) {
        key.withUTF8Buffer { for b in $0 { byte(b) } }
        byte(61)  // =
        text(value)
        byte(10)
    }

    mutating func line(_ key: StaticString, _ value: UInt64) {
        key.withUTF8Buffer { for b in $0 { byte(b) } }
        byte(61)
        digits(value)
        byte(10)
    }

    mutating func line(_ key: StaticString, _ value: Int64) {
        key.withUTF8Buffer { for b in $0 { byte(b) } }
        byte(61)
        if value < 0 { byte(45) }
        digits(value.magnitude)
        byte(10)
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(self[offset + i]) << (8 * i) }
        return v
    }
}
