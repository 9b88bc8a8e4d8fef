internal import CSodium
import CairnWire

/// The ChaCha20 keystream of RFC 8439: Cairn's pseudorandom generator for masks and for the
/// randomness of stochastic rounding.
///
/// `PRG(seed)` is the keystream of ChaCha20 with key = the 32-byte seed, nonce = twelve zero
/// bytes and the block counter starting at 0. Block `b` covers keystream bytes `64·b ..< 64·b + 64`.
/// Any block can be produced directly, so one keystream can be expanded in pieces, by several
/// threads, without producing what comes before. A seed must be used for one purpose only
/// (derive it with ``BLAKE2b/deriveKey(from:domain:context:)``); the zero nonce is safe only then.
///
/// `Sendable`: the seed is immutable.
public struct ChaCha20Keystream: Sendable {
    /// The size of a seed in bytes.
    public static let seedByteCount = 32
    /// The size of one keystream block in bytes.
    public static let blockByteCount = 64
    /// The number of blocks in one keystream (the RFC 8439 block counter is 32 bits).
    public static let blockCount: UInt64 = 1 << 32

    private let seed: SecretBytes

    /// A keystream from a 32-byte seed.
    public init(seed: SecretBytes) throws {
        guard seed.count == Self.seedByteCount else {
            throw CryptoError(.invalidKey, "a keystream seed has 32 bytes, not \(seed.count)")
        }
        self.seed = seed
    }

    /// Overwrites `buffer` with keystream bytes starting at the first byte of block `block`.
    ///
    /// A `buffer` whose length is not a multiple of 64 receives a prefix of its last block.
    /// Throws ``CryptoError/Code/keystreamExhausted`` when the range runs past block 2^32 − 1.
    public func fill(_ buffer: UnsafeMutableRawBufferPointer, fromBlock block: UInt64) throws {
        let blocks = (UInt64(buffer.count) + 63) / 64
        guard block <= Self.blockCount, blocks <= Self.blockCount - block else {
            throw CryptoError(
                .keystreamExhausted,
                "\(blocks) keystream blocks from block \(block) run past the 2^32-block counter"
            )
        }
        guard let base = buffer.baseAddress else { return }
        ensureSodium()
        // libsodium has no "keystream from block n" call; XOR over zeros is how it makes one.
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        let out = base.assumingMemoryBound(to: UInt8.self)
        let status = seed.withUnsafeBytes { key in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 12) { nonce in
                nonce.initialize(repeating: 0)
                return crypto_stream_chacha20_ietf_xor_ic(
                    out,
                    out,
                    UInt64(buffer.count),
                    nonce.baseAddress!,
                    UInt32(truncatingIfNeeded: block),
                    key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                )
            }
        }
        try check(status, .internalFailure, "crypto_stream_chacha20_ietf_xor_ic failed")
    }
}
