import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import Testing

/// `Protocol/sealed-vectors.json`: a sealed request and its sealed response, and a masked-input
/// upload with its commitment, from fixed keys and nonces, for other implementations. Every key,
/// associated data and ciphertext is recomputed here from the formulas of `Protocol/README.md`
/// ("Sealed bodies", "Masked-input upload") with the primitives alone, and compared with both
/// the file and Cairn's own ``SealedBody``. The upload's stream header is random (libsodium makes
/// it), so the upload is checked by decrypting it and recomputing its commitment.
/// `CAIRN_UPDATE_VECTORS=1 swift test --filter SealedVectorTests` rewrites the file.
@Suite struct SealedVectorTests {
    static let path = String(#filePath.split(separator: "/Tests/").first!) + "/Protocol/sealed-vectors.json"

    static func fixed(_ tag: UInt8) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: Int($0) * 7 + Int(tag)) } }
    static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
    static func hex(_ secret: SecretBytes) -> String { secret.withUnsafeBytes { Hex.encode(Array($0)) } }

    /// KDF(S, cairn/sealed-body/v1, context), as the README writes it.
    static func kdf(_ shared: SecretBytes, _ context: [UInt8]) throws -> [UInt8] {
        let hasher = try BLAKE2b(domain: .sealedBody, key: shared, outputByteCount: 32)
        hasher.update(context)
        return try hasher.finalize()
    }

    /// The deterministic part of the document.
    static func document(upload: [String: Any]?) throws -> [String: Any] {
        let member = try Ed25519.PrivateKey(seed: SecretBytes(copying: fixed(0x01)))
        let broker = try Ed25519.PrivateKey(seed: SecretBytes(copying: fixed(0x02)))
        let transport = try X25519.PrivateKey(rawRepresentation: SecretBytes(copying: fixed(0x03)))
        let memberX = try member.x25519()
        #expect(try member.publicKey.x25519() == memberX.publicKey)
        let shared = try memberX.sharedSecret(with: transport.publicKey)
        #expect(hex(try transport.sharedSecret(with: memberX.publicKey)) == hex(shared))
        let (method, target, time) = ("POST", "/v1/federations/vectors/evaluations", Int64(1_796_083_200))
        let requestNonce = Array(fixed(0x04).prefix(16))
        var document: [String: Any] = [
            "description": "Protocol/README.md, \"Sealed bodies\" and \"Masked-input upload\"; all bytes hex",
            "memberSeed": hex(fixed(0x01)), "memberKey": hex(member.publicKey.rawRepresentation),
            "memberX25519Secret": hex(memberX.rawRepresentation),
            "memberX25519Key": hex(memberX.publicKey.rawRepresentation),
            "brokerIdentitySeed": hex(fixed(0x02)), "brokerIdentityKey": hex(broker.publicKey.rawRepresentation),
            "transportSecret": hex(fixed(0x03)), "transportKey": hex(transport.publicKey.rawRepresentation),
            "sharedSecret": hex(shared), "method": method, "target": target, "time": Int(time),
            "requestNonce": hex(requestNonce),
        ]
        let seal = try SealedBody.member(
            identity: member,
            broker: broker.publicKey,
            transport: transport.publicKey,
            method: method,
            target: target,
            time: time,
            nonce: requestNonce
        )
        var associated = ByteWriter()
        associated.u8(UInt8(method.utf8.count))
        associated.raw(Array(method.utf8))
        associated.u16(UInt16(target.utf8.count))
        associated.raw(Array(target.utf8))
        associated.u64(UInt64(time))
        let plaintexts: [SealedBody.Direction: [UInt8]] = [
            .request: Array(
                #"{"accuracy":0.90625,"logLoss":0.3125,"parametersDigest":"00","round":1,"samples":64}"#.utf8
            ),
            .response: Array(#"{"ok":true}"#.utf8),
        ]
        for (direction, name) in [(SealedBody.Direction.request, "request"), (.response, "response")] {
            var context = ByteWriter()
            context.u8(direction.rawValue)
            context.raw(member.publicKey.rawRepresentation)
            context.raw(broker.publicKey.rawRepresentation)
            context.raw(transport.publicKey.rawRepresentation)
            context.raw(requestNonce)
            let key = try kdf(shared, context.bytes)
            let nonce = try XChaCha20Poly1305.Nonce(bytes: Array((fixed(0x05 + direction.rawValue) + [0]).prefix(24)))
            let ad = [direction.rawValue] + associated.bytes
            let expected =
                [1, 0] + nonce.bytes
                + (try XChaCha20Poly1305.seal(
                    plaintexts[direction]!,
                    key: try SymmetricKey(SecretBytes(copying: key)),
                    nonce: nonce,
                    authenticating: ad
                ))
            let sealed = try seal.seal(plaintexts[direction]!, direction, nonce: nonce)
            #expect(sealed == expected, "\(name)")
            #expect(try seal.open(sealed, direction) == plaintexts[direction]!)
            var entry: [String: Any] = [
                "kdfContext": hex(context.bytes), "key": hex(key), "associatedData": hex(ad),
                "plaintext": String(decoding: plaintexts[direction]!, as: UTF8.self), "sealNonce": hex(nonce.bytes),
                "sealed": hex(sealed),
            ]
            if direction == .request {
                let digest = try RequestSignature.digest(sealed)
                let signature = try RequestSignature.sign(
                    method: method,
                    target: target,
                    bodyDigest: digest,
                    identity: member,
                    broker: broker.publicKey,
                    time: time,
                    nonce: requestNonce
                )
                entry["bodyDigest"] = hex(digest)
                entry["signature"] = hex(signature.signature)
            }
            document[name] = entry
        }
        if let upload { document["upload"] = upload }
        return document
    }

    /// A masked input of 5 words (one chunk) under a fixed key: its body and commitment.
    static func upload() throws -> [String: Any] {
        let key = fixed(0x06)
        let layout = MaskedUpload(wordCount: 5, session: fixed(0x07), sender: 2)
        var body: [UInt8] = []
        let commitment = try layout.encrypt(
            [1, 2, 3, 0xFFFF_FFFF, 64],
            key: try SymmetricKey(SecretBytes(copying: key))
        ) {
            body += $0
        }
        return [
            "key": hex(key), "session": hex(layout.session), "sender": 2, "words": [1, 2, 3, 4_294_967_295, 64],
            "body": hex(body), "commitment": hex(commitment),
        ]
    }

    @Test func vectorsMatch() throws {
        if ProcessInfo.processInfo.environment["CAIRN_UPDATE_VECTORS"] == "1" {
            try VectorFile.serialise(try Self.document(upload: try Self.upload())).write(
                to: URL(fileURLWithPath: Self.path)
            )
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path))
        let stored = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let upload = try #require(stored["upload"] as? [String: Any])
        let recomputed = try VectorFile.serialise(try Self.document(upload: upload))
        #expect(String(decoding: recomputed, as: UTF8.self) == String(decoding: data, as: UTF8.self))

        // The upload: it opens under its key, holds its words, and its commitment is the
        // domain-separated BLAKE2b of its header and tag, from the bytes alone.
        func bytes(_ name: String) throws -> [UInt8] { try Hex.decode(try #require(upload[name] as? String)) }
        let body = try bytes("body")
        let layout = MaskedUpload(wordCount: 5, session: try bytes("session"), sender: 2)
        #expect(body.count == 24 + 20 + 17)
        let hasher = try BLAKE2b(domain: .uploadCommitment)
        hasher.update(Array(body.prefix(24)) + Array(body.suffix(16)))
        #expect(try hasher.finalize() == (try bytes("commitment")))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 20, alignment: 16)
        defer { buffer.deallocate() }
        let reader = try MaskedUpload.Reader(
            layout: layout,
            key: try SymmetricKey(SecretBytes(copying: try bytes("key"))),
            into: buffer
        )
        try body.withUnsafeBytes { try reader.feed($0) }
        #expect(try reader.finish() == (try bytes("commitment")))
        #expect(Array(buffer.bindMemory(to: UInt32.self)) == [1, 2, 3, 0xFFFF_FFFF, 64])
    }
}

/// How the vector files are written: pretty, sorted, one trailing newline.
enum VectorFile {
    static func serialise(_ document: [String: Any]) throws -> Data {
        try JSONSerialization.data(
            withJSONObject: document,
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        ) + Data("\n".utf8)
    }
}
