// TAP devices: a kernel Ethernet interface whose frames this process reads and writes through a
// file descriptor (/dev/net/tun, IFF_TAP | IFF_NO_PI). One read(2) returns one frame; one
// write(2) injects one. The device lives as long as the descriptor (it is not persistent), so a
// crashed VTEP leaves no TAP behind.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

package struct Tap: ~Copyable {
    package let fd: FileDescriptor
    /// The interface name the kernel gave the device.
    package let name: String

    /// Opens (creating if needed) the TAP device `name`, non-blocking. `vnetHeader` asks for
    /// IFF_VNET_HDR (a virtio_net_hdr before each frame, needed for offloads); `multiQueue` for
    /// IFF_MULTI_QUEUE: each open of the same name adds a queue with its own descriptor, and the
    /// kernel keeps the frames of one flow on one queue.
    package init(name: String, vnetHeader: Bool = false, multiQueue: Bool = false) throws(SystemError) {
        var buf = [CChar](repeating: 0, count: 16)
        for (i, c) in name.utf8.prefix(15).enumerated() { buf[i] = CChar(bitPattern: c) }
        let raw = try syscallOrThrow("open(/dev/net/tun) + TUNSETIFF", name) {
            shoal_tap_open(&buf, vnetHeader ? 1 : 0, multiQueue ? 1 : 0)
        }
        self.fd = FileDescriptor(owning: raw)
        self.name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Gives up ownership of the descriptor (the device lives until the caller closes it).
    package consuming func releaseDescriptor() -> CInt { fd.release() }

    /// TUNSETOFFLOAD: the offloads (TUN_F_*) the kernel may hand us.
    package func setOffload(_ flags: UInt32) throws(SystemError) {
        _ = try syscallOrThrow("ioctl(TUNSETOFFLOAD)", name) { shoal_tap_set_offload(fd.rawValue, flags) }
    }

    /// Offloads a VTEP asks for with IFF_VNET_HDR: checksums may be left partial, and TCP over
    /// IPv4/IPv6 arrives as segmentation-offload superframes (up to 64 KiB).
    package static var tcpOffloads: UInt32 { shoal_tun_f_csum() | shoal_tun_f_tso4() | shoal_tun_f_tso6() }

    /// UDP segmentation offload (Linux 6.2+): UDP a task sends with UDP_SEGMENT arrives as one
    /// superframe with gso_type VIRTIO_NET_HDR_GSO_UDP_L4. Needs `tcpOffloads`' checksum flag,
    /// and the kernel takes USO4 and USO6 only together (EINVAL otherwise, and before 6.2).
    package static var udpOffloads: UInt32 { shoal_tun_f_uso4() | shoal_tun_f_uso6() }

    /// Sets `tcpOffloads | udpOffloads`; if the kernel refuses that with EINVAL (no USO), sets
    /// `tcpOffloads` alone and returns the refusal. Any other failure throws.
    package func setSegmentationOffloads() throws(SystemError) -> Errno? {
        switch syscallRetrying({ shoal_tap_set_offload(fd.rawValue, Self.tcpOffloads | Self.udpOffloads) }) {
        case .success: return nil
        case .failure(let e) where e == Errno(EINVAL):
            try setOffload(Self.tcpOffloads)
            return e
        case .failure(let e): throw SystemError("ioctl(TUNSETOFFLOAD)", e, name)
        }
    }

    /// Reads one frame; `.wouldBlock` when none is queued.
    @inline(__always)
    package func read(into buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        fd.read(into: buffer)
    }

    /// Writes one frame.
    @inline(__always)
    package func write(_ frame: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        fd.write(frame)
    }
}
