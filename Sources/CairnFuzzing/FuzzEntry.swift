import CairnExchange
import CairnWire

@testable import CairnAudit
@testable import CairnCrypto
@testable import CairnLicensing
@testable import CairnModels
@testable import CairnSecAgg

/// One fuzz input through Cairn's decoders of untrusted bytes. The libFuzzer target
/// (`FuzzTesting/run`) calls it millions of times; the test suite replays the saved inputs in
/// `FuzzTesting/regressions/` through it. It must never crash: every decoder either returns a
/// value or throws.
///
/// The first byte chooses the decoder; the rest is its input.
public enum FuzzEntry {
    /// Feeds `input` to the decoder its first byte selects.
    public static func run(_ input: [UInt8]) {
        guard let selector = input.first else { return }
        let body = Array(input.dropFirst())
        switch selector % 10 {
        case 0:
            _ = try? Keystore.parseHeader(body)
        case 1:
            if let entries = try? Keystore.decodePayload(SecretBytes(copying: body)) {
                // What decodes is a valid keystore: distinct names, 32-byte keys.
                precondition((try? Keystore(entries: entries)) != nil, "decoded keystore entries are invalid")
            }
        case 2:
            readFields(body)
        case 3:
            if let bytes = try? Hex.decode(String(decoding: body, as: UTF8.self)) {
                precondition(Hex.encode(bytes).count == bytes.count * 2, "hex round trip changed the length")
            }
            _ = try? TLSCertificate.der(pem: String(decoding: body, as: UTF8.self))
            if body.count >= 2 {
                let index = UInt16(body[0]) | UInt16(body[1]) << 8
                _ = try? Shamir.Share(index: index, value: SecretBytes(copying: body.dropFirst(2)))
            }
        case 4:
            pullStream(body)
            upload(body)
            _ = try? fuzzSeal.open(body, .request)
            _ = try? fuzzSeal.open(body, .response)
        case 5:
            if let report = try? DataValidator.check(bytes: body, schema: fuzzSchema) {
                // Every problem counted is either listed or beyond the listing limit.
                let total = report.counts.values.reduce(0, +)
                precondition(
                    report.problems.count == min(total, ValidationReport.listedProblemLimit),
                    "report lost a problem"
                )
            }
        case 6:
            if let entry = try? AuditEntry(decoding: body) {
                // What decodes is canonical: it encodes back to the same bytes.
                precondition((try? entry.encoded()) == body, "audit entry round trip changed the bytes")
            }
            let text = String(decoding: body, as: UTF8.self)
            _ = try? Checkpoint(text: text)
            _ = try? NoteVerifier(encoded: text)
            _ = try? SignedNote.open(text, verifier: fuzzVerifier)
            // Bundle lines: what parses is canonical, so it prints back to the same bytes.
            if let entry = try? BundleText.entry(jsonLine: body[...]) {
                precondition(Array(BundleText.jsonLine(entry).utf8.dropLast()) == body, "entry line round trip changed")
            }
            if let (n, hash, proof) = try? BundleText.proof(line: body[...], "sequence", "leaf") {
                precondition(
                    Array(BundleText.proofLine("sequence", n, "leaf", hash, proof).utf8.dropLast()) == body,
                    "proof line round trip changed"
                )
            }
            if let (size, cosignature) = try? BundleText.cosignature(line: body[...]) {
                precondition(
                    Array(BundleText.cosignatureLine(size: size, cosignature).utf8.dropLast()) == body,
                    "cosignature line round trip changed"
                )
            }
            _ = try? AuditBundle.Manifest(text)
            _ = try? AuditBundle.verifyProofDocument(body, verifier: fuzzVerifier)
        case 8:
            secureAggregation(body)
        case 9:
            licensing(body)
        default:
            if let file = try? ModelFile.decode(body) {
                // What decodes re-encodes to a file that decodes to the same model.
                precondition(
                    (try? ModelFile.decode(file.encoded()))?.model == file.model,
                    "model file round trip changed"
                )
            }
        }
    }

    /// Every SecAgg+ message decoder and the round configuration: what decodes is canonical,
    /// so it encodes back to the same bytes.
    private static func secureAggregation(_ body: [UInt8]) {
        func roundTrip(_ encoded: [UInt8]?, _ name: String) {
            if let encoded { precondition(encoded == body, "\(name) round trip changed the bytes") }
        }
        roundTrip((try? AdvertiseKeys(decoding: body))?.encoded, "AdvertiseKeys")
        roundTrip((try? KeyList(decoding: body))?.encoded, "KeyList")
        roundTrip((try? ShareKeys(decoding: body))?.encoded, "ShareKeys")
        roundTrip((try? ShareDelivery(decoding: body))?.encoded, "ShareDelivery")
        roundTrip((try? MaskedInput(decoding: body))?.encoded, "MaskedInput")
        roundTrip((try? ConsistencyRequest(decoding: body))?.encoded, "ConsistencyRequest")
        roundTrip((try? ConsistencySignature(decoding: body))?.encoded, "ConsistencySignature")
        roundTrip((try? UnmaskRequest(decoding: body))?.encoded, "UnmaskRequest")
        roundTrip((try? UnmaskResponse(decoding: body))?.encoded, "UnmaskResponse")
        roundTrip((try? RoundConfig(decoding: body))?.encoded, "RoundConfig")
    }

    /// Fixed keys for fuzzing licences and containers (the test vectors' seeds).
    private static let licenceKey = try! Ed25519.PrivateKey(
        seed: SecretBytes(copying: [UInt8](repeating: 0x4c, count: 32))
    )
    private static let licenseeKey = try! Ed25519.PrivateKey(
        seed: SecretBytes(copying: [UInt8](repeating: 0x6e, count: 32))
    )
    private static let deliveryKey = try! X25519.PrivateKey(
        rawRepresentation: SecretBytes(copying: [UInt8](repeating: 0x64, count: 32))
    )

    /// A signed licence, a container header and a whole container (with the licence as the
    /// first 256 bytes' prefix when it decodes): what decodes is canonical.
    private static func licensing(_ body: [UInt8]) {
        if let licence = try? SignedLicence(decoding: body, brokerLicenceKey: licenceKey.publicKey) {
            precondition(licence.licence.encoded() == Array(body.dropLast(64)), "licence round trip changed the bytes")
        }
        if let header = try? ContainerHeader(reading: body, brokerLicenceKey: licenceKey.publicKey) {
            precondition(header.byteCount <= body.count, "a header was read past the input")
        }
        let licence = try! Licence(
            id: [UInt8](repeating: 1, count: 16),
            model: "vectors",
            versions: 1...3,
            licensee: licenseeKey.publicKey,
            entitlements: .inference,
            notBefore: 0,
            notAfter: Int64.max,
            deliveryLimit: 1
        ).signed(by: licenceKey)
        _ = try? Container.open(
            body,
            licence: licence,
            identity: licenseeKey.publicKey,
            deliveryKey: deliveryKey,
            brokerLicenceKey: licenceKey.publicKey,
            now: 1
        )
    }

    /// The Go sumdb test key's verifier, for fuzzing signed-note parsing.
    private static let fuzzVerifier = try! NoteVerifier(
        encoded: "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )

    /// A schema with every feature type, for fuzzing the CSV validator.
    private static let fuzzSchema = DataSchema(
        task: .multiclass,
        label: .init(name: "y", classes: ["a", "b", "c"]),
        features: [
            .init(name: "f", type: .float, min: -1, max: 1),
            .init(name: "i", type: .integer, min: 0, max: 9),
            .init(name: "c", type: .category, categories: ["x", "y"]),
        ]
    )

    /// Interprets the input as a program of reads: each byte picks the next field type.
    private static func readFields(_ body: [UInt8]) {
        let split = body.count / 2
        let program = body.prefix(split)
        var reader = ByteReader(Array(body.dropFirst(split)))
        for op in program {
            do {
                switch op % 9 {
                case 0: _ = try reader.u8("u8")
                case 1: _ = try reader.u16("u16")
                case 2: _ = try reader.u32("u32")
                case 3: _ = try reader.u64("u64")
                case 4: _ = try reader.bool("bool")
                case 5: _ = try reader.fixed(Int(op >> 4), "fixed")
                case 6: _ = try reader.lengthPrefixed("bytes", maximum: 1024)
                case 7: _ = try reader.string("text", maximum: 1024)
                default: _ = try reader.label("label")
                }
            } catch {
                return
            }
        }
        _ = try? reader.finish()
    }

    private static let streamKey = try! SymmetricKey(SecretBytes(copying: [UInt8](repeating: 7, count: 32)))

    /// A secretstream header and then chunks, each preceded by a one-byte length.
    /// The bytes of `Protocol/sealed-vectors.json`'s fixed keys: byte i of key `tag` is 7i + tag.
    private static func fixed(_ tag: UInt8) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: $0 * 7 + Int(tag)) } }

    /// A sealed body's keys for a fixed member, broker and request.
    private static let fuzzSeal = try! SealedBody.member(
        identity: try Ed25519.PrivateKey(seed: SecretBytes(copying: fixed(1))),
        broker: try Ed25519.PrivateKey(seed: SecretBytes(copying: fixed(2))).publicKey,
        transport: try X25519.PrivateKey(rawRepresentation: SecretBytes(copying: fixed(3))).publicKey,
        method: "POST",
        target: "/v1/federations/vectors/evaluations",
        time: 1_796_083_200,
        nonce: Array(fixed(4).prefix(16))
    )

    /// A masked-input upload of 5 words under the vectors' fixed key: refused, or read whole with
    /// the commitment computed from its bytes alone.
    private static func upload(_ body: [UInt8]) {
        let layout = MaskedUpload(wordCount: 5, session: fixed(7), sender: 2)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 20, alignment: 16)
        defer { buffer.deallocate() }
        guard let key = try? SymmetricKey(SecretBytes(copying: fixed(6))),
            let reader = try? MaskedUpload.Reader(layout: layout, key: key, into: buffer),
            (try? body.withUnsafeBytes { try reader.feed($0) }) != nil,
            let commitment = try? reader.finish()
        else { return }
        precondition(commitment == (try? MaskedUpload.commitment(ofBody: body)), "the reader's commitment differs")
    }

    private static func pullStream(_ body: [UInt8]) {
        guard body.count >= SecretStream.headerByteCount,
            let decryptor = try? SecretStream.Decryptor(key: streamKey, header: Array(body.prefix(24)))
        else { return }
        var rest = body.dropFirst(24)
        while let length = rest.first {
            let chunk = Array(rest.dropFirst().prefix(Int(length)))
            rest = rest.dropFirst(1 + chunk.count)
            guard (try? decryptor.pull(chunk)) != nil else { return }
        }
        _ = try? decryptor.finish()
    }
}
