/// An error raised by Cairn's cryptography.
///
/// Equality compares ``code`` only. Messages never contain key material, plaintext or shares.
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable identifier for the kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A key, nonce or header has the wrong size or is not a valid encoding.
        public static let invalidKey = Code("invalidKey")
        /// A peer's X25519 public key gave an all-zero (or low-order) shared secret.
        public static let weakPeerKey = Code("weakPeerKey")
        /// A ciphertext, stream chunk or sealed box did not authenticate: tampered bytes, wrong
        /// key or wrong associated data (indistinguishable by design).
        public static let authenticationFailed = Code("authenticationFailed")
        /// A ciphertext is shorter than its fixed overhead.
        public static let truncatedCiphertext = Code("truncatedCiphertext")
        /// A secretstream ended without its final chunk.
        public static let truncatedStream = Code("truncatedStream")
        /// A secretstream chunk arrived after the final chunk.
        public static let dataAfterFinalChunk = Code("dataAfterFinalChunk")
        /// A secretstream chunk carries a tag Cairn never writes.
        public static let unexpectedStreamTag = Code("unexpectedStreamTag")
        /// A push was attempted on a secretstream that is already finished.
        public static let streamFinished = Code("streamFinished")
        /// A Shamir threshold or share count is out of range.
        public static let invalidThreshold = Code("invalidThreshold")
        /// A Shamir share has index 0 or a malformed value.
        public static let invalidShare = Code("invalidShare")
        /// Two Shamir shares have the same index.
        public static let duplicateShareIndex = Code("duplicateShareIndex")
        /// Fewer Shamir shares than the threshold were given.
        public static let notEnoughShares = Code("notEnoughShares")
        /// Shamir shares interpolate to a value that is not a valid secret.
        public static let inconsistentShares = Code("inconsistentShares")
        /// A keystore file is malformed (bad magic, version, parameters, lengths).
        public static let keystoreMalformed = Code("keystoreMalformed")
        /// A keystore could not be unlocked: wrong passphrase, or the file was modified.
        public static let keystoreLocked = Code("keystoreLocked")
        /// A keystore has no key under the requested name, or of the requested kind.
        public static let keyNotFound = Code("keyNotFound")
        /// A passphrase is empty or otherwise unusable.
        public static let invalidPassphrase = Code("invalidPassphrase")
        /// A keystream was asked for blocks past the end of its 2^32-block counter.
        public static let keystreamExhausted = Code("keystreamExhausted")
        /// libsodium reported a failure that inputs cannot explain (for example, out of memory).
        public static let internalFailure = Code("internalFailure")
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for a person.
    public let message: String
    /// Where the error was raised.
    public let location: String

    /// Makes an error with its source location.
    public init(_ code: Code, _ message: String, file: StaticString = #fileID, line: UInt = #line) {
        self.code = code
        self.message = message
        self.location = "\(file):\(line)"
    }

    public var description: String { message }

    public static func == (lhs: CryptoError, rhs: CryptoError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
