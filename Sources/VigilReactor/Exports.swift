// The reactor's API uses the syscall layer's types (SignalInfo,
// SystemCallError, monotonicNanoseconds): importing VigilReactor is enough
// to use them.
@_exported import VigilSystem
