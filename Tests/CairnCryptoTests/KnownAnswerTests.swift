import CairnWire
import Testing

@testable import CairnCrypto

/// Known answers from the RFCs, checked case by case.
@Suite struct KnownAnswerTests {
    struct Ed25519Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let seed: String
        let publicKey: String
        let message: String
        let signature: String
        var testDescription: String { name }
    }

    /// RFC 8032 section 7.1, TEST 1, 2 and 3.
    static let rfc8032: [Ed25519Vector] = [
        Ed25519Vector(
            name: "RFC 8032 TEST 1",
            seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            message: "",
            signature: """
                e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b
                """
        ),
        Ed25519Vector(
            name: "RFC 8032 TEST 2",
            seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            message: "72",
            signature: """
                92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00
                """
        ),
        Ed25519Vector(
            name: "RFC 8032 TEST 3",
            seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            message: "af82",
            signature: """
                6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a
                """
        ),
    ]

    @Test(arguments: rfc8032)
    func ed25519(_ v: Ed25519Vector) throws {
        let key = try Ed25519.PrivateKey(seed: secret(v.seed))
        #expect(key.publicKey.rawRepresentation == hex(v.publicKey))
        let signature = try key.rawSignature(for: hex(v.message))
        #expect(signature == hex(v.signature))
        #expect(key.publicKey.isValidRawSignature(hex(v.signature), for: hex(v.message)))
        // Each single-bit change of the signature or message is refused.
        for bit in [0, 7, 255, 256, 511] {
            var bad = signature
            bad[bit / 8] ^= UInt8(1 << (bit % 8))
            #expect(!key.publicKey.isValidRawSignature(bad, for: hex(v.message)))
        }
        #expect(!key.publicKey.isValidRawSignature(signature, for: hex(v.message) + [0]))
        #expect(!key.publicKey.isValidRawSignature(Array(signature.prefix(63)), for: hex(v.message)))
    }

    @Test func ed25519WrongKeyAndWrongDomain() throws {
        let alice = try Ed25519.PrivateKey(seed: secret(Self.rfc8032[0].seed))
        let bob = try Ed25519.PrivateKey(seed: secret(Self.rfc8032[1].seed))
        let message = Array("round 7 keys".utf8)
        let domain = Domain("cairn/test-a/v1")
        let signature = try alice.signature(for: message, domain: domain)
        #expect(alice.publicKey.isValidSignature(signature, for: message, domain: domain))
        #expect(!bob.publicKey.isValidSignature(signature, for: message, domain: domain))
        #expect(!alice.publicKey.isValidSignature(signature, for: message, domain: Domain("cairn/test-b/v1")))
        // A domain-separated signature is not a signature of the bare message, nor the reverse.
        #expect(!alice.publicKey.isValidRawSignature(signature, for: message))
        let bare = try alice.rawSignature(for: message)
        #expect(!alice.publicKey.isValidSignature(bare, for: message, domain: domain))
        // The signed bytes are exactly: label length, label, message.
        let framed = [UInt8(domain.label.utf8.count)] + Array(domain.label.utf8) + message
        #expect(alice.publicKey.isValidRawSignature(signature, for: framed))
        expectCryptoError(.invalidKey) { try Ed25519.PublicKey(rawRepresentation: [UInt8](repeating: 1, count: 31)) }
        expectCryptoError(.invalidKey) {
            try Ed25519.PrivateKey(seed: SecretBytes(copying: [UInt8](repeating: 1, count: 33)))
        }
    }

    /// RFC 7748 section 5.2: two scalar multiplications, then the iterated test at 1 and 1,000.
    @Test func x25519ScalarMultiplication() throws {
        let cases = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
            ),
        ]
        for (scalar, u, expected) in cases {
            let key = try X25519.PrivateKey(rawRepresentation: secret(scalar))
            let shared = try key.sharedSecret(with: X25519.PublicKey(rawRepresentation: hex(u)))
            #expect(reveal(shared) == hex(expected))
        }
        var k = [UInt8](repeating: 0, count: 32)
        k[0] = 9
        var u = k
        for iteration in 1...1000 {
            let out = try X25519.PrivateKey(rawRepresentation: SecretBytes(copying: k))
                .sharedSecret(with: X25519.PublicKey(rawRepresentation: u))
            u = k
            k = reveal(out)
            if iteration == 1 { #expect(k == hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")) }
        }
        #expect(k == hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"))
    }

    /// RFC 7748 section 6.1: Alice and Bob.
    @Test func x25519DiffieHellman() throws {
        let alice = try X25519.PrivateKey(
            rawRepresentation: secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        )
        let bob = try X25519.PrivateKey(
            rawRepresentation: secret("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
        )
        #expect(
            alice.publicKey.rawRepresentation == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        )
        #expect(
            bob.publicKey.rawRepresentation == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        )
        let expected = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(reveal(try alice.sharedSecret(with: bob.publicKey)) == expected)
        #expect(reveal(try bob.sharedSecret(with: alice.publicKey)) == expected)
    }

    /// A peer key of small order would give an all-zero secret: refused, not used.
    @Test(arguments: [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ])
    func x25519RefusesLowOrderPeerKeys(_ point: String) throws {
        let key = try X25519.PrivateKey()
        expectCryptoError(.weakPeerKey) { try key.sharedSecret(with: X25519.PublicKey(rawRepresentation: hex(point))) }
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1.
    @Test func xchacha20Poly1305() throws {
        let key = try SymmetricKey(secret("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"))
        let nonce = try XChaCha20Poly1305.Nonce(bytes: hex("404142434445464748494a4b4c4d4e4f5051525354555657"))
        let ad = hex("50515253c0c1c2c3c4c5c6c7")
        let plaintext = Array(
            "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
                .utf8
        )
        let expected =
            hex(
                """
                bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39
                ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
                21f9664c97637da9768812f615c68b13b52e
                """
            ) + hex("c0875924c1c7987947deafd8780acf49")
        let sealed = try XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, authenticating: ad)
        #expect(sealed == expected)
        #expect(try XChaCha20Poly1305.open(sealed, key: key, nonce: nonce, authenticating: ad) == plaintext)
    }

    /// RFC 7693 appendix A: BLAKE2b-512("abc"), and the domain prefix changes the digest.
    @Test func blake2b() throws {
        let hasher = try BLAKE2b(rawKey: nil, outputByteCount: 64)
        hasher.update(Array("abc".utf8))
        let expected = hex(
            """
            ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1
            7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923
            """
        )
        #expect(try hasher.finalize() == expected)
        // Streaming in pieces equals one update.
        let pieces = try BLAKE2b(rawKey: nil, outputByteCount: 64)
        pieces.update(Array("a".utf8))
        pieces.update(Array("bc".utf8))
        #expect(try pieces.finalize() == expected)
        // With a domain, the digest is BLAKE2b(len ‖ label ‖ message).
        let domain = Domain("cairn/test/v1")
        let framed = try BLAKE2b(rawKey: nil, outputByteCount: 32)
        framed.update([UInt8(domain.label.utf8.count)] + Array(domain.label.utf8) + Array("abc".utf8))
        #expect(try BLAKE2b.hash(Array("abc".utf8), domain: domain) == framed.finalize())
        #expect(
            try BLAKE2b.hash(Array("abc".utf8), domain: domain)
                != BLAKE2b.hash(Array("abc".utf8), domain: Domain("cairn/other/v1"))
        )
        // Keyed hashes differ by key.
        let k1 = try BLAKE2b.hash(
            [1, 2, 3],
            domain: domain,
            key: SecretBytes(copying: [UInt8](repeating: 1, count: 32))
        )
        let k2 = try BLAKE2b.hash(
            [1, 2, 3],
            domain: domain,
            key: SecretBytes(copying: [UInt8](repeating: 2, count: 32))
        )
        #expect(k1 != k2)
        expectCryptoError(.invalidKey) { try BLAKE2b.hash([], domain: domain, outputByteCount: 15) }
        expectCryptoError(.invalidKey) { try BLAKE2b.hash([], domain: domain, outputByteCount: 65) }
        expectCryptoError(.invalidKey) {
            try BLAKE2b.hash([], domain: domain, key: SecretBytes(copying: [UInt8](repeating: 0, count: 65)))
        }
    }
}
