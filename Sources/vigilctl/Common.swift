// What the vigilctl commands share: the state directory options, exit
// codes, and finding out whether the daemon is running.
import ArgumentParser
import Foundation
import Glibc
import VigilDurable
import VigilLifecycle

enum VigilctlExit {
    static let ok: Int32 = 0
    /// `status`: the daemon is not running (as LSB's `status` action).
    static let notRunning: Int32 = 3
    static let usage: Int32 = 64
    /// The state directory does not exist or cannot be read.
    static let noInput: Int32 = 66
    /// The daemon runs but did not answer on its control socket.
    static let unavailable: Int32 = 69
    static let noPermission: Int32 = 77
}

struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("The state directory of vigild or `vigil run` (default $VIGIL_STATE_DIR, else ./vigil-state).", valueName: "dir"))
    var stateDir: String = ProcessEnvironment.get("VIGIL_STATE_DIR") ?? "vigil-state"

    @Option(name: .customLong("socket"), help: ArgumentHelp("The daemon's control socket (default STATE_DIR/vigild.sock).", valueName: "path"))
    var socket: String?

    @Flag(name: .customLong("json"), help: "Print one JSON object instead of text.")
    var json = false

    var socketPath: String { socket ?? (stateDir.hasSuffix("/") ? stateDir : stateDir + "/") + "vigild.sock" }

    func openStateDirectory() throws -> PosixStateFileSystem {
        do { return try PosixStateFileSystem(path: stateDir, create: false) } catch {
            fputsStderr("vigilctl: cannot open state directory \(stateDir): \(error)\n")
            throw ExitCode(error.errno == .permissionDenied ? VigilctlExit.noPermission : VigilctlExit.noInput)
        }
    }

    /// A running `vigil run` holds the directory: it has no control socket
    /// (its ledger's journal is read directly instead).
    func isSupervised(running: Bool) -> Bool {
        running && socket == nil && access(socketPath, F_OK) != 0
            && access((stateDir.hasSuffix("/") ? stateDir : stateDir + "/") + "vigil.lock", F_OK) == 0
    }

    /// Which program the directory belongs to, for the text output: the one
    /// whose holder file (`vigild.lock`, `vigil.lock`) was written last.
    /// Holder files outlive their runs, so this also names a stopped one.
    func owner() -> DirectoryOwner {
        let dir = stateDir.hasSuffix("/") ? stateDir : stateDir + "/"
        func written(_ name: String) -> Int? {
            var st = stat()
            guard stat(dir + name, &st) == 0 else { return nil }
            return st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec
        }
        switch (written("vigild.lock"), written("vigil.lock")) {
        case (nil, .some): return .supervisor
        case (.some(let d), .some(let s)) where s > d: return .supervisor
        default: return .vigild
        }
    }

    /// The pid holding the directory lock (the running daemon), if any.
    func daemon(_ fs: PosixStateFileSystem) -> (running: Bool, pid: Int32?) {
        // vigild's holder file, and `vigil run`'s.
        switch StateDirectoryLock.holder(in: fs, holderFiles: ["vigild.lock", "vigil.lock"]) {
        case .none: (false, nil)
        case .some(let pid): (true, pid)
        }
    }
}

/// The program a state directory belongs to.
enum DirectoryOwner {
    case vigild
    /// `vigil run`: no control socket; a ledger of units instead of turns.
    case supervisor

    var name: String { self == .vigild ? "vigild" : "vigil run" }
    /// What one unit of interrupted work is called.
    var unit: String { self == .vigild ? "turn" : "unit" }
}

func fputsStderr(_ s: String) {
    _ = s.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}

/// Parses one JSON object (the daemon's answer, or our own text).
func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

func jsonText(_ object: Any) -> String {
    guard let d = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
    return String(decoding: d, as: UTF8.self)
}
