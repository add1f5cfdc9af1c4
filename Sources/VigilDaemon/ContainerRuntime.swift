// Whether this process runs inside a container, and which runtime's.
//
// Container runtimes stop a container like systemd stops a unit (SIGTERM
// to PID 1, SIGKILL after a grace period) but, unlike systemd, tell the
// container nothing about that grace period: podman, Docker and Kubernetes
// expose neither `--stop-timeout` / `-t` nor `terminationGracePeriodSeconds`
// inside it. The entry point only uses this to warn when the budget is the
// built-in default there, where it may not match.
import Glibc

/// The container runtime this process appears to run under.
public enum ContainerRuntime: String, Sendable {
    case podman, docker, kubernetes
    /// `container=` set by another runtime (systemd-nspawn, LXC, …).
    case other = "a container"

    /// The runtime's default grace period, when it has one everybody knows.
    public var defaultGracePeriod: Duration? {
        switch self {
        case .podman, .docker: .seconds(10)
        case .kubernetes: .seconds(30)
        case .other: nil
        }
    }

    /// Kubernetes first (its pods also look like Docker or containerd
    /// containers), then the runtimes' own marker files and `container=`.
    public static func detect() -> ContainerRuntime? {
        if getenv("KUBERNETES_SERVICE_HOST") != nil { return .kubernetes }
        if access("/run/.containerenv", F_OK) == 0 { return .podman }
        if access("/.dockerenv", F_OK) == 0 { return .docker }
        guard let v = getenv("container"), v.pointee != 0 else { return nil }
        switch String(cString: v) {
        case "podman": return .podman
        case "docker": return .docker
        default: return .other
        }
    }
}
