public import CairnWire

/// An error raised by Cairn's cryptography.
///
/// Equality compares ``code`` only. Messages never contain key material, plaintext or shares.
public typealias CryptoError = CairnError<CryptoErrorDomain>

/// The domain tag of ``CryptoError``.
public enum CryptoErrorDomain: Sendable {}

extension ErrorCode where Domain == CryptoErrorDomain {
    /// A key, nonce or header has the wrong size or is not a valid encoding.
    public static let invalidKey = Self("invalidKey")
    /// A peer's X25519 public key gave an all-zero (or low-order) shared secret.
    public static let weakPeerKey = Self("weakPeerKey")
    /// A ciphertext, stream chunk or sealed box did not authenticate: tampered bytes, wrong
    /// key or wrong associated data (indistinguishable by design).
    public static let authenticationFailed = Self("authenticationFailed")
    /// A ciphertext is shorter than its fixed overhead.
    public static let truncatedCiphertext = Self("truncatedCiphertext")
    /// A secretstream ended without its final chunk.
    public static let truncatedStream = Self("truncatedStream")
    /// A secretstream chunk arrived after the final chunk.
    public static let dataAfterFinalChunk = Self("dataAfterFinalChunk")
    /// A secretstream chunk carries a tag Cairn never writes.
    public static let unexpectedStreamTag = Self("unexpectedStreamTag")
    /// A push was attempted on a secretstream that is already finished.
    public static let streamFinished = Self("streamFinished")
    /// A Shamir threshold or share count is out of range.
    public static let invalidThreshold = Self("invalidThreshold")
    /// A Shamir share has index 0 or a malformed value.
    public static let invalidShare = Self("invalidShare")
    /// Two Shamir shares have the same index.
    public static let duplicateShareIndex = Self("duplicateShareIndex")
    /// Fewer Shamir shares than the threshold were given.
    public static let notEnoughShares = Self("notEnoughShares")
    /// Shamir shares interpolate to a value that is not a valid secret.
    public static let inconsistentShares = Self("inconsistentShares")
    /// A keystore file is malformed (bad magic, version, parameters, lengths).
    public static let keystoreMalformed = Self("keystoreMalformed")
    /// A keystore could not be unlocked: wrong passphrase, or the file was modified.
    public static let keystoreLocked = Self("keystoreLocked")
    /// A keystore has no key under the requested name, or of the requested kind.
    public static let keyNotFound = Self("keyNotFound")
    /// A passphrase is empty or otherwise unusable.
    public static let invalidPassphrase = Self("invalidPassphrase")
    /// A keystream was asked for blocks past the end of its 2^32-block counter.
    public static let keystreamExhausted = Self("keystreamExhausted")
    /// libsodium reported a failure that inputs cannot explain (for example, out of memory).
    public static let internalFailure = Self("internalFailure")
}
