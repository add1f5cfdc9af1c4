// An in-memory state directory that models what survives a crash. Written
// data lives in the page cache until fsync; a created, renamed or removed
// name lives in the directory's cache until the directory is fsynced. A
// power loss keeps only what was made durable; a process kill (SIGKILL)
// keeps everything the kernel had accepted. Faults can be injected before
// the Nth mutating operation, to "crash at every step" of a write sequence.
import SystemPackage
import VigilDurable
import VigilReactor

/// Thrown by the simulated file system at the injected crash point.
public struct SimulatedCrash: Error, Equatable {
    public let step: Int
}

public final class SimulatedStateFileSystem: StateFileSystem {
    private final class Inode {
        var data: [UInt8] = []
        var durable: [UInt8] = []
    }

    private var inodes: [Int: Inode] = [:]
    private var names: [String: Int] = [:]
    private var durableNames: [String: Int] = [:]
    private var handles: [StateFileHandle: Int] = [:]
    private var nextInode = 1
    private var nextHandle: StateFileHandle = 100

    /// Mutating operations performed so far.
    public private(set) var steps = 0
    /// Throw `SimulatedCrash` instead of performing mutating operation number `crashAtStep` (0-based).
    public var crashAtStep: Int?
    /// Make mutating operations fail with this errno: ENOSPC fails those that
    /// allocate (create, write), any other errno (EIO, EROFS) fails all.
    public var failWith: Errno?
    /// A log of the operations, for assertions on ordering.
    public private(set) var journal: [String] = []

    public init() {}

    private func step(_ what: String, allocates: Bool = false) throws(SystemCallError) {
        // A full disk refuses what allocates (create, write); syncing,
        // renaming and shrinking still work. Other errors hit everything.
        if let e = failWith, allocates || e != .noSpace { throw SystemCallError(what, e) }
        if let c = crashAtStep, steps == c {
            crashAtStep = nil
            // Surfaced as an error the caller cannot handle specially: the
            // process is considered dead from here on.
            throw SystemCallError("simulated crash before \(what)", .init(rawValue: -1000 - Int32(c)))
        }
        steps += 1
        journal.append(what)
    }

    /// The machine lost power: only fsynced data and directory entries remain.
    /// `writtenBack` picks the 512-byte sectors of not-yet-synced overwrites
    /// that the device had written when the power went (a torn write); by
    /// default none.
    public func powerLoss(writtenBack: (_ sector: Int) -> Bool = { _ in false }) {
        names = durableNames
        for inode in inodes.values {
            let common = min(inode.data.count, inode.durable.count)
            for sector in 0..<((common + 511) / 512) where writtenBack(sector) {
                let r = (sector * 512)..<min(common, (sector + 1) * 512)
                inode.durable.replaceSubrange(r, with: inode.data[r])
            }
            inode.data = inode.durable
        }
        handles = [:]
        let live = Set(names.values)
        inodes = inodes.filter { live.contains($0.key) }
    }

    /// The process was killed: the kernel keeps everything; handles close.
    public func processKilled() {
        handles = [:]
    }

    public func read(_ name: String) throws(SystemCallError) -> [UInt8]? {
        guard let id = names[name] else { return nil }
        return inodes[id]!.data
    }

    public func create(_ name: String) throws(SystemCallError) -> StateFileHandle {
        try step("create \(name)", allocates: true)
        let id: Int
        if let existing = names[name] {
            id = existing
            inodes[id]!.data = []
        } else {
            id = nextInode
            nextInode += 1
            inodes[id] = Inode()
            names[name] = id
        }
        let h = nextHandle
        nextHandle += 1
        handles[h] = id
        return h
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8]) throws(SystemCallError) {
        try step("write", allocates: true)
        guard let id = handles[handle] else { throw SystemCallError("write", .badFileDescriptor) }
        inodes[id]!.data.append(contentsOf: bytes)
    }

    public func sync(_ handle: StateFileHandle) throws(SystemCallError) {
        try step("fsync")
        guard let id = handles[handle] else { throw SystemCallError("fsync", .badFileDescriptor) }
        inodes[id]!.durable = inodes[id]!.data
    }

    public func close(_ handle: StateFileHandle) throws(SystemCallError) {
        handles[handle] = nil
    }

    public func rename(_ from: String, to: String) throws(SystemCallError) {
        try step("rename \(from) \(to)")
        guard let id = names[from] else { throw SystemCallError("rename", .noSuchFileOrDirectory) }
        names[from] = nil
        names[to] = id
    }

    public func syncDirectory() throws(SystemCallError) {
        try step("fsync-dir")
        durableNames = names
    }

    public func remove(_ name: String) throws(SystemCallError) {
        try step("unlink \(name)")
        names[name] = nil
    }

    public func exists(_ name: String) -> Bool { names[name] != nil }

    public func list() throws(SystemCallError) -> [String] { fileNames }

    public func openForWriting(_ name: String) throws(SystemCallError) -> StateFileHandle {
        guard let id = names[name] else { throw SystemCallError("open(\(name))", .noSuchFileOrDirectory) }
        let h = nextHandle
        nextHandle += 1
        handles[h] = id
        return h
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) {
        // Overwriting blocks the file already has allocates nothing (ext4,
        // XFS), so a full disk refuses only a pwrite that extends the file.
        let extends = handles[handle].map { Int(offset) + bytes.count > inodes[$0]!.data.count } ?? false
        try step("pwrite", allocates: extends)
        guard let id = handles[handle] else { throw SystemCallError("pwrite", .badFileDescriptor) }
        let inode = inodes[id]!
        let end = Int(offset) + bytes.count
        if inode.data.count < end { inode.data.append(contentsOf: [UInt8](repeating: 0, count: end - inode.data.count)) }
        inode.data.replaceSubrange(Int(offset)..<end, with: bytes)
    }

    public func dataSync(_ handle: StateFileHandle) throws(SystemCallError) {
        try step("fdatasync")
        guard let id = handles[handle] else { throw SystemCallError("fdatasync", .badFileDescriptor) }
        inodes[id]!.durable = inodes[id]!.data
    }

    public func truncate(_ handle: StateFileHandle, to size: UInt64) throws(SystemCallError) {
        try step("ftruncate")
        guard let id = handles[handle] else { throw SystemCallError("ftruncate", .badFileDescriptor) }
        let inode = inodes[id]!
        if inode.data.count > Int(size) { inode.data.removeSubrange(Int(size)...) }
    }

    public func names(_ name: String, _ handle: StateFileHandle) -> Bool {
        guard let id = handles[handle] else { return false }
        return names[name] == id
    }

    /// Names currently visible (volatile view).
    public var fileNames: [String] { names.keys.sorted() }
}
