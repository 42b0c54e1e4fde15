// Typed errors for the OS layer.
//
// Three tiers of failure (STYLE.md §5): a programming error traps; an expected per-packet or
// per-connection condition (EAGAIN, ECONNRESET, ...) is returned as a value for the caller to
// count; a setup failure is a `SystemError` whose message names the call and what to do.

#if canImport(Glibc)
    import Glibc
#endif

/// A POSIX error number.
package struct Errno: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    package var rawValue: CInt
    package init(_ raw: CInt) { self.rawValue = raw }

    package static let wouldBlock = Errno(EAGAIN)
    package static let interrupted = Errno(EINTR)
    package static let inProgress = Errno(EINPROGRESS)
    package static let connectionRefused = Errno(ECONNREFUSED)
    package static let connectionReset = Errno(ECONNRESET)
    package static let brokenPipe = Errno(EPIPE)
    package static let tooManyFiles = Errno(EMFILE)
    package static let tooManyFilesSystem = Errno(ENFILE)
    package static let messageTooLong = Errno(EMSGSIZE)
    package static let noBufferSpace = Errno(ENOBUFS)
    package static let exists = Errno(EEXIST)
    package static let notFound = Errno(ENOENT)

    package var description: String {
        String(cString: strerror(rawValue)) + " (errno \(rawValue))"
    }
}

/// A failed system call during setup: names the call, the object and the errno.
package struct SystemError: Error, CustomStringConvertible, Sendable {
    package var call: String
    package var errno: Errno
    package var detail: String
    package var file: String
    package var line: Int

    package init(_ call: String, _ errno: Errno, _ detail: String = "", file: String = #fileID, line: Int = #line) {
        self.call = call
        self.errno = errno
        self.detail = detail
        self.file = file
        self.line = line
    }

    package var description: String {
        let what = detail.isEmpty ? "" : " (\(detail))"
        return "\(call) failed\(what): \(errno)"
    }
}

/// Runs a syscall that returns -1 on failure, retrying EINTR and reading errno right after the
/// call. Non-inlined so that no ARC traffic runs between the call and the errno read.
@inline(never)
package func syscallRetrying<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let r = body()
        if r == -1 {
            let e = errno
            if e == EINTR { continue }
            return .failure(Errno(e))
        }
        return .success(r)
    }
}

/// Like `syscallRetrying` but throws a `SystemError` naming the call: for setup paths.
@inline(never)
package func syscallOrThrow<T: FixedWidthInteger>(
    _ call: String, _ detail: @autoclosure () -> String = "", file: String = #fileID, line: Int = #line,
    _ body: () -> T
) throws(SystemError) -> T {
    switch syscallRetrying(body) {
    case .success(let v): return v
    case .failure(let e): throw SystemError(call, e, detail(), file: file, line: line)
    }
}
