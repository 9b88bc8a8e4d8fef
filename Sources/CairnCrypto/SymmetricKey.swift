import CairnWire

/// A 256-bit symmetric key for ``XChaCha20Poly1305`` and ``SecretStream``.
public struct SymmetricKey: Sendable {
    /// The size of a key in bytes.
    public static let byteCount = 32

    /// The key bytes.
    public let bytes: SecretBytes

    /// A fresh random key.
    public init() { bytes = .random(count: Self.byteCount) }

    /// Wraps 32 secret bytes.
    public init(_ bytes: SecretBytes) throws {
        guard bytes.count == Self.byteCount else {
            throw CryptoError(.invalidKey, "a symmetric key has 32 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }
}
