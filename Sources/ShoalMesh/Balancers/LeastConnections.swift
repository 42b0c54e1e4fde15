// Least connections, weighted: the task with the fewest active connections per unit of weight.
// Ties rotate (a counter moves the scan's start) so equal tasks share new connections.

import Synchronization

package final class LeastConnections: Sendable {
    private let rotor = Atomic<Int>(0)

    package init() {}

    @inline(__always)
    func pick(_ t: PortTable, nowMs: UInt64, exclude: Int) -> Int? {
        let n = t.endpoints.count
        guard n > 0 else { return nil }
        let start = rotor.add(1, ordering: .relaxed).oldValue % n
        return t.leastLoaded(from: start, nowMs: nowMs, exclude: exclude)
    }
}
