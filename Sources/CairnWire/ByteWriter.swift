/// Builds the canonical encoding of a value, field by field (see `Protocol/README.md`).
///
/// Integers are fixed-width little-endian; variable-length byte strings and text carry a
/// 32-bit length prefix; fixed-size fields (keys, digests, nonces) are written raw.
/// There is no padding and no field tag: the order of the calls is the format.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Makes an empty writer with room for `capacity` bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends one byte.
    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    /// Appends a 16-bit unsigned integer, little-endian.
    public mutating func u16(_ value: UInt16) { appendLittleEndian(value) }

    /// Appends a 32-bit unsigned integer, little-endian.
    public mutating func u32(_ value: UInt32) { appendLittleEndian(value) }

    /// Appends a 64-bit unsigned integer, little-endian.
    public mutating func u64(_ value: UInt64) { appendLittleEndian(value) }

    /// Appends a boolean as one byte, 0 or 1.
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// Appends bytes as they are: for fields whose size the format fixes (keys, digests, nonces).
    public mutating func raw(_ value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }

    /// Appends 32-bit words, little-endian, with no count (a masked vector).
    public mutating func u32Words(_ words: UnsafeBufferPointer<UInt32>) {
        #if _endian(big)
        for word in words { u32(word) }
        #else
        bytes.append(contentsOf: UnsafeRawBufferPointer(words))
        #endif
    }

    /// Appends a 32-bit length, then the bytes.
    public mutating func lengthPrefixed(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max), "byte string too long for a 32-bit length")
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends UTF-8 text with a 32-bit length prefix.
    public mutating func string(_ value: String) { lengthPrefixed(Array(value.utf8)) }

    /// Appends a short ASCII label with a one-byte length prefix (domain-separation labels, names).
    public mutating func label(_ value: String) {
        let utf8 = Array(value.utf8)
        precondition(utf8.count <= Int(UInt8.max), "label longer than 255 bytes")
        u8(UInt8(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Calls `body` with the written bytes, writable in place (to zero secrets once copied out).
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        bytes.withUnsafeMutableBytes(body)
    }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
