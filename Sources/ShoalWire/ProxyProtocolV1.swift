// PROXY protocol v1 (proxy-protocol.txt §2.1): one line of US-ASCII.
//
//   "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF
//   "PROXY" SP "UNKNOWN" [anything] CRLF
//
// Strict, as the spec asks ("any sequence which does not exactly match the protocol must be
// discarded"): single spaces, ports 0-65535 and IPv4 octets 0-255 in decimal without leading
// zeros or signs, IPv6 per RFC 4291 §2.2 (1-4 hex digits a group, one "::", an IPv4 tail),
// CRLF within the first 107 bytes. The line is scanned left to right once; each field is
// checked as far as it has arrived, so a line that can no longer be valid is refused at the
// byte that breaks it, and a partial field that can still be completed answers `.needMore`.

extension ProxyProtocol {
    static let v1Prefix: StaticString = "PROXY "

    /// Writes the v1 line for `addresses` (`.local` as "PROXY UNKNOWN\r\n"); returns its length,
    /// at most `maxV1Length`. Traps if `buffer` is too small (108 bytes always suffice).
    package static func encodeV1(_ addresses: ProxyAddresses, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var w = ProxyTextWriter(buffer)
        w.ascii(v1Prefix)
        switch addresses {
        case .local:
            w.ascii("UNKNOWN")
        case .ipv4(let s, let d, let sp, let dp):
            w.ascii("TCP4 ")
            w.v1Endpoints(s, d, sp, dp) { $0.ipv4($1) }
        case .ipv6(let s, let d, let sp, let dp):
            w.ascii("TCP6 ")
            w.v1Endpoints(s, d, sp, dp) { $0.ipv6($1) }
        }
        w.ascii("\r\n")
        return w.count
    }

    static func parseV1(_ all: UnsafeRawBufferPointer) -> ProxyParse {
        // Only the first 107 bytes can belong to the line: running out of them is "too long".
        let bytes = UnsafeRawBufferPointer(rebasing: all[..<min(all.count, maxV1Length)])
        let result = v1Line(bytes)
        if case .needMore = result, bytes.count == maxV1Length { return .invalid(.v1LineTooLong) }
        return result
    }

    private static func v1Line(_ bytes: UnsafeRawBufferPointer) -> ProxyParse {
        guard let matched = matchPrefix(bytes, from: 0, v1Prefix) else { return .invalid(.badSignature) }
        guard matched == v1Prefix.utf8CodeUnitCount else { return .needMore }
        var cursor = V1Cursor(bytes: bytes, position: matched)
        let proto = cursor.field { $0 == space || $0 == cr }
        switch v1Protocol(proto, bytes) {
        case .bad:
            return .invalid(.v1BadField(.proto))
        case .partial:
            return .needMore
        case .value(let name):
            if name == .unknown {
                // §2.1: "the receiver must ignore anything presented before the CRLF".
                var i = proto.end
                while i + 1 < bytes.count {
                    if bytes[i] == cr && bytes[i + 1] == lf {
                        return .header(length: i + 2, version: 1, addresses: .local)
                    }
                    i += 1
                }
                return .needMore
            }
            guard bytes[proto.end] == space else { return .invalid(.v1BadField(.proto)) }
            let step =
                name == .tcp4
                ? v1Endpoints(&cursor, parseIPv4Text).map {
                    ProxyAddresses.ipv4(source: $0, destination: $1, sourcePort: $2, destinationPort: $3)
                }
                : v1Endpoints(&cursor, parseIPv6Text).map {
                    ProxyAddresses.ipv6(source: $0, destination: $1, sourcePort: $2, destinationPort: $3)
                }
            switch step {
            case .stop(let result): return result
            case .value(let addresses):
                guard cursor.position < bytes.count else { return .needMore }
                guard bytes[cursor.position] == lf else { return .invalid(.v1BadField(.lineEnd)) }
                return .header(length: cursor.position + 1, version: 1, addresses: addresses)
            }
        }
    }

    private enum V1Protocol { case tcp4, tcp6, unknown }

    /// The protocol token: complete (followed by SP or CR), or a prefix of one of the three.
    private static func v1Protocol(_ f: V1Cursor.Field, _ bytes: UnsafeRawBufferPointer) -> TextScan<V1Protocol> {
        let token = UnsafeRawBufferPointer(rebasing: bytes[f.start..<f.end])
        // Each: nil, or whether the token is the whole name (else a prefix of it).
        let tcp4 = nameMatch(token, "TCP4")
        let tcp6 = nameMatch(token, "TCP6")
        let unknown = nameMatch(token, "UNKNOWN")
        guard f.complete else { return tcp4 != nil || tcp6 != nil || unknown != nil ? .partial : .bad }
        if tcp4 == true { return .value(.tcp4) }
        if tcp6 == true { return .value(.tcp6) }
        if unknown == true { return .value(.unknown) }
        return .bad
    }

    /// nil if `token` is not a prefix of `name`; true if it is all of it.
    private static func nameMatch(_ token: UnsafeRawBufferPointer, _ name: StaticString) -> Bool? {
        guard matchPrefix(token, from: 0, name) == token.count else { return nil }
        return token.count == name.utf8CodeUnitCount
    }

    /// src SP dst SP sport SP dport CR, each field checked with `address` or as a port. On
    /// success the cursor is at the byte after CR (which must be LF).
    private static func v1Endpoints<A>(
        _ c: inout V1Cursor, _ address: (UnsafeRawBufferPointer, Bool) -> TextScan<A>
    ) -> V1Step<(A, A, UInt16, UInt16)> {
        let source = c.next(until: space, .sourceAddress, address)
        guard case .value(let s) = source else { return source.stopped() }
        let destination = c.next(until: space, .destinationAddress, address)
        guard case .value(let d) = destination else { return destination.stopped() }
        let sourcePort = c.next(until: space, .sourcePort, parsePortText)
        guard case .value(let sp) = sourcePort else { return sourcePort.stopped() }
        let destinationPort = c.next(until: cr, .destinationPort, parsePortText)
        guard case .value(let dp) = destinationPort else { return destinationPort.stopped() }
        return .value((s, d, sp, dp))
    }
}

private let space = UInt8(ascii: " ")
private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")

/// A field parser's answer: the value, "valid so far" (only for a field not yet terminated),
/// or malformed.
enum TextScan<T> {
    case value(T)
    case partial
    case bad
}

/// Either a value, or the final answer for the whole line.
private enum V1Step<T> {
    case value(T)
    case stop(ProxyParse)

    func map<U>(_ f: (T) -> U) -> V1Step<U> {
        switch self {
        case .value(let v): .value(f(v))
        case .stop(let r): .stop(r)
        }
    }

    func stopped<U>() -> V1Step<U> {
        guard case .stop(let r) = self else { preconditionFailure("stopped() on a value") }
        return .stop(r)
    }
}

private struct V1Cursor {
    let bytes: UnsafeRawBufferPointer
    var position: Int

    struct Field {
        var start: Int
        var end: Int
        /// The terminator (at `end`) has arrived.
        var complete: Bool
    }

    /// The bytes up to the first one `isEnd` accepts; consumes them and the terminator.
    mutating func field(_ isEnd: (UInt8) -> Bool) -> Field {
        let start = position
        while position < bytes.count && !isEnd(bytes[position]) { position += 1 }
        let f = Field(start: start, end: position, complete: position < bytes.count)
        if f.complete { position += 1 }
        return f
    }

    /// The next field, ended by `terminator` and parsed by `parse`.
    mutating func next<T>(
        until terminator: UInt8, _ name: ProxyV1Field, _ parse: (UnsafeRawBufferPointer, Bool) -> TextScan<T>
    ) -> V1Step<T> {
        let f = field { $0 == terminator }
        switch parse(UnsafeRawBufferPointer(rebasing: bytes[f.start..<f.end]), f.complete) {
        case .value(let v): return .value(v)
        case .partial: return .stop(.needMore)
        case .bad: return .stop(.invalid(.v1BadField(name)))
        }
    }
}

extension ProxyTextWriter {
    /// "src dst sport dport", the order of v1's fields.
    fileprivate mutating func v1Endpoints<A>(
        _ source: A, _ destination: A, _ sourcePort: UInt16, _ destinationPort: UInt16,
        _ address: (inout ProxyTextWriter, A) -> Void
    ) {
        address(&self, source)
        byte(space)
        address(&self, destination)
        port(sourcePort, after: " ")
        port(destinationPort, after: " ")
    }
}

// MARK: - Text forms of ports and addresses. `complete` says the token's terminator arrived;
// without it a token that can still be completed is `.partial`.

/// A decimal number without leading zeros or sign, at most `max`, one digit at a time.
private struct DecimalAccumulator {
    var value: UInt32 = 0
    var digits = 0

    /// Adds digit byte `b`; false if `b` is not a digit, makes a leading zero, or exceeds `max`.
    mutating func add(_ b: UInt8, max: UInt32) -> Bool {
        guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return false }
        guard !(digits == 1 && value == 0) else { return false }
        value = value * 10 + UInt32(b - UInt8(ascii: "0"))
        digits += 1
        return value <= max
    }
}

func parsePortText(_ t: UnsafeRawBufferPointer, _ complete: Bool) -> TextScan<UInt16> {
    var n = DecimalAccumulator()
    for b in t where !n.add(b, max: UInt32(UInt16.max)) { return .bad }
    guard complete else { return .partial }
    return n.digits > 0 ? .value(UInt16(n.value)) : .bad
}

/// Exactly four decimal octets 0-255 separated by single dots, no leading zeros.
func parseIPv4Text(_ t: UnsafeRawBufferPointer, _ complete: Bool) -> TextScan<UInt32> {
    var address: UInt32 = 0
    var octet = DecimalAccumulator()
    var dots = 0
    for b in t {
        if b == UInt8(ascii: ".") {
            guard octet.digits > 0 && dots < 3 else { return .bad }
            address = address << 8 | octet.value
            octet = DecimalAccumulator()
            dots += 1
        } else if !octet.add(b, max: 255) {
            return .bad
        }
    }
    guard complete else { return .partial }
    guard dots == 3 && octet.digits > 0 else { return .bad }
    return .value(address << 8 | octet.value)
}

/// RFC 4291 §2.2 text: eight groups of 1-4 hex digits separated by ':', at most one "::"
/// standing for one or more zero groups, and optionally the last 32 bits as an IPv4 dotted quad
/// (form 3). Scanned left to right: an error is reported at the group that makes it.
func parseIPv6Text(_ t: UnsafeRawBufferPointer, _ complete: Bool) -> TextScan<IPv6Bits> {
    var a = IPv6Accumulator()
    var afterGap = false  // just read "::"
    let colon = UInt8(ascii: ":")
    guard !t.isEmpty else { return complete ? .bad : .partial }
    var i = 0
    if t[0] == colon {
        // A leading colon only as "::".
        guard t.count > 1 else { return complete ? .bad : .partial }
        guard t[1] == colon else { return .bad }
        a.compressed = true
        afterGap = true
        i = 2
    }
    while true {
        let groupStart = i
        var g: UInt16 = 0
        while i < t.count, let h = hexValue(t[i]) {
            guard i - groupStart < 4 else { return .bad }
            g = g << 4 | UInt16(h)
            i += 1
        }
        let digits = i - groupStart
        if i == t.count {
            // Only "::" may end the address without a group; "…:" at the end returned below.
            if digits == 0 { return afterGap ? (complete ? a.finish() : .partial) : .bad }
            guard a.groups < a.maxGroups else { return .bad }
            guard complete else { return .partial }
            a.push(g)
            return a.finish()
        }
        guard digits > 0 else { return .bad }  // ":::", ":.", or a stray character
        switch t[i] {
        case UInt8(ascii: "."):
            // The IPv4 tail ends the address and fills its last two groups.
            guard a.compressed ? a.groups + 2 <= a.maxGroups : a.groups == 6 else { return .bad }
            switch parseIPv4Text(UnsafeRawBufferPointer(rebasing: t[groupStart...]), complete) {
            case .bad: return .bad
            case .partial: return .partial
            case .value(let v4):
                a.push(UInt16(v4 >> 16))
                a.push(UInt16(v4 & 0xFFFF))
                return a.finish()
            }
        case colon:
            guard a.groups < a.maxGroups else { return .bad }
            a.push(g)
            afterGap = false
            i += 1
            let gapAllowed = !a.compressed && a.groups <= 7
            guard i < t.count else {
                // "…:" so far: another group may follow, or a second colon.
                return !complete && (a.groups < a.maxGroups || gapAllowed) ? .partial : .bad
            }
            if t[i] == colon {
                guard gapAllowed else { return .bad }
                a.compressed = true
                afterGap = true
                i += 1
            } else if a.groups >= a.maxGroups {
                return .bad
            }
        default:
            return .bad
        }
    }
}

/// The groups of an IPv6 address as they are read.
private struct IPv6Accumulator {
    var head = IPv6Bits(hi: 0, lo: 0)  // groups before "::" (all of them without one)
    var tail = IPv6Bits(hi: 0, lo: 0)  // groups after "::"
    var groups = 0
    var headGroups = 0
    var compressed = false

    /// "::" stands for at least one zero group.
    var maxGroups: Int { compressed ? 7 : 8 }

    mutating func push(_ g: UInt16) {
        if compressed {
            tail.push(g)
        } else {
            head.push(g)
            headGroups += 1
        }
        groups += 1
    }

    /// The address, with "::" expanded to the missing zero groups.
    func finish() -> TextScan<IPv6Bits> {
        guard compressed else { return groups == 8 ? .value(head) : .bad }
        var h = head
        for _ in headGroups..<8 { h.push(0) }
        return .value(IPv6Bits(hi: h.hi | tail.hi, lo: h.lo | tail.lo))
    }
}

private func hexValue(_ b: UInt8) -> UInt32? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(b - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(b - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(b - UInt8(ascii: "A") + 10)
    default: nil
    }
}

extension IPv6Bits {
    /// Shifts in a 16-bit group at the low end.
    fileprivate mutating func push(_ g: UInt16) {
        hi = hi << 16 | lo >> 48
        lo = lo << 16 | UInt64(g)
    }
}
