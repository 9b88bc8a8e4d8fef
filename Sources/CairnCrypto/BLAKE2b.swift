internal import CSodium
import CairnWire

/// BLAKE2b (RFC 7693), optionally keyed, always domain-separated: the hashed bytes are
/// `domain prefix ‖ message` (see ``Domain``).
///
/// Use the one-shot ``hash(_:domain:key:outputByteCount:)`` for small inputs, or an instance
/// to stream large ones. Not `Sendable`: one owner updates and finalises.
public final class BLAKE2b {
    /// The smallest digest size libsodium allows.
    public static let minimumOutputByteCount = Int(crypto_generichash_BYTES_MIN)
    /// The largest digest size (BLAKE2b-512).
    public static let maximumOutputByteCount = Int(crypto_generichash_BYTES_MAX)
    /// The largest key size.
    public static let maximumKeyByteCount = Int(crypto_generichash_KEYBYTES_MAX)

    private let state: UnsafeMutableRawBufferPointer
    private let outputByteCount: Int
    private var finalized = false

    /// Starts a hash in `domain`, keyed when `key` is given (at most 64 bytes).
    public convenience init(domain: Domain, key: SecretBytes? = nil, outputByteCount: Int = 32) throws {
        try self.init(rawKey: key, outputByteCount: outputByteCount)
        update(domain.prefix)
    }

    /// Starts a hash with no domain prefix (RFC 7693 test vectors; not for protocol use).
    init(rawKey key: SecretBytes?, outputByteCount: Int) throws {
        ensureSodium()
        guard (Self.minimumOutputByteCount...Self.maximumOutputByteCount).contains(outputByteCount) else {
            throw CryptoError(.invalidKey, "a BLAKE2b digest has 16–64 bytes, not \(outputByteCount)")
        }
        if let key, key.count < 1 || key.count > Self.maximumKeyByteCount {
            throw CryptoError(.invalidKey, "a BLAKE2b key has 1–64 bytes, not \(key.count)")
        }
        self.outputByteCount = outputByteCount
        state = .allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        let typed = OpaquePointer(state.baseAddress!)
        let status: Int32
        if let key {
            status = key.withUnsafeBytes {
                crypto_generichash_init(
                    typed,
                    $0.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    $0.count,
                    outputByteCount
                )
            }
        } else {
            status = crypto_generichash_init(typed, nil, 0, outputByteCount)
        }
        // Fully initialised here, so a throw runs deinit, which zeroes and frees the state.
        guard status == 0 else { throw CryptoError(.internalFailure, "BLAKE2b initialisation failed") }
    }

    deinit {
        sodium_memzero(state.baseAddress, state.count)
        state.deallocate()
    }

    /// Adds bytes to the hash.
    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Adds bytes to the hash without copying them.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!finalized, "BLAKE2b updated after finalize()")
        // crypto_generichash_update cannot fail on a valid state; its status is checked regardless.
        let status = crypto_generichash_update(
            OpaquePointer(state.baseAddress!),
            bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
            UInt64(bytes.count)
        )
        precondition(status == 0, "crypto_generichash_update failed")
    }

    /// The digest. Call once.
    public func finalize() throws -> [UInt8] {
        precondition(!finalized, "BLAKE2b finalized twice")
        finalized = true
        var out = [UInt8](repeating: 0, count: outputByteCount)
        let status = crypto_generichash_final(
            OpaquePointer(state.baseAddress!),
            &out,
            outputByteCount
        )
        try check(status, .internalFailure, "BLAKE2b finalisation failed")
        return out
    }

    /// The digest of `message` in `domain`, keyed when `key` is given.
    public static func hash(
        _ message: [UInt8],
        domain: Domain,
        key: SecretBytes? = nil,
        outputByteCount: Int = 32
    ) throws -> [UInt8] {
        let hasher = try BLAKE2b(domain: domain, key: key, outputByteCount: outputByteCount)
        hasher.update(message)
        return try hasher.finalize()
    }

    /// Derives a 256-bit key from secret input keying material (a shared secret, a seed):
    /// BLAKE2b-256 keyed with `material`, over `domain prefix ‖ context`.
    /// `context` binds whatever the key is for (parties, round, session).
    public static func deriveKey(
        from material: SecretBytes,
        domain: Domain,
        context: [UInt8]
    ) throws -> SymmetricKey {
        let hasher = try BLAKE2b(domain: domain, key: material, outputByteCount: SymmetricKey.byteCount)
        hasher.update(context)
        var digest = try hasher.finalize()
        defer { digest.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) } }
        return try SymmetricKey(SecretBytes(copying: digest))
    }
}
