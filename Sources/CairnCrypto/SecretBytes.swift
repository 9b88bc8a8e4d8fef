internal import CSodium
public import CairnWire

/// Secret material (keys, seeds, shares, plaintext key files) in memory that is zeroed when released.
///
/// The bytes are reachable only through ``withUnsafeBytes(_:)``; `description` never shows them,
/// so a `SecretBytes` that reaches a log line prints as redacted.
///
/// `@unchecked Sendable`: the storage is written only while a value is being built, before the
/// object is shared with anyone; from then on it is read-only.
public final class SecretBytes: @unchecked Sendable, CustomStringConvertible {
    let storage: UnsafeMutableRawBufferPointer

    /// Allocates `count` bytes and lets `body` fill them; the bytes are zeroed first.
    init<E: Error>(count: Int, initializingWith body: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        storage = .allocate(byteCount: max(count, 1), alignment: 16)
        let view = UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])
        view.initializeMemory(as: UInt8.self, repeating: 0)
        do {
            try body(view)
        } catch {
            sodium_memzero(storage.baseAddress, storage.count)
            storage.deallocate()
            throw error
        }
        byteCount = count
    }

    private let byteCount: Int

    /// Copies `bytes` into zeroed-on-release memory. The caller remains responsible for its own copy.
    public convenience init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count) { buffer in buffer.copyBytes(from: bytes) }
    }

    /// The bytes of `parts`, one after another, in one zeroed-on-release buffer.
    public convenience init(concatenating parts: [SecretBytes]) {
        self.init(count: parts.reduce(0) { $0 + $1.count }) { buffer in
            var offset = 0
            for part in parts {
                part.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).copyMemory(from: $0) }
                offset += part.count
            }
        }
    }

    /// A copy of the bytes in `range`.
    public func subrange(_ range: Range<Int>) -> SecretBytes {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range outside the secret")
        return withUnsafeBytes { SecretBytes(copying: $0[range]) }
    }

    /// Takes the bytes a writer holds (a saved state with keys in it) and zeroes the writer's
    /// buffer. Give the writer enough capacity up front: bytes left behind by an earlier
    /// reallocation cannot be reached to zero them.
    public convenience init(draining writer: inout ByteWriter) {
        self.init(copying: writer.bytes)
        writer.withUnsafeMutableBytes { if let base = $0.baseAddress { sodium_memzero(base, $0.count) } }
    }

    /// Fresh random bytes from the operating system's CSPRNG.
    public static func random(count: Int) -> SecretBytes {
        ensureSodium()
        return SecretBytes(count: count) { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
    }

    deinit {
        sodium_memzero(storage.baseAddress, storage.count)
        storage.deallocate()
    }

    /// The number of secret bytes.
    public var count: Int { byteCount }

    /// Calls `body` with a read-only view of the bytes. Do not let the pointer escape.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<byteCount]))
    }

    /// Compares with `other` in time that depends only on the lengths.
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        withUnsafeBytes { a in other.withUnsafeBytes { b in ConstantTime.equals(a, b) } }
    }

    public var description: String { "SecretBytes(\(byteCount) bytes, redacted)" }
}

/// Zeroing memory that held secrets or unreleased plaintext, in a way the compiler cannot elide.
public enum SecureMemory {
    /// Overwrites `buffer` with zeros (libsodium's `sodium_memzero`).
    public static func zero(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        sodium_memzero(base, buffer.count)
    }
}

/// Comparisons whose running time does not depend on the contents compared.
public enum ConstantTime {
    /// Whether `a` and `b` are equal; only the lengths (which are public) affect the timing.
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        ensureSodium()
        guard a.count == b.count else { return false }
        guard a.count > 0 else { return true }
        return sodium_memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
    }

    /// Whether `a` and `b` are equal; only the lengths (which are public) affect the timing.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { a in b.withUnsafeBytes { b in equals(a, b) } }
    }
}

extension ByteReader {
    /// Reads exactly `count` secret bytes into ``SecretBytes``, zeroing the temporary copy.
    public mutating func secret(_ count: Int, _ field: String) throws(WireError) -> SecretBytes {
        var raw = try fixed(count, field)
        defer { raw.withUnsafeMutableBytes { if let base = $0.baseAddress { sodium_memzero(base, $0.count) } } }
        return SecretBytes(copying: raw)
    }
}
