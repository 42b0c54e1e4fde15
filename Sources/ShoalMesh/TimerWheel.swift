// A hashed timer wheel over integer ids (connection slots, UDP flows): O(1) schedule, cancel
// and expiry, intrusive lists in preallocated arrays, so arming a timer never allocates.
// Deadlines are lazy: activity does not touch the wheel; when an entry fires, the owner compares
// its real deadline with the clock and schedules again if it is not due yet.

package struct TimerWheel: ~Copyable {
    package static let tickMs: UInt64 = 8
    static let buckets = 1_024  // power of two: span 8.2 s; later deadlines go round again

    private var heads: UnsafeMutablePointer<Int32>
    private var next: UnsafeMutablePointer<Int32>
    private var prev: UnsafeMutablePointer<Int32>
    private var bucketOf: UnsafeMutablePointer<Int32>
    private(set) var capacity: Int
    /// The last tick processed.
    private var cursor: UInt64
    package private(set) var count = 0
    /// Head of the list of entries collected as due and not yet popped.
    private var due: Int32 = -1
    private static let dueBucket = buckets

    package init(capacity: Int, nowMs: UInt64) {
        heads = .allocate(capacity: Self.buckets)
        heads.initialize(repeating: -1, count: Self.buckets)
        self.capacity = capacity
        next = .allocate(capacity: capacity)
        prev = .allocate(capacity: capacity)
        bucketOf = .allocate(capacity: capacity)
        next.initialize(repeating: -1, count: capacity)
        prev.initialize(repeating: -1, count: capacity)
        bucketOf.initialize(repeating: -1, count: capacity)
        cursor = nowMs / Self.tickMs
    }

    deinit {
        heads.deallocate()
        next.deallocate()
        prev.deallocate()
        bucketOf.deallocate()
    }

    /// Makes room for ids below `newCapacity` (off the steady state: slot tables grow rarely).
    package mutating func grow(to newCapacity: Int) {
        guard newCapacity > capacity else { return }
        func regrow(_ p: inout UnsafeMutablePointer<Int32>, _ old: Int, _ new: Int) {
            let q = UnsafeMutablePointer<Int32>.allocate(capacity: new)
            q.moveInitialize(from: p, count: old)
            (q + old).initialize(repeating: -1, count: new - old)
            p.deallocate()
            p = q
        }
        regrow(&next, capacity, newCapacity)
        regrow(&prev, capacity, newCapacity)
        regrow(&bucketOf, capacity, newCapacity)
        capacity = newCapacity
    }

    package func isScheduled(_ id: Int) -> Bool { bucketOf[id] >= 0 }

    /// Arms `id` to fire at or soon after `atMs` (re-arming moves it).
    package mutating func schedule(_ id: Int, atMs: UInt64) {
        cancel(id)
        let tick = max((atMs + Self.tickMs - 1) / Self.tickMs, cursor + 1)
        let b = Int(tick & UInt64(Self.buckets - 1))
        let head = heads[b]
        next[id] = head
        prev[id] = -1
        if head >= 0 { prev[Int(head)] = Int32(id) }
        heads[b] = Int32(id)
        bucketOf[id] = Int32(b)
        count += 1
    }

    package mutating func cancel(_ id: Int) {
        let b = Int(bucketOf[id])
        guard b >= 0 else { return }
        let n = next[id]
        let p = prev[id]
        if p >= 0 {
            next[Int(p)] = n
        } else if b == Self.dueBucket {
            due = n
        } else {
            heads[b] = n
        }
        if n >= 0 { prev[Int(n)] = p }
        next[id] = -1
        prev[id] = -1
        bucketOf[id] = -1
        count -= 1
    }

    /// Moves every entry whose bucket time has come to the due list, in tick order; the owner
    /// then takes them one by one with `popDue` (and may re-arm them meanwhile).
    package mutating func collect(nowMs: UInt64) {
        let now = nowMs / Self.tickMs
        guard now > cursor else { return }
        let steps = min(now - cursor, UInt64(Self.buckets))
        var t = now - steps
        while t < now {
            t += 1
            let b = Int(t & UInt64(Self.buckets - 1))
            var id = heads[b]
            heads[b] = -1
            while id >= 0 {
                let i = Int(id)
                id = next[i]
                // Push onto the due list (order within a tick does not matter).
                next[i] = due
                prev[i] = -1
                if due >= 0 { prev[Int(due)] = Int32(i) }
                due = Int32(i)
                bucketOf[i] = Int32(Self.dueBucket)
            }
        }
        cursor = now
    }

    /// The next due entry, disarmed; nil when none is left.
    package mutating func popDue() -> Int? {
        guard due >= 0 else { return nil }
        let i = Int(due)
        cancel(i)
        return i
    }

    /// Milliseconds until the next tick boundary (epoll_wait's timeout when timers are armed).
    package func msToNextTick(nowMs: UInt64) -> Int {
        let next = (nowMs / Self.tickMs + 1) * Self.tickMs
        return Int(next - nowMs)
    }
}
