import CairnCrypto
import CairnSIMD
import CairnWire
import Foundation
import Testing

@testable import CairnSecAgg

/// `Protocol/secagg-vectors.json`: a whole round from fixed seeds, for other implementations to
/// check themselves against. The deterministic values are recomputed and compared; the values
/// that need fresh randomness (a Shamir split, a nonce) are checked by what they must satisfy.
/// `CAIRN_UPDATE_VECTORS=1 swift test --filter VectorTests` rewrites the file.
@Suite struct VectorTests {
    static let path = String(#filePath.split(separator: "/Tests/").first!) + "/Protocol/secagg-vectors.json"

    /// The fixed round: 5 participants, k = 2 (a real ring), t = 2, T = 3, D = 6.
    static func round() throws -> (RoundConfig, [Ed25519.PrivateKey], [RoundSecrets], [[UInt32]]) {
        let keys = identities(5, salt: 0x5a)
        let config = try RoundConfig(
            federation: "vectors",
            round: 3,
            baseModelDigest: (0..<32).map { UInt8($0) },
            dimension: 6,
            quantisation: QuantisationParameters(scale: 1024, clipBound: 2),
            maximumSampleCount: 1000,
            roster: keys.map(\.publicKey),
            parameters: RoundParameters(neighbours: 2, threshold: 2, signatureThreshold: 3)
        )
        let secrets = try (0..<5).map { i in
            func seed(_ tag: UInt8) -> SecretBytes {
                SecretBytes(copying: [UInt8](repeating: tag &+ UInt8(i), count: 32))
            }
            return try RoundSecrets(
                encryptionKey: X25519.PrivateKey(rawRepresentation: seed(0x10)),
                maskKey: X25519.PrivateKey(rawRepresentation: seed(0x20)),
                selfMaskSeed: seed(0x30)
            )
        }
        let inputs = (0..<5).map { i in (0..<6).map { j in UInt32(bitPattern: Int32(i * 100 - j * 7)) } }
        return (config, keys, secrets, inputs)
    }

    static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
    static func hex(_ secret: SecretBytes) -> String { secret.withUnsafeBytes { Hex.encode(Array($0)) } }

    static func firstWords(_ stream: ChaCha20Keystream, _ count: Int = 4) throws -> [UInt32] {
        var words = [UInt32](repeating: 0, count: count)
        try words.withUnsafeMutableBytes { try stream.fill($0, fromBlock: 0) }
        return words.map { UInt32(littleEndian: $0) }
    }

    /// The deterministic part of the document, and the random part from a run of the round.
    static func document(fresh: Bool, existing: [String: Any]?) throws -> [String: Any] {
        let (config, keys, secrets, inputs) = try round()
        var server = SecAggServer(config: config)
        server.parallelism = .serial
        var clients = try (0..<5).map { try SecAggClient(config: config, identity: keys[$0], secrets: secrets[$0]) }
        var participants: [[String: Any]] = []
        var advertisements: [AdvertiseKeys] = []
        for i in 0..<5 {
            advertisements.append(try clients[i].advertise())
            try server.receive(advertisements[i])
        }
        let list = try server.closeAdvertising()
        for i in 0..<5 { try server.receive(clients[i].shareKeys(list)) }
        let deliveries = try server.closeSharing()
        let session = try Session(config: config, keys: list)
        var masked: [MaskedInput] = []
        for i in 0..<5 {
            let m = try clients[i].maskInput(
                deliveries[i],
                input: inputs[i],
                sampleCount: UInt32(10 + i),
                parallelism: .serial
            )
            masked.append(m)
            try server.receive(m)
        }
        let request = try server.closeMasking()
        var signatures: [[String: Any]] = []
        for i in 0..<5 {
            let s = try clients[i].signSurvivors(request)
            signatures.append(["signer": i, "signature": hex(s.signature)])
            try server.receive(s)
        }
        let unmask = try server.closeChecking()
        for i in 0..<5 { try server.receive(clients[i].unmask(unmask)) }
        let result = try server.finish()
        for i in 0..<5 {
            let u = UInt16(i)
            participants.append([
                "index": i,
                "identitySeed": hex(keys[i].seed),
                "identityKey": hex(keys[i].publicKey.rawRepresentation),
                "encryptionPrivateKey": hex(secrets[i].encryptionKey.rawRepresentation),
                "maskPrivateKey": hex(secrets[i].maskKey.rawRepresentation),
                "selfMaskSeed": hex(secrets[i].selfMaskSeed),
                "advertiseKeys": hex(advertisements[i].encoded),
                "neighbours": session.neighbours[u]!.map(Int.init),
                "selfMaskFirstWords": try firstWords(session.selfMask(secrets[i].selfMaskSeed, of: u)).map(Int.init),
                "input": inputs[i].map(Int.init),
                "sampleCount": 10 + i,
                "maskedInput": hex(masked[i].encoded),
            ])
        }
        var pairs: [[String: Any]] = []
        for u in session.members {
            for v in session.neighbours[u]! where u < v {
                let ev = session.entry(v)!
                let shareKey = try session.shareKey(
                    secrets[Int(u)].encryptionKey,
                    peerKey: ev.encryptionKey,
                    sender: u,
                    recipient: v
                )
                pairs.append([
                    "u": Int(u), "v": Int(v),
                    "shareKeyUToV": hex(shareKey.bytes),
                    "associatedDataUToV": hex(session.shareAssociatedData(sender: u, recipient: v)),
                    "pairMaskFirstWords": try firstWords(
                        session.pairMask(secrets[Int(u)].maskKey, peerKey: ev.maskKey, u, v)
                    ).map(Int.init),
                ])
            }
        }
        var document: [String: Any] = [
            "description":
                "SecAgg+ test vectors (Protocol/README.md, \"Secure aggregation\"); byte strings in hex, words as integers",
            "config": [
                "federation": config.federation, "round": Int(config.round),
                "baseModelDigest": hex(config.baseModelDigest),
                "dimension": config.dimension, "scaleBits": Int(config.quantisation.scale.bitPattern),
                "clipBoundBits": Int(config.quantisation.clipBound.bitPattern),
                "maximumSampleCount": Int(config.maximumSampleCount), "neighbours": config.neighbours,
                "threshold": config.threshold, "signatureThreshold": config.signatureThreshold,
                "encoded": hex(config.encoded), "digest": hex(config.digest),
            ] as [String: Any],
            "participants": participants,
            "keyList": hex(list.encoded),
            "sessionId": hex(session.id),
            "pairs": pairs,
            "consistencyRequest": hex(request.encoded),
            "survivorSignatures": signatures,
            "sum": result.sum.map(Int.init),
            "sampleCount": Int(result.sampleCount),
        ]
        if fresh {
            // One encrypted share (0 → its first neighbour) and one Shamir split, from this run.
            let v = session.neighbours[0]!.first!
            let share = deliveries[Int(v)].shares.first { $0.peer == 0 }!
            let key = try session.shareKey(
                secrets[Int(v)].encryptionKey,
                peerKey: session.entry(0)!.encryptionKey,
                sender: 0,
                recipient: v
            )
            let ad = session.shareAssociatedData(sender: 0, recipient: v)
            let plaintext = try XChaCha20Poly1305.open(
                share.ciphertext,
                key: key,
                nonce: share.nonce,
                authenticating: ad
            )
            document["encryptedShare"] = [
                "sender": 0, "recipient": Int(v), "key": hex(key.bytes), "nonce": hex(share.nonce.bytes),
                "associatedData": hex(ad), "plaintext": hex(plaintext), "ciphertext": hex(share.ciphertext),
            ]
            let split = try Shamir.split(secrets[0].selfMaskSeed, threshold: 3, shareCount: 5)
            document["shamir"] = [
                "threshold": 3, "secret": hex(secrets[0].selfMaskSeed),
                "shares": split.map { ["index": Int($0.index), "value": hex($0.value)] as [String: Any] },
            ]
        } else if let existing {
            document["encryptedShare"] = existing["encryptedShare"]
            document["shamir"] = existing["shamir"]
        }
        return document
    }

    static func serialise(_ document: [String: Any]) throws -> Data {
        try JSONSerialization.data(
            withJSONObject: document,
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        ) + Data("\n".utf8)
    }

    @Test func vectorsMatch() throws {
        if ProcessInfo.processInfo.environment["CAIRN_UPDATE_VECTORS"] == "1" {
            try Self.serialise(Self.document(fresh: true, existing: nil)).write(to: URL(fileURLWithPath: Self.path))
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path))
        let stored = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        // Everything deterministic, recomputed, byte for byte.
        let recomputed = try Self.serialise(Self.document(fresh: false, existing: stored))
        #expect(String(decoding: recomputed, as: UTF8.self) == String(decoding: data, as: UTF8.self))

        // The random parts satisfy their equations.
        let share = try #require(stored["encryptedShare"] as? [String: Any])
        func bytes(_ any: Any?) throws -> [UInt8] { try Hex.decode(try #require(any as? String)) }
        let key = try SymmetricKey(SecretBytes(copying: try bytes(share["key"])))
        let nonce = try XChaCha20Poly1305.Nonce(bytes: try bytes(share["nonce"]))
        let sealed = try XChaCha20Poly1305.seal(
            try bytes(share["plaintext"]),
            key: key,
            nonce: nonce,
            authenticating: try bytes(share["associatedData"])
        )
        #expect(sealed == (try bytes(share["ciphertext"])))
        let shamir = try #require(stored["shamir"] as? [String: Any])
        let shares = try #require(shamir["shares"] as? [[String: Any]]).map {
            try Shamir.Share(
                index: UInt16(try #require($0["index"] as? Int)),
                value: SecretBytes(copying: try bytes($0["value"]))
            )
        }
        for chosen in [Array(shares.prefix(3)), Array(shares.suffix(3)), [shares[0], shares[2], shares[4]]] {
            #expect(Self.hex(try Shamir.combine(chosen, threshold: 3)) == (shamir["secret"] as? String))
        }
    }
}
