public import CairnCrypto
import CairnWire

/// The header of an encrypted model container (`Protocol/README.md`, "Model containers"): who
/// it is for, under which licence, how the payload is cut, and the sealed file key. The broker
/// signs it with its licence key, and every payload chunk authenticates it as associated data.
public struct ContainerHeader: Hashable, Sendable {
    /// `"CAIRNMC\0"`.
    public static let magic: [UInt8] = Array("CAIRNMC".utf8) + [0]
    /// The format version this code writes and reads.
    public static let formatVersion: UInt16 = 1
    /// The domain of the broker's signature over the header.
    public static let signatureDomain = Domain("cairn/container-header/v1")
    /// Chunk sizes a reader accepts: 4 KiB to 16 MiB of plaintext.
    public static let chunkSizes: ClosedRange<UInt32> = 4096...(16 << 20)
    /// The largest payload a reader accepts: 64 GiB.
    public static let maximumTotalLength: UInt64 = 64 << 30
    /// The sealed file key: a 32-byte key in a sealed box.
    public static let sealedKeyByteCount = SymmetricKey.byteCount + SealedBox.overheadByteCount
    /// The longest header: a 64-character model name.
    public static let maximumByteCount = fixedByteCount + 64
    /// Bytes of a header other than the model name.
    static let fixedByteCount = 8 + 2 + 2 + 1 + 4 + 32 + 16 + 16 + 4 + 8 + 32 + sealedKeyByteCount + 24 + 64

    /// The model (its federation's id).
    public var model: String
    /// The model version.
    public var version: UInt32
    /// The licensee's Ed25519 identity key.
    public var licensee: Ed25519.PublicKey
    /// The licence it is delivered under.
    public var licenceID: [UInt8]
    /// This delivery's id (16 bytes), recorded in the audit log, so a leaked copy names its licence.
    public var deliveryID: [UInt8]
    /// Plaintext bytes per chunk; the last chunk holds the rest (1…chunkSize bytes, or 0 only for
    /// an empty payload).
    public var chunkSize: UInt32
    /// The payload's length in bytes.
    public var totalLength: UInt64
    /// BLAKE2b-256 of the payload in the domain `cairn/model-file/v1` (the registry's file digest).
    public var plaintextDigest: [UInt8]
    /// The file key, sealed to the licensee's X25519 delivery key.
    public var sealedFileKey: [UInt8]
    /// The secretstream header.
    public var streamHeader: [UInt8]

    /// A header; refuses fields out of range.
    public init(
        model: String,
        version: UInt32,
        licensee: Ed25519.PublicKey,
        licenceID: [UInt8],
        deliveryID: [UInt8],
        chunkSize: UInt32,
        totalLength: UInt64,
        plaintextDigest: [UInt8],
        sealedFileKey: [UInt8],
        streamHeader: [UInt8]
    ) throws {
        try Licence.checkModelName(model)
        guard licenceID.count == 16, deliveryID.count == 16 else {
            throw LicensingError(.malformed, "licence and delivery ids have 16 bytes")
        }
        guard Self.chunkSizes.contains(chunkSize) else {
            throw LicensingError(.malformed, "chunk size \(chunkSize) is outside 4 KiB–16 MiB")
        }
        guard totalLength <= Self.maximumTotalLength else {
            throw LicensingError(.malformed, "a payload of \(totalLength) bytes is over the 64 GiB limit")
        }
        guard plaintextDigest.count == 32, sealedFileKey.count == Self.sealedKeyByteCount,
            streamHeader.count == SecretStream.headerByteCount
        else { throw LicensingError(.malformed, "a digest, sealed key or stream header has the wrong length") }
        self.model = model
        self.version = version
        self.licensee = licensee
        self.licenceID = licenceID
        self.deliveryID = deliveryID
        self.chunkSize = chunkSize
        self.totalLength = totalLength
        self.plaintextDigest = plaintextDigest
        self.sealedFileKey = sealedFileKey
        self.streamHeader = streamHeader
    }

    /// The header's length in bytes, signature included.
    public var byteCount: Int { Self.fixedByteCount + model.utf8.count }

    /// How many chunks the payload has: ⌈total / chunk size⌉, and one for an empty payload.
    public var chunkCount: Int { max(1, Int((totalLength + UInt64(chunkSize) - 1) / UInt64(chunkSize))) }

    /// The whole container's length: header, payload and 17 bytes per chunk.
    public var containerByteCount: Int {
        byteCount + Int(totalLength) + chunkCount * SecretStream.chunkOverheadByteCount
    }

    /// The plaintext length of chunk `i`.
    func plaintextCount(ofChunk i: Int) -> Int {
        i < chunkCount - 1 ? Int(chunkSize) : Int(totalLength) - (chunkCount - 1) * Int(chunkSize)
    }

    /// The header's bytes signed by the broker's licence key: the fields, then the signature.
    public func signed(by key: Ed25519.PrivateKey) throws -> [UInt8] {
        var w = ByteWriter(capacity: byteCount)
        w.raw(Self.magic)
        w.u16(Self.formatVersion)
        w.u16(UInt16(byteCount))
        w.label(model)
        w.u32(version)
        w.raw(licensee.rawRepresentation)
        w.raw(licenceID)
        w.raw(deliveryID)
        w.u32(chunkSize)
        w.u64(totalLength)
        w.raw(plaintextDigest)
        w.raw(sealedFileKey)
        w.raw(streamHeader)
        return w.bytes + (try key.signature(for: w.bytes, domain: Self.signatureDomain))
    }

    /// Reads the header at the start of `container` and verifies its signature; returns it with
    /// its length. Refuses a bad magic, an unknown version, a length that disagrees with the
    /// fields, any field out of range and a bad signature.
    public init(reading container: [UInt8], brokerLicenceKey: Ed25519.PublicKey) throws {
        do {
            var r = ByteReader(Array(container.prefix(Self.maximumByteCount)))
            guard try r.fixed(8, "magic") == Self.magic else {
                throw LicensingError(.malformed, "not a Cairn model container (bad magic)")
            }
            let version = try r.u16("container format version")
            guard version == Self.formatVersion else {
                throw LicensingError(
                    .malformed,
                    "container format version \(version); this release reads \(Self.formatVersion)"
                )
            }
            let length = Int(try r.u16("header length"))
            try self.init(
                model: try r.label("model"),
                version: try r.u32("model version"),
                licensee: try Ed25519.PublicKey(rawRepresentation: try r.fixed(32, "licensee key")),
                licenceID: try r.fixed(16, "licence id"),
                deliveryID: try r.fixed(16, "delivery id"),
                chunkSize: try r.u32("chunk size"),
                totalLength: try r.u64("total length"),
                plaintextDigest: try r.fixed(32, "plaintext digest"),
                sealedFileKey: try r.fixed(Self.sealedKeyByteCount, "sealed file key"),
                streamHeader: try r.fixed(SecretStream.headerByteCount, "stream header")
            )
            guard length == byteCount else {
                throw LicensingError(.malformed, "the header length says \(length) bytes; its fields take \(byteCount)")
            }
            let signature = try r.fixed(Ed25519.signatureByteCount, "header signature")
            guard
                brokerLicenceKey.isValidSignature(
                    signature,
                    for: Array(container[..<(length - 64)]),
                    domain: Self.signatureDomain
                )
            else {
                throw LicensingError(
                    .badSignature,
                    "the container header's signature does not verify under the broker's licence key"
                )
            }
        } catch let error as WireError {
            throw LicensingError(.malformed, "not a model container: \(error.message)")
        } catch let error as CryptoError {
            throw LicensingError(.malformed, "not a model container: \(error.message)")
        }
    }
}

/// Encrypted model containers: a signed ``ContainerHeader``, then the payload in secretstream
/// chunks under a fresh file key, each with the whole header as associated data, the last with
/// the final tag. Nothing is returned from ``open(_:licence:identity:deliveryKey:brokerLicenceKey:now:)``
/// until the licence, the signature, every chunk and the final tag have checked out.
public enum Container {
    /// The domain of the payload digest in the header and the registry.
    public static let plaintextDigestDomain = Domain("cairn/model-file/v1")
    /// The default chunk size: 1 MiB.
    public static let defaultChunkSize: UInt32 = 1 << 20

    /// The payload digest the header carries: BLAKE2b-256 in `cairn/model-file/v1`.
    public static func plaintextDigest(_ payload: [UInt8]) throws -> [UInt8] {
        try BLAKE2b.hash(payload, domain: plaintextDigestDomain)
    }

    /// A container's length for a payload of `payloadCount` bytes of `model`.
    public static func byteCount(model: String, payloadCount: Int, chunkSize: UInt32 = defaultChunkSize) -> Int {
        let chunks = max(1, (payloadCount + Int(chunkSize) - 1) / Int(chunkSize))
        return ContainerHeader.fixedByteCount + model.utf8.count + payloadCount
            + chunks * SecretStream.chunkOverheadByteCount
    }

    /// Seals `payload` for one licensee under a fresh file key and a fresh stream header.
    ///
    /// `plaintextDigest` is the registry's digest of the payload (``plaintextDigest(_:)``,
    /// computed once when the version was published), so a delivery costs one encryption pass.
    public static func seal(
        _ payload: UnsafeRawBufferPointer,
        plaintextDigest: [UInt8],
        model: String,
        version: UInt32,
        licence: Licence,
        deliveryID: [UInt8],
        deliveryKey: X25519.PublicKey,
        chunkSize: UInt32 = defaultChunkSize,
        signer: Ed25519.PrivateKey
    ) throws -> [UInt8] {
        let total = byteCount(model: model, payloadCount: payload.count, chunkSize: chunkSize)
        return try [UInt8](unsafeUninitializedCapacity: total) { out, initialised in
            try seal(
                payload,
                into: UnsafeMutableRawBufferPointer(out),
                plaintextDigest: plaintextDigest,
                model: model,
                version: version,
                licence: licence,
                deliveryID: deliveryID,
                deliveryKey: deliveryKey,
                chunkSize: chunkSize,
                signer: signer
            )
            initialised = total
        }
    }

    /// ``seal(_:plaintextDigest:model:version:licence:deliveryID:deliveryKey:chunkSize:signer:)``
    /// into `output`, which has exactly ``byteCount(model:payloadCount:chunkSize:)`` bytes.
    public static func seal(
        _ payload: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        plaintextDigest: [UInt8],
        model: String,
        version: UInt32,
        licence: Licence,
        deliveryID: [UInt8],
        deliveryKey: X25519.PublicKey,
        chunkSize: UInt32 = defaultChunkSize,
        signer: Ed25519.PrivateKey
    ) throws {
        let fileKey = SymmetricKey()
        let stream = try SecretStream.Encryptor(key: fileKey)
        let header = try ContainerHeader(
            model: model,
            version: version,
            licensee: licence.licensee,
            licenceID: licence.id,
            deliveryID: deliveryID,
            chunkSize: chunkSize,
            totalLength: UInt64(payload.count),
            plaintextDigest: plaintextDigest,
            sealedFileKey: try SealedBox.seal(fileKey.bytes, to: deliveryKey),
            streamHeader: stream.header
        )
        precondition(output.count == header.containerByteCount, "output must have byteCount(...) bytes")
        let headerBytes = try header.signed(by: signer)
        headerBytes.withUnsafeBytes { output.copyMemory(from: $0) }
        var input = 0
        var at = headerBytes.count
        for i in 0..<header.chunkCount {
            let n = header.plaintextCount(ofChunk: i)
            let sealed = n + SecretStream.chunkOverheadByteCount
            try stream.push(
                UnsafeRawBufferPointer(rebasing: payload[input..<(input + n)]),
                into: UnsafeMutableRawBufferPointer(rebasing: output[at..<(at + sealed)]),
                isFinal: i == header.chunkCount - 1,
                authenticating: headerBytes
            )
            input += n
            at += sealed
        }
    }

    /// Checks a container against its licence and decrypts it, in this order: the licence names
    /// `identity` and is valid at `now`; the header's signature; the header names the same
    /// licensee, licence, model and a version the licence covers; the container's length is
    /// exactly what the header implies; the file key opens with `deliveryKey`; every chunk
    /// authenticates in order, only the last carries the final tag. Any failure throws before a
    /// byte of plaintext is returned (partially decrypted bytes are zeroed).
    ///
    /// The licence's revocation and its presence in the audit log are the caller's to check
    /// (the broker refuses revoked licences; the node checks the inclusion proof).
    public static func open(
        _ container: [UInt8],
        licence: SignedLicence,
        identity: Ed25519.PublicKey,
        deliveryKey: X25519.PrivateKey,
        brokerLicenceKey: Ed25519.PublicKey,
        now: Int64
    ) throws -> (header: ContainerHeader, payload: [UInt8]) {
        try container.withUnsafeBytes { c in
            let (header, associated) = try checked(
                c,
                licence: licence,
                identity: identity,
                brokerLicenceKey: brokerLicenceKey,
                now: now
            )
            let total = Int(header.totalLength)
            let payload = try [UInt8](unsafeUninitializedCapacity: total) { out, initialised in
                try decrypt(c, header, associated, into: UnsafeMutableRawBufferPointer(out), deliveryKey: deliveryKey)
                initialised = total
            }
            return (header, payload)
        }
    }

    /// ``open(_:licence:identity:deliveryKey:brokerLicenceKey:now:)`` into `output`, which has
    /// exactly the header's total length in bytes (read it first with
    /// ``ContainerHeader/init(reading:brokerLicenceKey:)``); `output` is zeroed when this throws.
    public static func open(
        _ container: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        licence: SignedLicence,
        identity: Ed25519.PublicKey,
        deliveryKey: X25519.PrivateKey,
        brokerLicenceKey: Ed25519.PublicKey,
        now: Int64
    ) throws -> ContainerHeader {
        let (header, associated) = try checked(
            container,
            licence: licence,
            identity: identity,
            brokerLicenceKey: brokerLicenceKey,
            now: now
        )
        precondition(output.count == Int(header.totalLength), "output must have the header's total length")
        try decrypt(container, header, associated, into: output, deliveryKey: deliveryKey)
        return header
    }

    /// Every check before decryption, in the documented order; returns the header and its bytes
    /// (every chunk's associated data).
    private static func checked(
        _ container: UnsafeRawBufferPointer,
        licence: SignedLicence,
        identity: Ed25519.PublicKey,
        brokerLicenceKey: Ed25519.PublicKey,
        now: Int64
    ) throws -> (ContainerHeader, [UInt8]) {
        let terms = licence.licence
        guard terms.licensee == identity else {
            throw LicensingError(
                .notLicensed,
                "licence \(terms.idHex) is for \(terms.licensee.fingerprint), not this node"
            )
        }
        try terms.checkValid(at: now)
        let headerBytes = Array(container.prefix(ContainerHeader.maximumByteCount))
        let header = try ContainerHeader(reading: headerBytes, brokerLicenceKey: brokerLicenceKey)
        guard header.licensee == identity else {
            throw LicensingError(.notLicensed, "the container is for \(header.licensee.fingerprint), not this node")
        }
        guard header.licenceID == terms.id else {
            throw LicensingError(.notLicensed, "the container was delivered under another licence, not \(terms.idHex)")
        }
        guard header.model == terms.model, terms.versions.contains(header.version) else {
            throw LicensingError(
                .notLicensed,
                "licence \(terms.idHex) covers \(terms.model) versions \(terms.versions.lowerBound)–\(terms.versions.upperBound), not \(header.model) version \(header.version)"
            )
        }
        guard container.count == header.containerByteCount else {
            throw LicensingError(
                .malformed,
                "the container has \(container.count) bytes; its header describes \(header.containerByteCount) (truncated or with data appended)"
            )
        }
        return (header, Array(headerBytes.prefix(header.byteCount)))
    }

    /// Opens the file key and decrypts every chunk into `output`, zeroing it on failure.
    private static func decrypt(
        _ container: UnsafeRawBufferPointer,
        _ header: ContainerHeader,
        _ associated: [UInt8],
        into output: UnsafeMutableRawBufferPointer,
        deliveryKey: X25519.PrivateKey
    ) throws {
        let fileKey: SecretBytes
        do {
            fileKey = try SealedBox.open(header.sealedFileKey, recipient: deliveryKey)
        } catch {
            throw LicensingError(.tampered, "the file key is not sealed to this node's delivery key")
        }
        let stream: SecretStream.Decryptor
        do {
            stream = try SecretStream.Decryptor(key: try SymmetricKey(fileKey), header: header.streamHeader)
        } catch {
            throw LicensingError(.tampered, "the file key or stream header is not valid")
        }
        var input = header.byteCount
        var written = 0
        var chunk = 0
        do {
            for i in 0..<header.chunkCount {
                chunk = i
                let n = header.plaintextCount(ofChunk: i)
                let sealed = n + SecretStream.chunkOverheadByteCount
                let isFinal = try stream.pull(
                    UnsafeRawBufferPointer(rebasing: container[input..<(input + sealed)]),
                    into: UnsafeMutableRawBufferPointer(rebasing: output[written..<(written + n)]),
                    authenticating: associated
                )
                input += sealed
                written += n
                guard isFinal == (i == header.chunkCount - 1) else {
                    throw LicensingError(
                        .tampered,
                        isFinal
                            ? "chunk \(i + 1) of \(header.chunkCount) carries the final tag"
                            : "the last chunk does not carry the final tag"
                    )
                }
            }
        } catch {
            SecureMemory.zero(UnsafeMutableRawBufferPointer(rebasing: output[..<written]))
            if let error = error as? LicensingError { throw error }
            throw LicensingError(
                .tampered,
                "chunk \(chunk + 1) of \(header.chunkCount) does not authenticate (changed, moved, missing or added)"
            )
        }
    }
}
