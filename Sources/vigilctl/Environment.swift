// vigilctl's environment variables (VIGIL_STATE_DIR): read in the
// executable, never in the libraries (they serve other daemons too).
import Glibc

enum ProcessEnvironment {
    static func get(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
