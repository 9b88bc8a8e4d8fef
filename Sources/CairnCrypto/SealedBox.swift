internal import CSodium
import CairnWire

/// Anonymous public-key encryption to an X25519 key (libsodium sealed boxes): an ephemeral key
/// pair per message, so only the recipient can open it and the sender stays anonymous.
/// Cairn uses it to send a fresh file key to a licensee.
public enum SealedBox {
    /// The bytes a sealed box adds to its message.
    public static let overheadByteCount = crypto_box_sealbytes()

    /// Seals `message` to `recipient`.
    public static func seal(_ message: [UInt8], to recipient: X25519.PublicKey) throws -> [UInt8] {
        try message.withUnsafeBytes { (m) throws in try seal(m, to: recipient) }
    }

    /// Seals secret bytes (a file key) to `recipient`.
    public static func seal(_ secret: SecretBytes, to recipient: X25519.PublicKey) throws -> [UInt8] {
        try secret.withUnsafeBytes { (m) throws in try seal(m, to: recipient) }
    }

    private static func seal(_ message: UnsafeRawBufferPointer, to recipient: X25519.PublicKey) throws -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: message.count + overheadByteCount)
        let status = crypto_box_seal(
            &out,
            message.baseAddress?.assumingMemoryBound(to: UInt8.self),
            UInt64(message.count),
            recipient.rawRepresentation
        )
        try check(status, .weakPeerKey, "cannot seal to this X25519 public key")
        return out
    }

    /// Opens a sealed box addressed to `recipient`; the content goes straight into ``SecretBytes``.
    ///
    /// - Throws: ``CryptoError/Code/truncatedCiphertext`` when shorter than the overhead;
    ///   ``CryptoError/Code/authenticationFailed`` when tampered or sealed to another key.
    public static func open(_ box: [UInt8], recipient: X25519.PrivateKey) throws -> SecretBytes {
        ensureSodium()
        guard box.count >= overheadByteCount else {
            throw CryptoError(.truncatedCiphertext, "a sealed box of \(box.count) bytes is shorter than its overhead")
        }
        return try SecretBytes(count: box.count - overheadByteCount) { (out) throws in
            let status = recipient.rawRepresentation.withUnsafeBytes { sk in
                crypto_box_seal_open(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    box,
                    UInt64(box.count),
                    recipient.publicKey.rawRepresentation,
                    sk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                )
            }
            try check(status, .authenticationFailed, "sealed box did not open (tampered, or sealed to another key)")
        }
    }
}
