// Plain TCP transport (loopback tests, the `shoal raft` CLI) and the KV client protocol.
//
//   frame: length u32 LE (of type + payload) | type u8 | payload
//   type 1: a Raft message (MessageCodec)      peer → peer, one-way
//   type 2: a client request, type 3: its reply (request/response on one connection)
//   request:  op u8 (1 submit: KVRequest encoding | 2 read: key string |
//             3 membership change: change u8 (1 add voter, 2 add learner, 3 promote, 4 remove) | node u64)
//   reply:    status u8 (0 ok, 1 not leader, 2 unknown outcome, 3 stopped, 4 refused) | leader u64 |
//             result (status 0) or reason string (status 4)
//   result:   0 ok | 1 value (has u8, blob) | 2 cas (succeeded u8, has u8, blob)
//
// Blocking sockets, one thread per peer link and per accepted connection: the cluster has a
// handful of nodes. Outbound messages queue per peer; a failed write drops the batch (Raft
// retransmits) and the link reconnects. Inbound frames go straight to `RaftNode.deliver`.

import Dispatch
import Foundation
import Glibc
import Synchronization

package enum TCPError: Error, Sendable, CustomStringConvertible {
    case badAddress(String)
    case system(String, Int32)
    case protocolError(String)
    package var description: String {
        switch self {
        case .badAddress(let a): return "bad address '\(a)': expected IPv4:port, e.g. 127.0.0.1:7001"
        case .system(let c, let e): return "\(c): \(String(cString: strerror(e)))"
        case .protocolError(let s): return "protocol error: \(s)"
        }
    }
}

enum Sock {
    static func address(_ s: String) throws(TCPError) -> sockaddr_in {
        let parts = s.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw .badAddress(s) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, String(parts[0]), &a.sin_addr) == 1 else { throw .badAddress(s) }
        return a
    }

    static func listen(_ s: String) throws(TCPError) -> Int32 {
        var a = try address(s)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        let r = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard r == 0 else {
            let e = errno
            close(fd)
            throw .system("bind \(s)", e)
        }
        guard Glibc.listen(fd, 128) == 0 else { throw .system("listen \(s)", errno) }
        return fd
    }

    static func connect(_ s: String, timeoutSeconds: Int = 2) throws(TCPError) -> Int32 {
        var a = try address(s)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket", errno) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        let r = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard r == 0 else {
            let e = errno
            close(fd)
            throw .system("connect \(s)", e)
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ b: [UInt8]) -> Bool {
        var off = 0
        while off < b.count {
            let n = b.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    static func readExactly(_ fd: Int32, _ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var off = 0
        while off < n {
            let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + off, n - off, 0) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return nil }
            off += r
        }
        return out
    }

    static func frame(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(payload.count + 1))
        w.u8(type)
        w.bytes += payload
        return w.bytes
    }

    /// (type, payload), nil at EOF or error. Frames are capped at 64 MiB.
    static func readFrame(_ fd: Int32) -> (UInt8, [UInt8])? {
        guard let h = readExactly(fd, 4) else { return nil }
        let len = Int(UInt32(h[0]) | UInt32(h[1]) << 8 | UInt32(h[2]) << 16 | UInt32(h[3]) << 24)
        guard len >= 1, len <= 64 << 20, let body = readExactly(fd, len) else { return nil }
        return (body[0], Array(body[1...]))
    }
}

package final class TCPTransport: RaftTransport {
    private final class Link: Sendable {
        let address: String
        let queue = Mutex<[Message]>([])
        let wake = DispatchSemaphore(value: 0)
        init(address: String) { self.address = address }
    }

    private let links: [NodeID: Link]
    private let node = Mutex<RaftNode?>(nil)
    private let stopped = Mutex(false)
    package let listenAddress: String

    package init(id: NodeID, peers: [NodeID: String]) {
        listenAddress = peers[id] ?? ""
        var l: [NodeID: Link] = [:]
        for (pid, addr) in peers where pid != id { l[pid] = Link(address: addr) }
        links = l
    }

    package func send(_ messages: [Message]) {
        var by: [NodeID: [Message]] = [:]
        for m in messages { by[m.to, default: []].append(m) }
        for (to, ms) in by {
            guard let link = links[to] else { continue }
            link.queue.withLock { q in
                q += ms
                if q.count > 10_000 { q.removeFirst(q.count - 10_000) }  // a dead peer must not eat memory
            }
            link.wake.signal()
        }
    }

    /// Listens on this node's address and starts the peer links.
    package func start(node n: RaftNode) throws(TCPError) {
        node.withLock { $0 = n }
        let lfd = try Sock.listen(listenAddress)
        Thread { [self] in acceptLoop(lfd) }.start()
        for (_, link) in links { Thread { [self] in linkLoop(link) }.start() }
    }

    private func acceptLoop(_ lfd: Int32) {
        while true {
            let fd = accept(lfd, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
            Thread { [self] in serve(fd) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let n = node.withLock({ $0 }) else { return }
        while let (type, payload) = Sock.readFrame(fd) {
            switch type {
            case 1:
                guard let m = try? MessageCodec.decode(payload) else { return }
                n.deliver(m)
            case 2:
                let reply = Self.handleClient(payload, node: n)
                guard Sock.writeAll(fd, Sock.frame(3, reply)) else { return }
            default:
                return
            }
        }
    }

    static func handleClient(_ payload: [UInt8], node: RaftNode) -> [UInt8] {
        let result: Result<KVResult, RaftNodeError>
        if payload.first == 1, let req = try? KVRequest.decode(Array(payload.dropFirst())) {
            result = node.submitAndWait(req)
        } else if payload.first == 2 {
            var r = ByteReader(payload, offset: 1)
            guard let key = try? r.string() else { return [3] + [UInt8](repeating: 0, count: 8) }
            result = node.readAndWait(key)
        } else if payload.first == 3, let change = RaftClient.decodeConfChange(payload) {
            result = node.changeMembershipAndWait(change)
        } else {
            return [3] + [UInt8](repeating: 0, count: 8)
        }
        var w = ByteWriter()
        switch result {
        case .success(let kv):
            w.u8(0)
            w.u64(0)
            switch kv {
            case .ok: w.u8(0)
            case .value(let v):
                w.u8(1)
                w.u8(v == nil ? 0 : 1)
                w.blob(v ?? [])
            case .cas(let ok, let cur):
                w.u8(2)
                w.u8(ok ? 1 : 0)
                w.u8(cur == nil ? 0 : 1)
                w.blob(cur ?? [])
            }
        case .failure(.notLeader(let l)):
            w.u8(1)
            w.u64(l)
        case .failure(.unknownOutcome):
            w.u8(2)
            w.u64(0)
        case .failure(.stopped):
            w.u8(3)
            w.u64(0)
        case .failure(.refused(let why)):
            w.u8(4)
            w.u64(0)
            w.string(why)
        }
        return w.bytes
    }

    private func linkLoop(_ link: Link) {
        var fd: Int32 = -1
        while !stopped.withLock({ $0 }) {
            link.wake.wait()
            let batch = link.queue.withLock { q in
                let b = q
                q = []
                return b
            }
            guard !batch.isEmpty else { continue }
            if fd < 0 {
                guard let c = try? Sock.connect(link.address, timeoutSeconds: 1) else {
                    usleep(20_000)  // peer down: drop this batch, Raft will retransmit
                    continue
                }
                fd = c
            }
            var out: [UInt8] = []
            for m in batch { out += Sock.frame(1, MessageCodec.encode(m)) }
            if !Sock.writeAll(fd, out) {
                close(fd)
                fd = -1
            }
        }
    }
}

/// The KV client used by `shoal raft kv` and the process test: finds the leader and retries.
package struct RaftClient: Sendable {
    package let peers: [NodeID: String]

    package init(peers: [NodeID: String]) { self.peers = peers }

    package enum Outcome: Sendable, Equatable {
        case result(KVResult)
        case unknown
        /// The leader refused (status 4), with its reason.
        case refused(String)
    }

    /// Sends `request` (op 1) or a read of `key` (op 2) to the leader, following hints.
    package func call(_ payload: [UInt8], deadlineSeconds: Double = 10) -> Outcome {
        let deadline = Date().addingTimeInterval(deadlineSeconds)
        var target = peers.keys.sorted().first!
        var attempt = 0
        while Date() < deadline {
            attempt += 1
            if let reply = roundTrip(peers[target]!, payload) {
                var r = ByteReader(reply)
                let status = (try? r.u8()) ?? 255
                let leader = (try? r.u64()) ?? 0
                switch status {
                case 0:
                    if let kv = try? Self.decodeResult(&r) { return .result(kv) }
                case 1:
                    if leader != 0 && peers[leader] != nil {
                        target = leader
                        continue
                    }
                case 2:
                    return .unknown  // may have been applied: the caller must not assume either way
                case 4:
                    return .refused((try? r.string()) ?? "")
                default: break
                }
            }
            let ids = peers.keys.sorted()
            target = ids[attempt % ids.count]
            usleep(50_000)
        }
        return .unknown
    }

    func roundTrip(_ address: String, _ payload: [UInt8]) -> [UInt8]? {
        guard let fd = try? Sock.connect(address, timeoutSeconds: 6) else { return nil }
        defer { close(fd) }
        guard Sock.writeAll(fd, Sock.frame(2, payload)), let (t, p) = Sock.readFrame(fd), t == 3 else { return nil }
        return p
    }

    static func decodeResult(_ r: inout ByteReader) throws(KVDecodeError) -> KVResult {
        switch try r.u8() {
        case 0: return .ok
        case 1:
            let has = try r.u8()
            let v = try r.blob()
            return .value(has == 1 ? v : nil)
        case 2:
            let ok = try r.u8()
            let has = try r.u8()
            let v = try r.blob()
            return .cas(succeeded: ok == 1, current: has == 1 ? v : nil)
        case let k: throw .unknownKind(k)
        }
    }

    package static func submitPayload(_ req: KVRequest) -> [UInt8] { [1] + req.encode() }

    package static func confChangePayload(_ change: ConfChange) -> [UInt8] {
        var w = ByteWriter()
        w.u8(3)
        w.u8(change.wireCode)
        w.u64(change.node)
        return w.bytes
    }

    static func decodeConfChange(_ payload: [UInt8]) -> ConfChange? {
        var r = ByteReader(payload, offset: 1)
        guard let code = try? r.u8(), let id = try? r.u64() else { return nil }
        return ConfChange(wireCode: code, node: id)
    }

    package static func readPayload(_ key: String) -> [UInt8] {
        var w = ByteWriter()
        w.u8(2)
        w.string(key)
        return w.bytes
    }
}
