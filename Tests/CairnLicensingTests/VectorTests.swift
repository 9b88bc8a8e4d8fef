import CairnCrypto
import CairnWire
import Foundation
import Testing

@testable import CairnLicensing

/// `Protocol/container-vectors.json`: a signed licence and a container from fixed keys, for other
/// implementations. The licence (Ed25519 signatures are deterministic) and the header's fields
/// are recomputed and compared byte for byte; the container, whose file key, sealed box and
/// stream header are random, is checked by opening it with the listed keys.
/// `CAIRN_UPDATE_VECTORS=1 swift test --filter CairnLicensingTests.VectorTests` rewrites the file.
@Suite struct VectorTests {
    static let path = String(#filePath.split(separator: "/Tests/").first!) + "/Protocol/container-vectors.json"
    let parties = Parties()

    func document(container: [UInt8]) throws -> [String: Any] {
        let signed = try parties.licence()
        let l = signed.licence
        let header = try ContainerHeader(reading: container, brokerLicenceKey: parties.broker.publicKey)
        func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
        return [
            "keys": [
                "brokerLicenceSeed": hex(parties.broker.seed.withUnsafeBytes { Array($0) }),
                "brokerLicencePublicKey": hex(parties.broker.publicKey.rawRepresentation),
                "licenseeIdentitySeed": hex(parties.licensee.seed.withUnsafeBytes { Array($0) }),
                "licenseeIdentityPublicKey": hex(parties.licensee.publicKey.rawRepresentation),
                "licenseeDeliveryPrivateKey": hex(parties.delivery.rawRepresentation.withUnsafeBytes { Array($0) }),
                "licenseeDeliveryPublicKey": hex(parties.delivery.publicKey.rawRepresentation),
            ],
            "licence": [
                "id": l.idHex, "model": l.model, "firstVersion": Int(l.versions.lowerBound),
                "lastVersion": Int(l.versions.upperBound), "entitlements": Int(l.entitlements.rawValue),
                "notBefore": Int(l.notBefore), "notAfter": Int(l.notAfter), "deliveryLimit": Int(l.deliveryLimit),
                "encoded": hex(l.encoded()), "signed": hex(signed.bytes), "digest": hex(try signed.digest()),
            ],
            "container": [
                "now": Int(Parties.now),
                "payload": "5000 bytes, byte i = i mod 251",
                "payloadDigest": hex(try Container.plaintextDigest(pattern(5000))),
                "model": header.model, "version": Int(header.version), "licenceId": hex(header.licenceID),
                "deliveryId": hex(header.deliveryID), "chunkSize": Int(header.chunkSize),
                "totalLength": Int(header.totalLength), "headerLength": header.byteCount,
                "bytes": hex(container),
            ],
        ]
    }

    @Test func vectorsMatch() throws {
        if ProcessInfo.processInfo.environment["CAIRN_UPDATE_VECTORS"] == "1" {
            let fresh = try JSONSerialization.data(
                withJSONObject: try document(container: try parties.seal(pattern(5000))),
                options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            )
            try (fresh + Data("\n".utf8)).write(to: URL(fileURLWithPath: Self.path))
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path))
        let stored = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let storedContainer = try #require(stored["container"] as? [String: Any])
        let bytes = try Hex.decode(try #require(storedContainer["bytes"] as? String))
        let recomputed = try JSONSerialization.data(
            withJSONObject: try document(container: bytes),
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        )
        #expect(String(decoding: recomputed + Data("\n".utf8), as: UTF8.self) == String(decoding: data, as: UTF8.self))
        #expect(try parties.open(bytes) == pattern(5000))
        // The licence in the file is the one the keys sign today, and the container is for it.
        let storedLicence = try #require(stored["licence"] as? [String: Any])
        let signed = try SignedLicence(
            decoding: try Hex.decode(try #require(storedLicence["signed"] as? String)),
            brokerLicenceKey: parties.broker.publicKey
        )
        #expect(
            try Container.open(
                bytes,
                licence: signed,
                identity: parties.licensee.publicKey,
                deliveryKey: parties.delivery,
                brokerLicenceKey: parties.broker.publicKey,
                now: Parties.now
            ).payload.count == 5000
        )
    }
}
