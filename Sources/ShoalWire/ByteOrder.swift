// Big-endian loads and stores on raw buffers, bounds-checked by the caller's length checks.
// Decoders in this module check lengths first and then read without further checks.

extension UnsafeRawBufferPointer {
    @inline(__always) package func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inline(__always) package func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inline(__always) package func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) package func setBE16(_ offset: Int, _ v: UInt16) {
        storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
    @inline(__always) package func setBE32(_ offset: Int, _ v: UInt32) {
        storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
    @inline(__always) package func setBE64(_ offset: Int, _ v: UInt64) {
        storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
}
