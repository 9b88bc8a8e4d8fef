import CairnWire
import Testing

@testable import CairnCrypto

/// Everything that must be refused is refused, with the error code that names why.
@Suite struct RejectionTests {
    let key = SymmetricKey()
    let nonce = XChaCha20Poly1305.Nonce()
    let ad = Array("federation f1 round 3".utf8)
    let plaintext = SecureRandom.bytes(1000)

    @Test func aeadRefusesTamperingWrongKeyWrongNonceWrongDataAndTruncation() throws {
        let sealed = try XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, authenticating: ad)
        #expect(sealed.count == plaintext.count + 16)
        #expect(try XChaCha20Poly1305.open(sealed, key: key, nonce: nonce, authenticating: ad) == plaintext)
        for index in [0, 1, 499, sealed.count - 17, sealed.count - 16, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 0x20
            expectCryptoError(.authenticationFailed) {
                try XChaCha20Poly1305.open(tampered, key: key, nonce: nonce, authenticating: ad)
            }
        }
        expectCryptoError(.authenticationFailed) {
            try XChaCha20Poly1305.open(sealed, key: SymmetricKey(), nonce: nonce, authenticating: ad)
        }
        expectCryptoError(.authenticationFailed) {
            try XChaCha20Poly1305.open(sealed, key: key, nonce: XChaCha20Poly1305.Nonce(), authenticating: ad)
        }
        expectCryptoError(.authenticationFailed) {
            try XChaCha20Poly1305.open(sealed, key: key, nonce: nonce, authenticating: ad + [0])
        }
        expectCryptoError(.authenticationFailed) {
            try XChaCha20Poly1305.open(sealed, key: key, nonce: nonce)
        }
        expectCryptoError(.authenticationFailed) {
            try XChaCha20Poly1305.open(Array(sealed.dropLast()), key: key, nonce: nonce, authenticating: ad)
        }
        expectCryptoError(.truncatedCiphertext) {
            try XChaCha20Poly1305.open(Array(sealed.prefix(15)), key: key, nonce: nonce, authenticating: ad)
        }
        expectCryptoError(.invalidKey) { try XChaCha20Poly1305.Nonce(bytes: [UInt8](repeating: 0, count: 12)) }
        expectCryptoError(.invalidKey) { try SymmetricKey(SecretBytes(copying: [UInt8](repeating: 0, count: 16))) }
        // The empty plaintext works too, and a secret plaintext can be opened into SecretBytes.
        let empty = try XChaCha20Poly1305.seal([], key: key, nonce: nonce)
        #expect(try XChaCha20Poly1305.open(empty, key: key, nonce: nonce) == [])
        let secretBox = try XChaCha20Poly1305.seal(SecretBytes(copying: plaintext), key: key, nonce: nonce)
        #expect(reveal(try XChaCha20Poly1305.openSecret(secretBox, key: key, nonce: nonce)) == plaintext)
    }

    /// A stream of `pieces` chunks of 100 bytes, the last one final.
    private func stream(
        _ pieces: Int,
        key: SymmetricKey
    ) throws -> (header: [UInt8], chunks: [[UInt8]], plain: [[UInt8]]) {
        let encryptor = try SecretStream.Encryptor(key: key)
        let plain = (0..<pieces).map { _ in SecureRandom.bytes(100) }
        let chunks = try plain.enumerated().map { i, p in
            try encryptor.push(p, isFinal: i == pieces - 1, authenticating: ad)
        }
        expectCryptoError(.streamFinished) { try encryptor.push([1]) }
        return (encryptor.header, chunks, plain)
    }

    private func pullAll(_ chunks: [[UInt8]], header: [UInt8], key: SymmetricKey) throws -> [[UInt8]] {
        let decryptor = try SecretStream.Decryptor(key: key, header: header)
        var out: [[UInt8]] = []
        for chunk in chunks { out.append(try decryptor.pull(chunk, authenticating: ad).plaintext) }
        try decryptor.finish()
        return out
    }

    @Test func secretstreamRoundTripAndEveryKindOfDamage() throws {
        let s = try stream(4, key: key)
        #expect(s.header.count == 24)
        #expect(s.chunks.allSatisfy { $0.count == 117 })
        #expect(try pullAll(s.chunks, header: s.header, key: key) == s.plain)

        // Truncated: the final chunk never arrives. Every chunk read so far authenticated.
        expectCryptoError(.truncatedStream) { try pullAll(Array(s.chunks.prefix(3)), header: s.header, key: key) }
        expectCryptoError(.truncatedStream) { try pullAll([], header: s.header, key: key) }
        // Data after the final chunk.
        expectCryptoError(.dataAfterFinalChunk) { try pullAll(s.chunks + [s.chunks[0]], header: s.header, key: key) }
        // Reordered, duplicated, dropped chunks.
        expectCryptoError(.authenticationFailed) {
            try pullAll([s.chunks[1], s.chunks[0], s.chunks[2], s.chunks[3]], header: s.header, key: key)
        }
        expectCryptoError(.authenticationFailed) {
            try pullAll([s.chunks[0], s.chunks[0]], header: s.header, key: key)
        }
        expectCryptoError(.authenticationFailed) {
            try pullAll([s.chunks[0], s.chunks[2]], header: s.header, key: key)
        }
        // A flipped bit in a chunk, in the header; a wrong key; wrong associated data; a chunk cut short.
        var flipped = s.chunks
        flipped[2][50] ^= 1
        expectCryptoError(.authenticationFailed) { try pullAll(flipped, header: s.header, key: key) }
        var header = s.header
        header[3] ^= 1
        expectCryptoError(.authenticationFailed) { try pullAll(s.chunks, header: header, key: key) }
        expectCryptoError(.authenticationFailed) { try pullAll(s.chunks, header: s.header, key: SymmetricKey()) }
        let decryptor = try SecretStream.Decryptor(key: key, header: s.header)
        expectCryptoError(.authenticationFailed) { try decryptor.pull(s.chunks[0], authenticating: []) }
        expectCryptoError(.truncatedCiphertext) {
            try SecretStream.Decryptor(key: key, header: s.header).pull(Array(s.chunks[0].prefix(16)))
        }
        expectCryptoError(.invalidKey) { try SecretStream.Decryptor(key: key, header: Array(s.header.prefix(23))) }
        // A stream from another key's session cannot be spliced in.
        let other = try stream(4, key: key)
        expectCryptoError(.authenticationFailed) {
            try pullAll([s.chunks[0], other.chunks[1], s.chunks[2], s.chunks[3]], header: s.header, key: key)
        }
    }

    @Test func sealedBoxes() throws {
        let recipient = try X25519.PrivateKey()
        let fileKey = SecretBytes.random(count: 32)
        let box = try SealedBox.seal(fileKey, to: recipient.publicKey)
        #expect(box.count == 32 + SealedBox.overheadByteCount)
        #expect(try SealedBox.open(box, recipient: recipient).constantTimeEquals(fileKey))
        // Sealing twice gives different boxes (a fresh ephemeral key each time).
        #expect(try SealedBox.seal(fileKey, to: recipient.publicKey) != box)
        expectCryptoError(.authenticationFailed) { try SealedBox.open(box, recipient: X25519.PrivateKey()) }
        for index in [0, 31, 32, box.count - 1] {
            var tampered = box
            tampered[index] ^= 0x80
            expectCryptoError(.authenticationFailed) { try SealedBox.open(tampered, recipient: recipient) }
        }
        expectCryptoError(.truncatedCiphertext) { try SealedBox.open(Array(box.prefix(47)), recipient: recipient) }
        let message = Array("hello".utf8)
        #expect(
            reveal(try SealedBox.open(SealedBox.seal(message, to: recipient.publicKey), recipient: recipient))
                == message
        )
    }

    @Test func secretBytesAreRedactedAndCompareInConstantTime() throws {
        let a = SecretBytes(copying: [1, 2, 3, 4])
        #expect(a.description == "SecretBytes(4 bytes, redacted)")
        #expect("\(a)".contains("1, 2") == false)
        #expect(a.constantTimeEquals(SecretBytes(copying: [1, 2, 3, 4])))
        #expect(!a.constantTimeEquals(SecretBytes(copying: [1, 2, 3, 5])))
        #expect(!a.constantTimeEquals(SecretBytes(copying: [1, 2, 3])))
        #expect(ConstantTime.equals([], []))
        #expect(SecretBytes.random(count: 32).count == 32)
        #expect(reveal(SecretBytes.random(count: 32)) != reveal(SecretBytes.random(count: 32)))
        let derived1 = try BLAKE2b.deriveKey(from: a, domain: Domain("cairn/test/v1"), context: [1])
        let derived2 = try BLAKE2b.deriveKey(from: a, domain: Domain("cairn/test/v1"), context: [2])
        #expect(!derived1.bytes.constantTimeEquals(derived2.bytes))
        #expect(
            try BLAKE2b.deriveKey(from: a, domain: Domain("cairn/test/v1"), context: [1]).bytes.constantTimeEquals(
                derived1.bytes
            )
        )
    }

    @Test func fingerprintsAreStableAndDistinct() throws {
        let key = try Ed25519.PrivateKey(seed: SecretBytes(copying: [UInt8](repeating: 7, count: 32)))
        let again = try Ed25519.PrivateKey(seed: SecretBytes(copying: [UInt8](repeating: 7, count: 32)))
        #expect(key.publicKey.fingerprint == again.publicKey.fingerprint)
        #expect(key.publicKey.fingerprint.hasPrefix("ed25519:"))
        #expect(key.publicKey.fingerprint.count == "ed25519:".count + 32)
        #expect(try Ed25519.PrivateKey().publicKey.fingerprint != key.publicKey.fingerprint)
        #expect(reveal(key.seed) == [UInt8](repeating: 7, count: 32))
    }
}
