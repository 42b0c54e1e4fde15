// Binary encoding of Raft messages for the TCP transport (little-endian, length-prefixed blobs).
//
//   message: kind u8 | from u64 | to u64 | term u64 | logTerm u64 | index u64 | commit u64 |
//            flags u8 (1 reject, 2 has snapshot) | rejectHint u64 | context u64 |
//            n u32 | n × entry | [snapshot]
//   entry:   term u64 | index u64 | kind u8 | data blob
//   snapshot: index u64 | term u64 | membership blob (see `Configuration`) | data blob

package enum MessageCodec {
    package static func encode(_ m: Message, into w: inout ByteWriter) {
        w.u8(m.kind.rawValue)
        w.u64(m.from)
        w.u64(m.to)
        w.u64(m.term)
        w.u64(m.logTerm)
        w.u64(m.index)
        w.u64(m.commit)
        w.u8((m.reject ? 1 : 0) | (m.snapshot != nil ? 2 : 0))
        w.u64(m.rejectHint)
        w.u64(m.context)
        w.u32(UInt32(m.entries.count))
        for e in m.entries {
            w.u64(e.term)
            w.u64(e.index)
            w.u8(e.kind.rawValue)
            w.blob(e.data)
        }
        if let s = m.snapshot {
            w.u64(s.index)
            w.u64(s.term)
            w.blob(Configuration.encode(s.voters, learners: s.learners))
            w.blob(s.data)
        }
    }

    package static func encode(_ m: Message) -> [UInt8] {
        var w = ByteWriter()
        encode(m, into: &w)
        return w.bytes
    }

    package static func decode(_ bytes: [UInt8]) throws(KVDecodeError) -> Message {
        var r = ByteReader(bytes)
        let k = try r.u8()
        guard let kind = MessageKind(rawValue: k) else { throw .unknownKind(k) }
        var m = Message(kind: kind, from: try r.u64(), to: try r.u64(), term: try r.u64())
        m.logTerm = try r.u64()
        m.index = try r.u64()
        m.commit = try r.u64()
        let flags = try r.u8()
        m.reject = flags & 1 != 0
        m.rejectHint = try r.u64()
        m.context = try r.u64()
        let n = try r.u32()
        guard Int(n) <= r.remaining / 21 else { throw .truncated }
        m.entries.reserveCapacity(Int(n))
        for _ in 0..<n {
            let term = try r.u64()
            let index = try r.u64()
            let ek = try r.u8()
            guard let kind = EntryKind(rawValue: ek) else { throw .unknownKind(ek) }
            m.entries.append(Entry(term: term, index: index, kind: kind, data: try r.blob()))
        }
        if flags & 2 != 0 {
            let index = try r.u64()
            let term = try r.u64()
            let vb = try r.blob()
            guard vb.count % 8 == 0 else { throw .truncated }
            let members = Configuration.decode(vb)
            m.snapshot = Snapshot(
                index: index, term: term, voters: members.voters, learners: members.learners, data: try r.blob())
        }
        return m
    }
}
