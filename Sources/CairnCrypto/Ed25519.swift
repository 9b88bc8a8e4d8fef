internal import CSodium
import CairnWire

/// Ed25519 signatures (RFC 8032), for long-term identities and broker-signed documents.
///
/// Every public signing and verifying call takes a ``Domain``: the signed bytes are
/// `domain prefix ‖ message`, never the bare message.
public enum Ed25519 {
    /// The size of a signature in bytes.
    public static let signatureByteCount = 64
    /// The size of a public key in bytes.
    public static let publicKeyByteCount = 32
    /// The size of a private-key seed in bytes.
    public static let seedByteCount = 32
    /// The first line of every C2SP tlog-cosignature/v1 message, its domain separation.
    public static let cosignatureHeader = Array("cosignature/v1\n".utf8)

    /// An Ed25519 public key.
    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        /// The 32-byte encoding of the point.
        public let rawRepresentation: [UInt8]

        /// Wraps a 32-byte encoded public key.
        public init(rawRepresentation: [UInt8]) throws {
            guard rawRepresentation.count == publicKeyByteCount else {
                throw CryptoError(.invalidKey, "an Ed25519 public key has 32 bytes, not \(rawRepresentation.count)")
            }
            self.rawRepresentation = rawRepresentation
        }

        /// Whether `signature` is a valid signature of `message` in `domain` by this key.
        public func isValidSignature(_ signature: [UInt8], for message: [UInt8], domain: Domain) -> Bool {
            isValidRawSignature(signature, for: domain.framing(message))
        }

        /// Verifies a signature over the bare message (RFC 8032 test vectors; not for protocol use).
        func isValidRawSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            ensureSodium()
            guard signature.count == signatureByteCount else { return false }
            return message.withUnsafeBufferPointer { m in
                crypto_sign_verify_detached(signature, m.baseAddress, UInt64(m.count), rawRepresentation) == 0
            }
        }

        /// Whether `signature` is a valid signature of a C2SP signed note's text by this key (see
        /// ``PrivateKey/noteSignature(for:)``).
        public func isValidNoteSignature(_ signature: [UInt8], for noteText: [UInt8]) -> Bool {
            isValidRawSignature(signature, for: noteText)
        }

        /// Whether `signature` is a C2SP tlog-cosignature/v1 signature of `message` by this key
        /// (see ``PrivateKey/cosignature(for:)``); false for a message without the header.
        public func isValidCosignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            message.starts(with: cosignatureHeader) && isValidRawSignature(signature, for: message)
        }

        /// The X25519 key of the same point (libsodium's `crypto_sign_ed25519_pk_to_curve25519`,
        /// the birational map of RFC 7748 §4.1), so that a member's identity key can also receive
        /// encrypted bodies (`Protocol/README.md`, "Sealed bodies").
        ///
        /// - Throws: ``CryptoError/Code/invalidKey`` for a key that is not a point of the main
        ///   subgroup, or of small order.
        public func x25519() throws -> X25519.PublicKey {
            ensureSodium()
            var out = [UInt8](repeating: 0, count: X25519.keyByteCount)
            let status = crypto_sign_ed25519_pk_to_curve25519(&out, rawRepresentation)
            try check(status, .invalidKey, "this Ed25519 key has no X25519 counterpart")
            return try X25519.PublicKey(rawRepresentation: out)
        }

        /// A short, stable name for this key that people can compare: `ed25519:` and the first
        /// 16 bytes of BLAKE2b-256 over the key in the ``Domain/keyFingerprint`` domain, in hex.
        public var fingerprint: String { keyFingerprint("ed25519", rawRepresentation) }

        public var description: String { fingerprint }
    }

    /// An Ed25519 private key. The seed and expanded key live in ``SecretBytes``.
    public struct PrivateKey: Sendable {
        /// libsodium's 64-byte secret key: seed ‖ public key.
        let secretKey: SecretBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A fresh random key.
        public init() throws {
            try self.init(seed: SecretBytes.random(count: seedByteCount))
        }

        /// The key determined by a 32-byte seed (as stored in a keystore).
        public init(seed: SecretBytes) throws {
            ensureSodium()
            guard seed.count == seedByteCount else {
                throw CryptoError(.invalidKey, "an Ed25519 seed has 32 bytes, not \(seed.count)")
            }
            var publicBytes = [UInt8](repeating: 0, count: publicKeyByteCount)
            secretKey = try SecretBytes(count: 64) { (sk) throws in
                let status = seed.withUnsafeBytes { s in
                    crypto_sign_seed_keypair(&publicBytes, sk.baseAddress!, s.baseAddress!)
                }
                try check(status, .internalFailure, "Ed25519 key generation failed")
            }
            publicKey = try PublicKey(rawRepresentation: publicBytes)
        }

        /// The 32-byte seed this key was made from.
        public var seed: SecretBytes {
            secretKey.withUnsafeBytes { SecretBytes(copying: $0.prefix(seedByteCount)) }
        }

        /// The X25519 private key matching ``PublicKey/x25519()`` (libsodium's
        /// `crypto_sign_ed25519_sk_to_curve25519`: the clamped first half of SHA-512 of the seed).
        public func x25519() throws -> X25519.PrivateKey {
            ensureSodium()
            let scalar = try SecretBytes(count: X25519.keyByteCount) { (out) throws in
                let status = secretKey.withUnsafeBytes { sk in
                    crypto_sign_ed25519_sk_to_curve25519(out.baseAddress!, sk.baseAddress!)
                }
                try check(status, .internalFailure, "the X25519 counterpart of an Ed25519 key failed")
            }
            return try X25519.PrivateKey(rawRepresentation: scalar)
        }

        /// Signs `message` in `domain`.
        public func signature(for message: [UInt8], domain: Domain) throws -> [UInt8] {
            try rawSignature(for: domain.framing(message))
        }

        /// Signs the text of a C2SP signed note (c2sp.org/signed-note), whose format fixes the
        /// signed bytes to the note text itself, with no prefix.
        ///
        /// Use it only with a key that signs nothing but notes (the audit log's checkpoint key):
        /// for such a key, the note format (UTF-8 text ending in a newline, its first line naming
        /// the log) is the whole domain, so no note signature can be read as another message.
        public func noteSignature(for noteText: [UInt8]) throws -> [UInt8] {
            try rawSignature(for: noteText)
        }

        /// A C2SP tlog-cosignature/v1 signature (c2sp.org/tlog-cosignature): over `message`, which
        /// must start with `cosignature/v1\n` (``Ed25519/cosignatureHeader``), the format's own
        /// domain separation. A member's identity key makes these beside its Cairn signatures:
        /// every Cairn-domain message starts with a length byte and `cairn/`, never with `co`, so
        /// neither kind can be taken for the other.
        public func cosignature(for message: [UInt8]) throws -> [UInt8] {
            guard message.starts(with: cosignatureHeader) else {
                throw CryptoError(.internalFailure, "a cosignature message starts with cosignature/v1")
            }
            return try rawSignature(for: message)
        }

        /// Signs the bare message (RFC 8032 test vectors; not for protocol use).
        func rawSignature(for message: [UInt8]) throws -> [UInt8] {
            ensureSodium()
            var signature = [UInt8](repeating: 0, count: signatureByteCount)
            let status = secretKey.withUnsafeBytes { sk in
                message.withUnsafeBufferPointer { m in
                    crypto_sign_detached(&signature, nil, m.baseAddress, UInt64(m.count), sk.baseAddress!)
                }
            }
            try check(status, .internalFailure, "Ed25519 signing failed")
            return signature
        }
    }
}

/// `kind:` and the first 16 bytes of a domain-separated BLAKE2b-256 of the key, in hex.
func keyFingerprint(_ kind: String, _ key: [UInt8]) -> String {
    // BLAKE2b with a valid output size and no key cannot fail.
    let digest = (try? BLAKE2b.hash(key, domain: .keyFingerprint, outputByteCount: 32)) ?? []
    return kind + ":" + Hex.encode(digest.prefix(16))
}
