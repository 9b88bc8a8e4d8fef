internal import CSodium

/// SHA-256 (FIPS 180-4), for the audit log's RFC 6962 Merkle tree, whose hashes the RFC fixes.
///
/// Cairn hashes nothing else with SHA-256; everywhere else it uses domain-separated ``BLAKE2b``.
/// The Merkle tree's own domain separation is its one-byte prefixes (`0x00` leaf, `0x01` node).
public enum SHA256 {
    /// The size of a digest in bytes.
    public static let byteCount = 32

    /// The digest of the concatenation of `parts`.
    public static func hash(_ parts: [UInt8]...) -> [UInt8] {
        ensureSodium()
        var state = crypto_hash_sha256_state()
        var out = [UInt8](repeating: 0, count: byteCount)
        // These calls cannot fail for valid pointers; a failure is a broken libsodium.
        precondition(crypto_hash_sha256_init(&state) == 0, "crypto_hash_sha256_init failed")
        for part in parts {
            precondition(
                crypto_hash_sha256_update(&state, part, UInt64(part.count)) == 0,
                "crypto_hash_sha256_update failed"
            )
        }
        precondition(crypto_hash_sha256_final(&state, &out) == 0, "crypto_hash_sha256_final failed")
        return out
    }
}
