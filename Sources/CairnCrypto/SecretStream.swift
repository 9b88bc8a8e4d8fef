internal import CSodium
import CairnWire

/// libsodium's secretstream (XChaCha20-Poly1305 chunks) for large payloads: masked model updates,
/// encrypted model containers.
///
/// A stream is a 24-byte header followed by chunks, each `plaintext + 17` bytes. Every chunk
/// authenticates its position, so chunks cannot be reordered, dropped or duplicated; the last
/// chunk carries the final tag, and a stream that ends without it is refused
/// (``Decryptor/finish()`` throws ``CryptoError/Code/truncatedStream``).
public enum SecretStream {
    /// The size of the stream header in bytes.
    public static let headerByteCount = 24
    /// The bytes each chunk adds to its plaintext.
    public static let chunkOverheadByteCount = 17

    private static let tagMessage = UInt8(crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
    private static let tagFinal = UInt8(crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    private static var stateByteCount: Int { crypto_secretstream_xchacha20poly1305_statebytes() }

    /// Encrypts a stream chunk by chunk. Not `Sendable`: one owner pushes in order.
    public final class Encryptor {
        /// The header to send before the first chunk.
        public let header: [UInt8]
        private let state: UnsafeMutableRawBufferPointer
        private var finished = false

        /// Starts a stream under `key` with a fresh random header.
        public init(key: SymmetricKey) throws {
            ensureSodium()
            let state = UnsafeMutableRawBufferPointer.allocate(byteCount: SecretStream.stateByteCount, alignment: 64)
            var header = [UInt8](repeating: 0, count: headerByteCount)
            let status = key.bytes.withUnsafeBytes { k in
                crypto_secretstream_xchacha20poly1305_init_push(
                    state.baseAddress!.assumingMemoryBound(to: crypto_secretstream_xchacha20poly1305_state.self),
                    &header,
                    k.baseAddress!
                )
            }
            self.state = state
            self.header = header
            // Fully initialised here, so a throw runs deinit, which zeroes and frees the state.
            guard status == 0 else { throw CryptoError(.internalFailure, "secretstream initialisation failed") }
        }

        deinit {
            sodium_memzero(state.baseAddress, state.count)
            state.deallocate()
        }

        /// Encrypts one chunk; `isFinal` marks the last one, after which pushing is refused.
        public func push(
            _ plaintext: [UInt8],
            isFinal: Bool = false,
            authenticating associatedData: [UInt8] = []
        ) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: plaintext.count + chunkOverheadByteCount)
            try plaintext.withUnsafeBytes { (p) throws in
                try out.withUnsafeMutableBytes { (o) throws in
                    try push(p, into: o, isFinal: isFinal, authenticating: associatedData)
                }
            }
            return out
        }

        /// Encrypts one chunk into `output` (`plaintext.count + 17` bytes), allocating nothing.
        public func push(
            _ plaintext: UnsafeRawBufferPointer,
            into output: UnsafeMutableRawBufferPointer,
            isFinal: Bool = false,
            authenticating associatedData: [UInt8] = []
        ) throws {
            guard !finished else { throw CryptoError(.streamFinished, "the stream already ended with its final chunk") }
            precondition(output.count == plaintext.count + chunkOverheadByteCount, "output must be plaintext size + 17")
            let status = associatedData.withUnsafeBufferPointer { ad in
                crypto_secretstream_xchacha20poly1305_push(
                    state.baseAddress!.assumingMemoryBound(to: crypto_secretstream_xchacha20poly1305_state.self),
                    output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    nil,
                    plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    UInt64(plaintext.count),
                    ad.baseAddress,
                    UInt64(ad.count),
                    isFinal ? tagFinal : tagMessage
                )
            }
            try check(status, .internalFailure, "secretstream encryption failed")
            if isFinal { finished = true }
        }
    }

    /// Checks and decrypts a stream chunk by chunk. Not `Sendable`: one owner pulls in order.
    public final class Decryptor {
        private let state: UnsafeMutableRawBufferPointer
        /// Whether the final chunk has been read.
        public private(set) var isComplete = false

        /// Starts reading a stream under `key` from its 24-byte header.
        public init(key: SymmetricKey, header: [UInt8]) throws {
            ensureSodium()
            guard header.count == headerByteCount else {
                throw CryptoError(.invalidKey, "a secretstream header has 24 bytes, not \(header.count)")
            }
            let state = UnsafeMutableRawBufferPointer.allocate(byteCount: SecretStream.stateByteCount, alignment: 64)
            let status = key.bytes.withUnsafeBytes { k in
                crypto_secretstream_xchacha20poly1305_init_pull(
                    state.baseAddress!.assumingMemoryBound(to: crypto_secretstream_xchacha20poly1305_state.self),
                    header,
                    k.baseAddress!
                )
            }
            self.state = state
            // Fully initialised here, so a throw runs deinit, which zeroes and frees the state.
            guard status == 0 else { throw CryptoError(.invalidKey, "invalid secretstream header") }
        }

        deinit {
            sodium_memzero(state.baseAddress, state.count)
            state.deallocate()
        }

        /// Checks and decrypts the next chunk; returns its plaintext and whether it was the final one.
        public func pull(
            _ chunk: [UInt8],
            authenticating associatedData: [UInt8] = []
        ) throws -> (plaintext: [UInt8], isFinal: Bool) {
            var out = [UInt8](repeating: 0, count: max(chunk.count - chunkOverheadByteCount, 0))
            let isFinal = try chunk.withUnsafeBytes { (c) throws in
                try out.withUnsafeMutableBytes { (o) throws in
                    try pull(c, into: o, authenticating: associatedData)
                }
            }
            return (out, isFinal)
        }

        /// Checks and decrypts the next chunk into `output` (`chunk.count - 17` bytes); returns
        /// whether it was the final one. `output` is zeroed when this throws.
        public func pull(
            _ chunk: UnsafeRawBufferPointer,
            into output: UnsafeMutableRawBufferPointer,
            authenticating associatedData: [UInt8] = []
        ) throws -> Bool {
            guard !isComplete else {
                throw CryptoError(.dataAfterFinalChunk, "data follows the final chunk of the stream")
            }
            guard chunk.count >= chunkOverheadByteCount else {
                throw CryptoError(.truncatedCiphertext, "a chunk of \(chunk.count) bytes is shorter than its overhead")
            }
            precondition(output.count == chunk.count - chunkOverheadByteCount, "output must be chunk size - 17")
            var tag: UInt8 = 0
            let status = associatedData.withUnsafeBufferPointer { ad in
                crypto_secretstream_xchacha20poly1305_pull(
                    state.baseAddress!.assumingMemoryBound(to: crypto_secretstream_xchacha20poly1305_state.self),
                    output.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    nil,
                    &tag,
                    chunk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    UInt64(chunk.count),
                    ad.baseAddress,
                    UInt64(ad.count)
                )
            }
            guard status == 0 else {
                if let base = output.baseAddress { sodium_memzero(base, output.count) }
                throw CryptoError(
                    .authenticationFailed,
                    "stream chunk did not authenticate (tampered, reordered, wrong key or wrong associated data)"
                )
            }
            switch tag {
            case tagMessage:
                return false
            case tagFinal:
                isComplete = true
                return true
            default:
                if let base = output.baseAddress { sodium_memzero(base, output.count) }
                throw CryptoError(.unexpectedStreamTag, "stream chunk has tag \(tag), which Cairn never writes")
            }
        }

        /// Succeeds only if the final chunk has been read: call it when the input ends.
        public func finish() throws {
            guard isComplete else {
                throw CryptoError(.truncatedStream, "the stream ended before its final chunk")
            }
        }
    }
}
