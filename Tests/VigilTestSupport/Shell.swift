// A command's status and combined output, for the tests' system tools
// (mkfs, mount, cp, vigilctl).
import Foundation

public enum Shell {
    /// Runs `args` through /usr/bin/env (so PATH finds it) and waits.
    /// - Parameter stderr: include stderr in the output (default) or drop it.
    @discardableResult
    public static func run(_ args: [String], environment: [String: String] = [:], stderr: Bool = true) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if !environment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            p.environment = env
        }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = stderr ? pipe : FileHandle.nullDevice
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }
}
