// An owned file descriptor. Non-copyable so ownership is explicit: it closes exactly once,
// when dropped or when `close()` is called.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

/// An owned file descriptor, closed on deinit.
package struct FileDescriptor: ~Copyable {
    package let rawValue: CInt

    package init(owning raw: CInt) {
        precondition(raw >= 0, "FileDescriptor(owning:) needs a valid fd")
        self.rawValue = raw
    }

    deinit { _ = Glibc.close(rawValue) }

    /// Closes now (deinit does nothing more).
    package consuming func close() {
        // deinit runs at the end of this consuming scope.
    }

    /// Gives up ownership without closing; the caller now owns the raw fd.
    package consuming func release() -> CInt {
        let raw = rawValue
        discard self
        return raw
    }

    package func setNonBlocking() throws(SystemError) {
        _ = try syscallOrThrow("fcntl(O_NONBLOCK)") { shoal_set_nonblocking(rawValue) }
    }

    /// read(2): bytes read, 0 at EOF, or `.wouldBlock` and other errnos as values.
    package func read(into buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        syscallRetrying { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// write(2).
    package func write(_ buffer: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        syscallRetrying { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// writev(2).
    package func writev(_ iov: UnsafePointer<iovec>, count: Int) -> Result<Int, Errno> {
        syscallRetrying { Glibc.writev(rawValue, iov, CInt(count)) }
    }
}
