public import CairnCrypto
public import CairnWire

extension Domain {
    /// The commitment an upload's request signature covers (`Protocol/README.md`, "Masked-input upload").
    public static let uploadCommitment = Domain("cairn/upload-commitment/v1")
}

/// The body of `POST …/rounds/{round}/input` (`Protocol/README.md`, "Masked-input upload"): a
/// masked input of `D + 1` little-endian words in a secretstream under the ``UploadKey``.
///
/// `header (24) ‖ chunk 0 ‖ … ‖ chunk m−1`, each chunk the encryption of up to
/// ``chunkByteCount`` plaintext bytes (the last one shorter and tagged final) with associated data
/// `session (32) ‖ u16 sender ‖ u32 chunk number`.
public struct MaskedUpload: Sendable, Hashable {
    /// Plaintext bytes per chunk, except the last.
    public static let chunkByteCount = 1 << 16

    /// Words in the masked input (`D + 1`).
    public let wordCount: Int
    /// The session.
    public let session: [UInt8]
    /// The sender's roster index.
    public let sender: UInt16

    /// The layout for one participant's upload.
    public init(wordCount: Int, session: [UInt8], sender: UInt16) {
        self.wordCount = wordCount
        self.session = session
        self.sender = sender
    }

    /// Plaintext bytes.
    public var plaintextByteCount: Int { 4 * wordCount }
    /// Chunks.
    public var chunkCount: Int { (plaintextByteCount + Self.chunkByteCount - 1) / Self.chunkByteCount }
    /// The exact body size.
    public var bodyByteCount: Int {
        SecretStream.headerByteCount + plaintextByteCount + chunkCount * SecretStream.chunkOverheadByteCount
    }

    /// Plaintext bytes of chunk `i`.
    public func plaintextBytes(ofChunk i: Int) -> Int {
        min(Self.chunkByteCount, plaintextByteCount - i * Self.chunkByteCount)
    }

    /// The associated data of chunk `i`.
    public func associatedData(ofChunk i: Int) -> [UInt8] {
        var w = ByteWriter(capacity: 38)
        w.raw(session)
        w.u16(sender)
        w.u32(UInt32(i))
        return w.bytes
    }

    /// The commitment of a whole body: BLAKE2b-256 in ``Domain/uploadCommitment`` over the
    /// stream header and the last 16 bytes (the Poly1305 tag) of every chunk, chunks being
    /// `65,536 + 17` bytes but the last. What the upload's request signature covers instead of a
    /// hash of every byte: the broker checks every tag as it decrypts.
    public static func commitment(ofBody body: [UInt8]) throws -> [UInt8] {
        let hasher = try BLAKE2b(domain: .uploadCommitment)
        hasher.update(Array(body.prefix(SecretStream.headerByteCount)))
        var offset = SecretStream.headerByteCount
        let step = chunkByteCount + SecretStream.chunkOverheadByteCount
        while offset < body.count {
            let end = min(offset + step, body.count)
            hasher.update(Array(body[max(offset, end - tagByteCount)..<end]))
            offset = end
        }
        return try hasher.finalize()
    }

    /// The Poly1305 tag's size at the end of each chunk.
    static let tagByteCount = 16

    /// Encrypts `words` (``wordCount`` of them) into the whole body, calling `emit` with each
    /// piece (header first, then every chunk) so a sender can stream them, and returns the
    /// body's commitment (``commitment(ofBody:)``), the digest its request signs.
    @discardableResult
    public func encrypt(
        _ words: [UInt32],
        key: SymmetricKey,
        emit: ([UInt8]) throws -> Void
    ) throws -> [UInt8] {
        precondition(words.count == wordCount, "the masked input has D + 1 words")
        let stream = try SecretStream.Encryptor(key: key)
        let commitment = try BLAKE2b(domain: .uploadCommitment)
        commitment.update(stream.header)
        try emit(stream.header)
        try words.withUnsafeBytes { plain in
            for i in 0..<chunkCount {
                let start = i * Self.chunkByteCount
                let n = plaintextBytes(ofChunk: i)
                var out = [UInt8](repeating: 0, count: n + SecretStream.chunkOverheadByteCount)
                try out.withUnsafeMutableBytes {
                    try stream.push(
                        UnsafeRawBufferPointer(rebasing: plain[start..<(start + n)]),
                        into: $0,
                        isFinal: i == chunkCount - 1,
                        authenticating: associatedData(ofChunk: i)
                    )
                }
                out.withUnsafeBytes {
                    commitment.update(UnsafeRawBufferPointer(rebasing: $0.suffix(Self.tagByteCount)))
                }
                try emit(out)
            }
        }
        return try commitment.finalize()
    }

    /// Reads an upload as its bytes arrive and decrypts each chunk into `words` as soon as it is
    /// complete. Not `Sendable`: one request owns it.
    public final class Reader {
        private let layout: MaskedUpload
        private let key: SymmetricKey
        private var stream: SecretStream.Decryptor?
        private var pending: [UInt8] = []
        private var chunk = 0
        private var received = 0
        private let words: UnsafeMutableRawBufferPointer
        private let commitment: BLAKE2b

        /// A reader that writes into `words` (`4 · wordCount` bytes, owned by the caller).
        public init(layout: MaskedUpload, key: SymmetricKey, into words: UnsafeMutableRawBufferPointer) throws {
            precondition(words.count == layout.plaintextByteCount, "the target holds D + 1 words")
            self.layout = layout
            self.key = key
            self.words = words
            commitment = try BLAKE2b(domain: .uploadCommitment)
            pending.reserveCapacity(Self.pieceCapacity)
        }

        private static let pieceCapacity = MaskedUpload.chunkByteCount + SecretStream.chunkOverheadByteCount

        /// Takes the next bytes of the body.
        public func feed(_ bytes: UnsafeRawBufferPointer) throws(ExchangeError) {
            received += bytes.count
            guard received <= layout.bodyByteCount else {
                throw ExchangeError(
                    .tooLarge,
                    "the masked input is longer than the \(layout.bodyByteCount) bytes a round of \(layout.wordCount) words takes"
                )
            }
            var rest = bytes[...]
            while !rest.isEmpty {
                let want = wanted - pending.count
                let take = min(want, rest.count)
                pending.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                if pending.count == wanted { try consume() }
            }
        }

        /// Checks that the whole body arrived, final chunk included, and returns its commitment
        /// (``MaskedUpload/commitment(ofBody:)``), computed from the tags it checked.
        public func finish() throws(ExchangeError) -> [UInt8] {
            guard chunk == layout.chunkCount, let stream, stream.isComplete else {
                throw ExchangeError(
                    .malformed,
                    "the masked input ended after \(received) of \(layout.bodyByteCount) bytes (truncated)"
                )
            }
            do { return try commitment.finalize() } catch {
                throw ExchangeError(.internal, "the upload's commitment could not be computed")
            }
        }

        private var wanted: Int {
            stream == nil
                ? SecretStream.headerByteCount
                : layout.plaintextBytes(ofChunk: chunk) + SecretStream.chunkOverheadByteCount
        }

        private func consume() throws(ExchangeError) {
            defer { pending.removeAll(keepingCapacity: true) }
            guard let stream else {
                commitment.update(pending)
                do {
                    stream = try SecretStream.Decryptor(key: key, header: pending)
                } catch {
                    throw ExchangeError(.malformed, "the masked input's stream header is invalid")
                }
                return
            }
            let start = chunk * MaskedUpload.chunkByteCount
            let n = layout.plaintextBytes(ofChunk: chunk)
            let isFinal: Bool
            do {
                isFinal = try pending.withUnsafeBytes {
                    try stream.pull(
                        $0,
                        into: UnsafeMutableRawBufferPointer(rebasing: words[start..<(start + n)]),
                        authenticating: layout.associatedData(ofChunk: chunk)
                    )
                }
            } catch {
                throw ExchangeError(
                    .malformed,
                    "chunk \(chunk) of the masked input does not open (tampered, reordered or not under this participant's round key)"
                )
            }
            pending.withUnsafeBytes {
                commitment.update(UnsafeRawBufferPointer(rebasing: $0.suffix(MaskedUpload.tagByteCount)))
            }
            chunk += 1
            guard isFinal == (chunk == layout.chunkCount) else {
                throw ExchangeError(
                    .malformed,
                    "the masked input's final tag is on chunk \(chunk - 1) of \(layout.chunkCount)"
                )
            }
        }
    }
}
