// Network namespaces by name (`ip netns` convention: /run/netns/NAME), and running a piece of
// setup inside one. setns(2) switches only the calling thread, so `withNetworkNamespace` must be
// called from a thread that does nothing else meanwhile (the CLI's main thread during setup);
// sockets opened inside keep talking to that namespace after the switch back.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

package enum NetworkNamespace {
    /// Opens the namespace named `name` (as created by `ip netns add`).
    package static func open(named name: String) throws(SystemError) -> FileDescriptor {
        let path = "/run/netns/\(name)"
        let fd = try syscallOrThrow("open", path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        return FileDescriptor(owning: fd)
    }

    /// Opens the calling thread's current network namespace.
    package static func current() throws(SystemError) -> FileDescriptor {
        let path = "/proc/thread-self/ns/net"
        let fd = try syscallOrThrow("open", path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        return FileDescriptor(owning: fd)
    }

    /// Runs `body` with the calling thread inside namespace `ns`, then switches back (also when
    /// `body` throws).
    package static func with<T>(
        _ ns: borrowing FileDescriptor, _ body: () throws -> T
    ) throws -> T {
        let home = try current()
        _ = try syscallOrThrow("setns(CLONE_NEWNET)") { shoal_setns_net(ns.rawValue) }
        defer {
            // Failing to return would leave the thread in the task's namespace: a bug-level state.
            precondition(shoal_setns_net(home.rawValue) == 0, "setns back to the home namespace failed")
        }
        return try body()
    }
}

/// Signals that end a daemon, as a descriptor to poll: SIGINT, SIGTERM and SIGHUP, caught on any
/// thread, are written to a self-pipe (a signalfd would miss signals that land on threads which
/// existed before the mask was set, such as the concurrency runtime's).
package struct TerminationSignals: ~Copyable {
    package let fd: FileDescriptor

    package init() throws(SystemError) {
        let raw = try syscallOrThrow("sigaction(SIGINT|SIGTERM|SIGHUP)") { shoal_signal_pipe_terminate() }
        fd = FileDescriptor(owning: raw)
    }

    /// The pending signal number, or nil.
    package func take() -> CInt? {
        let s = shoal_signal_pipe_read(fd.rawValue)
        return s > 0 ? s : nil
    }
}
