internal import CSodium
import CairnWire

/// X25519 key agreement (RFC 7748), for per-round keys and licensee delivery keys.
public enum X25519 {
    /// The size of keys and shared secrets in bytes.
    public static let keyByteCount = 32

    /// An X25519 public key (a Montgomery u-coordinate).
    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        /// The 32-byte u-coordinate.
        public let rawRepresentation: [UInt8]

        /// Wraps a 32-byte public key.
        public init(rawRepresentation: [UInt8]) throws {
            guard rawRepresentation.count == keyByteCount else {
                throw CryptoError(.invalidKey, "an X25519 public key has 32 bytes, not \(rawRepresentation.count)")
            }
            self.rawRepresentation = rawRepresentation
        }

        /// `x25519:` and a short digest of the key, as for ``Ed25519/PublicKey/fingerprint``.
        public var fingerprint: String { keyFingerprint("x25519", rawRepresentation) }

        public var description: String { fingerprint }
    }

    /// An X25519 private key (a scalar), held in ``SecretBytes``.
    public struct PrivateKey: Sendable {
        /// The 32-byte scalar.
        public let rawRepresentation: SecretBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A fresh random key.
        public init() throws {
            try self.init(rawRepresentation: SecretBytes.random(count: keyByteCount))
        }

        /// The key with this 32-byte scalar (clamped by X25519 itself, as RFC 7748 says).
        public init(rawRepresentation: SecretBytes) throws {
            ensureSodium()
            guard rawRepresentation.count == keyByteCount else {
                throw CryptoError(.invalidKey, "an X25519 private key has 32 bytes, not \(rawRepresentation.count)")
            }
            var publicBytes = [UInt8](repeating: 0, count: keyByteCount)
            let status = rawRepresentation.withUnsafeBytes { crypto_scalarmult_base(&publicBytes, $0.baseAddress!) }
            try check(status, .invalidKey, "this X25519 private key gives no valid public key")
            self.rawRepresentation = rawRepresentation
            publicKey = try PublicKey(rawRepresentation: publicBytes)
        }

        /// The raw shared secret X25519(self, peer). Derive keys from it with
        /// ``BLAKE2b/deriveKey(from:domain:context:)``; never use it as a key directly.
        ///
        /// - Throws: ``CryptoError/Code/weakPeerKey`` when the result is all zeros (the peer sent a
        ///   low-order point), as RFC 7748 section 6.1 recommends.
        public func sharedSecret(with peer: PublicKey) throws -> SecretBytes {
            try SecretBytes(count: keyByteCount) { (out) throws in
                let status = rawRepresentation.withUnsafeBytes { sk in
                    crypto_scalarmult(out.baseAddress!, sk.baseAddress!, peer.rawRepresentation)
                }
                guard status == 0, sodium_is_zero(out.baseAddress!, out.count) == 0 else {
                    throw CryptoError(.weakPeerKey, "the peer's X25519 key gives an all-zero shared secret")
                }
            }
        }
    }
}
