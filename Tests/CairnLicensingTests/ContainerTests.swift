import CairnCrypto
import CairnWire
import Foundation
import Testing

@testable import CairnLicensing

/// Keys and a licence from fixed seeds (the test vectors' keys).
struct Parties {
    let broker = try! Ed25519.PrivateKey(seed: SecretBytes(copying: [UInt8](repeating: 0x4c, count: 32)))
    let licensee = try! Ed25519.PrivateKey(seed: SecretBytes(copying: [UInt8](repeating: 0x6e, count: 32)))
    let delivery = try! X25519.PrivateKey(rawRepresentation: SecretBytes(copying: [UInt8](repeating: 0x64, count: 32)))
    static let now: Int64 = 1_795_000_000

    func licence(
        model: String = "credit-risk",
        versions: ClosedRange<UInt32> = 2...5,
        licensee: Ed25519.PublicKey? = nil,
        notBefore: Int64 = now - 3600,
        notAfter: Int64 = now + 86_400
    ) throws -> SignedLicence {
        try Licence(
            id: Array(0x10..<0x20),
            model: model,
            versions: versions,
            licensee: licensee ?? self.licensee.publicKey,
            entitlements: [.inference, .fineTuning],
            notBefore: notBefore,
            notAfter: notAfter,
            deliveryLimit: 3
        ).signed(by: broker)
    }

    func seal(
        _ payload: [UInt8],
        version: UInt32 = 3,
        chunkSize: UInt32 = 4096,
        licence: SignedLicence? = nil
    )
        throws -> [UInt8]
    {
        try payload.withUnsafeBytes {
            try Container.seal(
                $0,
                plaintextDigest: try Container.plaintextDigest(payload),
                model: "credit-risk",
                version: version,
                licence: (licence ?? (try self.licence())).licence,
                deliveryID: Array(0x30..<0x40),
                deliveryKey: delivery.publicKey,
                chunkSize: chunkSize,
                signer: broker
            )
        }
    }

    func open(
        _ container: [UInt8],
        licence: SignedLicence? = nil,
        delivery: X25519.PrivateKey? = nil,
        now: Int64 = now
    )
        throws -> [UInt8]
    {
        try Container.open(
            container,
            licence: licence ?? (try self.licence()),
            identity: licensee.publicKey,
            deliveryKey: delivery ?? self.delivery,
            brokerLicenceKey: broker.publicKey,
            now: now
        ).payload
    }

    /// A container built chunk by chunk with the tags given, for the corpus's impossible layouts.
    func handmade(totalLength: Int, chunks: [(count: Int, isFinal: Bool)]) throws -> [UInt8] {
        let key = SymmetricKey()
        let stream = try SecretStream.Encryptor(key: key)
        let header = try ContainerHeader(
            model: "credit-risk",
            version: 3,
            licensee: licensee.publicKey,
            licenceID: Array(0x10..<0x20),
            deliveryID: Array(0x30..<0x40),
            chunkSize: 4096,
            totalLength: UInt64(totalLength),
            plaintextDigest: [UInt8](repeating: 0, count: 32),
            sealedFileKey: try SealedBox.seal(key.bytes, to: delivery.publicKey),
            streamHeader: stream.header
        ).signed(by: broker)
        return try chunks.reduce(header) { out, chunk in
            out
                + (try stream.push(
                    [UInt8](repeating: 7, count: chunk.count),
                    isFinal: chunk.isFinal,
                    authenticating: header
                ))
        }
    }
}

func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8($0 % 251) } }

@Suite struct ContainerTests {
    let parties = Parties()

    @Test(arguments: [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
    func roundTrip(size: Int) throws {
        let payload = pattern(size)
        let container = try parties.seal(payload)
        let chunks = max(1, (size + 4095) / 4096)
        #expect(container.count == ContainerHeader.fixedByteCount + 11 + size + 17 * chunks)
        #expect(try parties.open(container) == payload)
        // A fresh file key and stream header every time.
        let again = try parties.seal(payload)
        let header = try ContainerHeader(reading: container, brokerLicenceKey: parties.broker.publicKey)
        let header2 = try ContainerHeader(reading: again, brokerLicenceKey: parties.broker.publicKey)
        #expect(header.sealedFileKey != header2.sealedFileKey)
        #expect(header.streamHeader != header2.streamHeader)
        #expect(header.totalLength == UInt64(size) && header.chunkCount == chunks)
        #expect(header.plaintextDigest == (try Container.plaintextDigest(payload)))
    }

    /// Expects `open` to refuse `container` with `code` and a message containing `words`.
    func refuses(
        _ container: [UInt8],
        _ code: LicensingError.Code,
        _ words: String,
        licence: SignedLicence? = nil,
        delivery: X25519.PrivateKey? = nil,
        now: Int64 = Parties.now,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            let payload = try parties.open(container, licence: licence, delivery: delivery, now: now)
            Issue.record("opened \(payload.count) bytes", sourceLocation: sourceLocation)
        } catch let error as LicensingError {
            #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
            #expect(error.message.contains(words), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func truncationAnywhereIsRefused() throws {
        let payload = pattern(3 * 4096 + 100)
        let container = try parties.seal(payload)
        let headerCount = ContainerHeader.fixedByteCount + 11
        let boundaries = (0...3).map { headerCount + $0 * (4096 + 17) }
        // Every chunk boundary, inside each chunk, inside the header, and one byte short.
        for cut in boundaries + boundaries.map({ $0 + 50 }) + [0, 10, 100, container.count - 1] {
            let truncated = Array(container.prefix(cut))
            #expect(cut < container.count)
            #expect((try? parties.open(truncated)) == nil, "a cut at \(cut) opened")
        }
        refuses(Array(container.prefix(boundaries[3])), .malformed, "truncated or with data appended")
        refuses(Array(container.prefix(100)), .malformed, "not a model container")
    }

    @Test func trailingDataIsRefused() throws {
        let container = try parties.seal(pattern(5000))
        refuses(container + [0], .malformed, "describes \(container.count)")
        refuses(container + container.suffix(17), .malformed, "truncated or with data appended")
    }

    @Test func swappedDuplicatedAndMissingChunksAreRefused() throws {
        let container = try parties.seal(pattern(4 * 4096))
        let h = ContainerHeader.fixedByteCount + 11
        let n = 4096 + 17
        func chunk(_ i: Int) -> ArraySlice<UInt8> { container[(h + i * n)..<(h + (i + 1) * n)] }
        let head = Array(container[..<h])
        refuses(head + chunk(1) + chunk(0) + chunk(2) + chunk(3), .tampered, "chunk 1 of 4 does not authenticate")
        refuses(head + chunk(0) + chunk(2) + chunk(1) + chunk(3), .tampered, "chunk 2 of 4")
        refuses(head + chunk(0) + chunk(0) + chunk(2) + chunk(3), .tampered, "chunk 2 of 4")
        refuses(head + chunk(0) + chunk(1) + chunk(2) + chunk(3) + chunk(3), .malformed, "data appended")
        refuses(head + chunk(0) + chunk(1) + chunk(3), .malformed, "truncated")
        // The last chunk moved into a full-size slot still fails (sizes differ only for partial chunks).
        refuses(head + chunk(0) + chunk(1) + chunk(3) + chunk(2), .tampered, "chunk 3 of 4")
    }

    @Test func finalTagsMustBeExactlyAtTheEnd() throws {
        // Two final chunks: the first chunk already carries the final tag (the reader stops
        // there, so what follows it does not matter).
        refuses(
            try parties.handmade(totalLength: 8192, chunks: [(4096, true)]) + SecureRandom.bytes(4096 + 17),
            .tampered,
            "chunk 1 of 2 carries the final tag"
        )
        // No final tag at all.
        refuses(
            try parties.handmade(totalLength: 8192, chunks: [(4096, false), (4096, false)]),
            .tampered,
            "the last chunk does not carry the final tag"
        )
        // An empty final chunk after full chunks: not the layout the header describes.
        refuses(
            try parties.handmade(totalLength: 8192, chunks: [(4096, false), (4096, false), (0, true)]),
            .malformed,
            "data appended"
        )
        // An empty final chunk is allowed only for an empty payload.
        #expect(try parties.open(try parties.handmade(totalLength: 0, chunks: [(0, true)])) == [])
        // The handmade path itself is sound: the right tags open.
        #expect(
            try parties.open(try parties.handmade(totalLength: 8192, chunks: [(4096, false), (4096, true)])).count
                == 8192
        )
    }

    @Test func aFlipInAnyHeaderBitIsRefused() throws {
        let container = try parties.seal(pattern(5000))
        let h = ContainerHeader.fixedByteCount + 11
        var refusals: [String: Int] = [:]
        for byte in 0..<h {
            for bit in [0, 7] {
                var flipped = container
                flipped[byte] ^= 1 << bit
                do {
                    _ = try parties.open(flipped)
                    Issue.record("a flip of bit \(bit) of header byte \(byte) was accepted")
                } catch let error as LicensingError {
                    refusals[error.code.description, default: 0] += 1
                }
            }
        }
        // Magic, version, length and model-name length make the header unreadable; every other
        // field, and the signature itself, fails the signature check.
        #expect(refusals.values.reduce(0, +) == 2 * h)
        #expect(Set(refusals.keys) == ["malformed", "badSignature"])
        #expect(refusals["badSignature", default: 0] > h)
    }

    @Test func aFailureZeroesWhatWasDecrypted() throws {
        var container = try parties.seal(pattern(3 * 4096))
        container[container.count - 5] ^= 1  // the last chunk's tag: chunks 1 and 2 decrypt first
        var output = [UInt8](repeating: 0xff, count: 3 * 4096)
        let licence = try parties.licence()
        #expect(throws: LicensingError.self) {
            try container.withUnsafeBytes { c in
                try output.withUnsafeMutableBytes { o in
                    _ = try Container.open(
                        c,
                        into: o,
                        licence: licence,
                        identity: parties.licensee.publicKey,
                        deliveryKey: parties.delivery,
                        brokerLicenceKey: parties.broker.publicKey,
                        now: Parties.now
                    )
                }
            }
        }
        #expect(output.allSatisfy { $0 == 0 })
    }

    @Test func theHeaderIsTheAssociatedDataOfEveryChunk() throws {
        // A header re-signed by the broker with one field changed does not carry the old chunks.
        let container = try parties.seal(pattern(5000))
        var header = try ContainerHeader(reading: container, brokerLicenceKey: parties.broker.publicKey)
        header.deliveryID = Array(0x50..<0x60)
        let resigned = try header.signed(by: parties.broker)
        refuses(resigned + container.dropFirst(resigned.count), .tampered, "chunk 1 of 2")
    }

    @Test func theLicenceMustCoverThisNodeModelVersionAndTime() throws {
        let container = try parties.seal(pattern(5000))
        let other = try Ed25519.PrivateKey()
        refuses(container, .tampered, "not sealed to this node's delivery key", delivery: try X25519.PrivateKey())
        refuses(
            container,
            .notLicensed,
            "is for \(other.publicKey.fingerprint)",
            licence: try parties.licence(licensee: other.publicKey)
        )
        refuses(
            container,
            .notLicensed,
            "expired at \(Parties.now - 1)",
            licence: try parties.licence(notAfter: Parties.now - 1)
        )
        refuses(
            container,
            .notLicensed,
            "not valid until \(Parties.now + 60)",
            licence: try parties.licence(notBefore: Parties.now + 60)
        )
        refuses(
            container,
            .notLicensed,
            "not credit-risk version 3",
            licence: try parties.licence(model: "other-model")
        )
        refuses(
            container,
            .notLicensed,
            "versions 4–9, not credit-risk version 3",
            licence: try parties.licence(versions: 4...9)
        )
        // Delivered under another licence (another id) for the same licensee.
        let another = try Licence(
            id: Array(0x70..<0x80),
            model: "credit-risk",
            versions: 1...9,
            licensee: parties.licensee.publicKey,
            entitlements: .inference,
            notBefore: 0,
            notAfter: Parties.now + 10,
            deliveryLimit: 1
        ).signed(by: parties.broker)
        refuses(container, .notLicensed, "under another licence", licence: another)
        // A container signed by a key other than the broker's licence key.
        let forged = try Parties().seal(pattern(5000))
        var header = try ContainerHeader(reading: forged, brokerLicenceKey: parties.broker.publicKey)
        header.version = 3
        let impostor = try header.signed(by: try Ed25519.PrivateKey())
        refuses(impostor + forged.dropFirst(impostor.count), .badSignature, "does not verify")
        // The boundaries of the window are inclusive.
        #expect(try parties.open(container, now: Parties.now - 3600).count == 5000)
        #expect(try parties.open(container, now: Parties.now + 86_400).count == 5000)
    }
}

@Suite struct LicenceTests {
    let parties = Parties()

    @Test func signedLicenceRoundTripsAndEveryFlipIsRefused() throws {
        let signed = try parties.licence()
        #expect(signed.bytes.count == 2 + 16 + 12 + 8 + 32 + 4 + 16 + 4 + 64)
        let decoded = try SignedLicence(decoding: signed.bytes, brokerLicenceKey: parties.broker.publicKey)
        #expect(decoded == signed)
        #expect(decoded.licence.entitlements.names == ["inference", "fine-tuning"])
        for i in signed.bytes.indices {
            var flipped = signed.bytes
            flipped[i] ^= 0x01
            #expect(throws: LicensingError.self) {
                try SignedLicence(decoding: flipped, brokerLicenceKey: parties.broker.publicKey)
            }
        }
        let wrongKey = #expect(throws: LicensingError.self) {
            try SignedLicence(decoding: signed.bytes, brokerLicenceKey: try Ed25519.PrivateKey().publicKey)
        }
        #expect(wrongKey?.code == .badSignature)
        let trailing = #expect(throws: LicensingError.self) {
            try SignedLicence(decoding: signed.bytes + [0], brokerLicenceKey: parties.broker.publicKey)
        }
        #expect(trailing?.message == "not a signed licence: 1 unexpected bytes after the end at offset 158")
    }

    @Test func invalidLicencesAreRefused() throws {
        func make(
            _ entitlements: Entitlements = .inference,
            nb: Int64 = 0,
            na: Int64 = 10,
            limit: UInt32 = 1,
            model: String = "m"
        )
            throws
        {
            _ = try Licence(
                id: Array(0..<16),
                model: model,
                versions: 1...1,
                licensee: parties.licensee.publicKey,
                entitlements: entitlements,
                notBefore: nb,
                notAfter: na,
                deliveryLimit: limit
            )
        }
        #expect(
            (#expect(throws: LicensingError.self) { try make([]) })?.message == "entitlements 0 are empty or unknown"
        )
        #expect(throws: LicensingError.self) { try make(Entitlements(rawValue: 4)) }
        #expect(throws: LicensingError.self) { try make(nb: 10, na: 10) }
        #expect(throws: LicensingError.self) { try make(limit: 0) }
        #expect(throws: LicensingError.self) { try make(model: "Not Valid") }
        #expect(throws: LicensingError.self) { try Entitlements(names: ["resale"]) }
        #expect(try Entitlements(names: ["fine-tuning"]) == .fineTuning)
    }
}
