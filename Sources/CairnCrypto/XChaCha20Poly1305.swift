internal import CSodium
import CairnWire

/// XChaCha20-Poly1305 authenticated encryption with associated data (IETF construction, as in
/// draft-irtf-cfrg-xchacha). The 24-byte nonce is large enough to be chosen at random.
///
/// Ciphertexts are `encrypted bytes ‖ 16-byte tag`; the nonce travels separately.
public enum XChaCha20Poly1305 {
    /// The size of a nonce in bytes.
    public static let nonceByteCount = 24
    /// The size of the authentication tag in bytes.
    public static let tagByteCount = 16

    /// A 24-byte nonce.
    public struct Nonce: Hashable, Sendable {
        /// The nonce bytes.
        public let bytes: [UInt8]

        /// A fresh random nonce.
        public init() { bytes = SecureRandom.bytes(nonceByteCount) }

        /// Wraps 24 bytes.
        public init(bytes: [UInt8]) throws {
            guard bytes.count == nonceByteCount else {
                throw CryptoError(.invalidKey, "an XChaCha20-Poly1305 nonce has 24 bytes, not \(bytes.count)")
            }
            self.bytes = bytes
        }
    }

    /// Encrypts and authenticates `plaintext`, binding `associatedData`; returns ciphertext ‖ tag.
    public static func seal(
        _ plaintext: [UInt8],
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try plaintext.withUnsafeBytes { (p) throws in
            try seal(p, key: key, nonce: nonce, authenticating: associatedData)
        }
    }

    /// Encrypts secret bytes (a key file, a share); returns ciphertext ‖ tag.
    public static func seal(
        _ plaintext: SecretBytes,
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try plaintext.withUnsafeBytes { (p) throws in
            try seal(p, key: key, nonce: nonce, authenticating: associatedData)
        }
    }

    /// Encrypts `plaintext` into a new array of `plaintext.count + 16` bytes.
    public static func seal(
        _ plaintext: UnsafeRawBufferPointer,
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        // Uninitialised: libsodium writes every byte, so a zero-fill would be a wasted pass.
        try [UInt8](unsafeUninitializedCapacity: plaintext.count + tagByteCount) { buffer, count in
            try seal(
                UnsafeRawBufferPointer(plaintext),
                into: UnsafeMutableRawBufferPointer(buffer),
                key: key,
                nonce: nonce,
                authenticating: associatedData
            )
            count = buffer.count
        }
    }

    /// Encrypts `plaintext` into `output`, which must hold exactly `plaintext.count + 16` bytes.
    /// This form allocates nothing, for large payloads.
    public static func seal(
        _ plaintext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws {
        ensureSodium()
        precondition(output.count == plaintext.count + tagByteCount, "output must be plaintext size + 16")
        var written: UInt64 = 0
        let status = key.bytes.withUnsafeBytes { k in
            associatedData.withUnsafeBufferPointer { ad in
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    &written,
                    plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    UInt64(plaintext.count),
                    ad.baseAddress,
                    UInt64(ad.count),
                    nil,
                    nonce.bytes,
                    k.baseAddress!
                )
            }
        }
        try check(status, .internalFailure, "XChaCha20-Poly1305 encryption failed")
    }

    /// Checks and decrypts ciphertext ‖ tag.
    ///
    /// - Throws: ``CryptoError/Code/truncatedCiphertext`` when shorter than the tag;
    ///   ``CryptoError/Code/authenticationFailed`` when the bytes, key, nonce or associated data differ.
    public static func open(
        _ ciphertext: [UInt8],
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        // Uninitialised: on success libsodium writes every byte; on failure the array is discarded.
        try [UInt8](unsafeUninitializedCapacity: max(ciphertext.count - tagByteCount, 0)) { buffer, count in
            try ciphertext.withUnsafeBytes { (c) throws in
                try open(
                    c,
                    into: UnsafeMutableRawBufferPointer(buffer),
                    key: key,
                    nonce: nonce,
                    authenticating: associatedData
                )
            }
            count = buffer.count
        }
    }

    /// Like ``open(_:key:nonce:authenticating:)`` but the plaintext goes straight into ``SecretBytes``.
    public static func openSecret(
        _ ciphertext: [UInt8],
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws -> SecretBytes {
        try SecretBytes(count: max(ciphertext.count - tagByteCount, 0)) { (o) throws in
            try ciphertext.withUnsafeBytes { (c) throws in
                try open(c, into: o, key: key, nonce: nonce, authenticating: associatedData)
            }
        }
    }

    /// Checks and decrypts into `output` (`ciphertext.count - 16` bytes). Nothing useful is left
    /// in `output` when this throws: it is zeroed.
    public static func open(
        _ ciphertext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        key: SymmetricKey,
        nonce: Nonce,
        authenticating associatedData: [UInt8] = []
    ) throws {
        ensureSodium()
        guard ciphertext.count >= tagByteCount else {
            throw CryptoError(.truncatedCiphertext, "ciphertext of \(ciphertext.count) bytes is shorter than its tag")
        }
        precondition(output.count == ciphertext.count - tagByteCount, "output must be ciphertext size - 16")
        var written: UInt64 = 0
        let status = key.bytes.withUnsafeBytes { k in
            associatedData.withUnsafeBufferPointer { ad in
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    output.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    &written,
                    nil,
                    ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    UInt64(ciphertext.count),
                    ad.baseAddress,
                    UInt64(ad.count),
                    nonce.bytes,
                    k.baseAddress!
                )
            }
        }
        guard status == 0 else {
            if let base = output.baseAddress { sodium_memzero(base, output.count) }
            throw CryptoError(
                .authenticationFailed,
                "ciphertext did not authenticate (tampered, wrong key or wrong associated data)"
            )
        }
    }
}
