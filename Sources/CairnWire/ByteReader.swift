/// Reads a canonical encoding written by ``ByteWriter``, refusing anything malformed.
///
/// Every read checks bounds and throws ``WireError`` with code ``WireError/Code/truncated``
/// instead of reading past the end; length prefixes are checked against a caller-given maximum
/// before anything is allocated; ``finish()`` refuses trailing bytes, so an encoding is accepted
/// only if it is exactly canonical.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    /// The offset of the next byte to read.
    public private(set) var offset: Int

    /// Starts reading `bytes` from the beginning.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    /// The number of bytes not yet read.
    public var remaining: Int { bytes.count - offset }

    /// Reads one byte.
    public mutating func u8(_ field: String) throws(WireError) -> UInt8 { try fixed(1, field)[0] }

    /// Reads a little-endian 16-bit unsigned integer.
    public mutating func u16(_ field: String) throws(WireError) -> UInt16 { try littleEndian(field) }

    /// Reads a little-endian 32-bit unsigned integer.
    public mutating func u32(_ field: String) throws(WireError) -> UInt32 { try littleEndian(field) }

    /// Reads a little-endian 64-bit unsigned integer.
    public mutating func u64(_ field: String) throws(WireError) -> UInt64 { try littleEndian(field) }

    /// Reads a boolean; any byte other than 0 or 1 is refused.
    public mutating func bool(_ field: String) throws(WireError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let other: throw WireError(.invalidValue, "\(field): \(other) is not a boolean (0 or 1)")
        }
    }

    /// Reads exactly `count` bytes.
    public mutating func fixed(_ count: Int, _ field: String) throws(WireError) -> [UInt8] {
        guard count >= 0, count <= remaining else {
            throw WireError(
                .truncated,
                "\(field): needs \(count) bytes at offset \(offset), only \(remaining) left"
            )
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Reads `count` little-endian 32-bit words in one copy (a masked vector).
    public mutating func u32Words(_ count: Int, _ field: String) throws(WireError) -> [UInt32] {
        guard count >= 0, count <= remaining / 4 else {
            throw WireError(
                .truncated,
                "\(field): needs \(count) words at offset \(offset), only \(remaining) bytes left"
            )
        }
        let start = offset
        offset += 4 * count
        return [UInt32](unsafeUninitializedCapacity: count) { words, initialized in
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(words).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: raw[start..<start + 4 * count])
                )
            }
            #if _endian(big)
            for i in 0..<count { words[i] = UInt32(littleEndian: words[i]) }
            #endif
            initialized = count
        }
    }

    /// Reads a 32-bit length, refuses it above `maximum`, then reads that many bytes.
    public mutating func lengthPrefixed(_ field: String, maximum: Int) throws(WireError) -> [UInt8] {
        let length = try u32(field + " length")
        guard Int(length) <= maximum else {
            throw WireError(.tooLarge, "\(field): length \(length) exceeds the maximum of \(maximum)")
        }
        return try fixed(Int(length), field)
    }

    /// Reads UTF-8 text with a 32-bit length prefix; invalid UTF-8 is refused.
    public mutating func string(_ field: String, maximum: Int) throws(WireError) -> String {
        try decodeUTF8(try lengthPrefixed(field, maximum: maximum), field)
    }

    /// Reads a label with a one-byte length prefix; invalid UTF-8 is refused.
    public mutating func label(_ field: String) throws(WireError) -> String {
        let count = try u8(field + " length")
        return try decodeUTF8(try fixed(Int(count), field), field)
    }

    /// Succeeds only if every byte has been read.
    public func finish() throws(WireError) {
        guard remaining == 0 else {
            throw WireError(.trailingBytes, "\(remaining) unexpected bytes after the end at offset \(offset)")
        }
    }

    private mutating func littleEndian<T: FixedWidthInteger>(_ field: String) throws(WireError) -> T {
        let raw = try fixed(MemoryLayout<T>.size, field)
        return raw.reversed().reduce(T(0)) { ($0 << 8) | T($1) }
    }

    private func decodeUTF8(_ raw: [UInt8], _ field: String) throws(WireError) -> String {
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw WireError(.invalidValue, "\(field): not valid UTF-8")
        }
        return text
    }
}
