// vigild's own environment variables (VIGIL_*): read here, in the
// executable, never in the libraries (they serve other daemons too).
import Glibc

enum ProcessEnvironment {
    static func get(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
