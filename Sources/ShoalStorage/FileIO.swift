// The storage layer's syscalls, in one place: whole-file reads, appends, fsync, atomic replace.
// Every failure is a `StorageError` naming the path and the errno text.

import Glibc

package enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    case io(path: String, call: String, errno: Int32)
    /// A record before the tail failed its checksum or authentication: the log cannot be trusted.
    case corrupted(path: String, offset: Int, reason: String)
    /// The node uses autolock and no (or a wrong) unlock key was given.
    case locked(String)
    case badUnlockKey(String)
    case badKeyring(String)

    package var description: String {
        switch self {
        case .io(let p, let c, let e): return "\(c)(\(p)): \(String(cString: strerror(e)))"
        case .corrupted(let p, let o, let r):
            return "\(p): corrupted record at offset \(o) (\(r)); refusing to start. Restore this node from a peer."
        case .locked(let s), .badUnlockKey(let s), .badKeyring(let s): return s
        }
    }
}

package enum FileIO {
    package static func readAll(_ path: String) throws(StorageError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, call: "read", errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    package static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    package static func openAppend(_ path: String) throws(StorageError) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: path, call: "open", errno: errno) }
        return fd
    }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(StorageError) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, call: "write", errno: errno)
            }
            off += n
        }
    }

    package static func fsync(_ fd: Int32, path: String) throws(StorageError) {
        guard fdatasync(fd) == 0 else { throw .io(path: path, call: "fdatasync", errno: errno) }
    }

    package static func fsyncDirectory(_ dir: String) throws(StorageError) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: dir, call: "open", errno: errno) }
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw .io(path: dir, call: "fsync", errno: errno) }
    }

    /// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
    package static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(StorageError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: tmp, call: "open", errno: errno) }
        do throws(StorageError) {
            try writeAll(fd, bytes, path: tmp)
            guard Glibc.fsync(fd) == 0 else { throw StorageError.io(path: tmp, call: "fsync", errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw .io(path: path, call: "rename", errno: errno) }
        try fsyncDirectory(directory)
    }

    package static func truncate(_ path: String, to length: Int) throws(StorageError) {
        guard Glibc.truncate(path, off_t(length)) == 0 else { throw .io(path: path, call: "truncate", errno: errno) }
    }

    package static func remove(_ path: String) throws(StorageError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .io(path: path, call: "unlink", errno: errno) }
    }

    package static func makeDirectory(_ path: String) throws(StorageError) {
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw .io(path: path, call: "mkdir", errno: errno) }
    }

    package static func list(_ dir: String) throws(StorageError) -> [String] {
        guard let d = opendir(dir) else { throw .io(path: dir, call: "opendir", errno: errno) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}
