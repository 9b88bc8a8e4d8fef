public import CairnCrypto
public import CairnWire

/// An error raised while issuing, checking or opening licences and containers.
public typealias LicensingError = CairnError<LicensingErrorDomain>

/// The domain tag of ``LicensingError``.
public enum LicensingErrorDomain: Sendable {}

extension ErrorCode where Domain == LicensingErrorDomain {
    /// Bytes that are not a well-formed licence or container (truncated, trailing data, a bad field).
    public static let malformed = Self("malformed")
    /// A signature does not verify under the broker's licence key.
    public static let badSignature = Self("badSignature")
    /// The licence does not cover this use: another licensee, model or version, outside its
    /// validity window, revoked, or not in the audit log.
    public static let notLicensed = Self("notLicensed")
    /// The container's payload does not authenticate: a chunk changed, moved, missing or added,
    /// or the file key is not sealed to this delivery key.
    public static let tampered = Self("tampered")
}

/// What a licence lets its holder do with the model.
public struct Entitlements: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Run the model on one's own data.
    public static let inference = Entitlements(rawValue: 1)
    /// Train the model further on one's own data.
    public static let fineTuning = Entitlements(rawValue: 2)
    /// Every entitlement this version defines.
    public static let all: Entitlements = [.inference, .fineTuning]

    /// The names used in the API and on the command line, in bit order.
    public var names: [String] {
        [(Entitlements.inference, "inference"), (.fineTuning, "fine-tuning")].filter { contains($0.0) }.map(\.1)
    }

    /// Parses names as ``names`` prints them; refuses an unknown or empty list.
    public init(names: [String]) throws {
        var value: Entitlements = []
        for name in names {
            switch name {
            case "inference": value.insert(.inference)
            case "fine-tuning": value.insert(.fineTuning)
            default: throw LicensingError(.malformed, "unknown entitlement \"\(name)\" (inference, fine-tuning)")
            }
        }
        guard !value.isEmpty else { throw LicensingError(.malformed, "a licence grants at least one entitlement") }
        self = value
    }
}

/// A licence: the broker's signed grant of one model's versions to one licensee
/// (`Protocol/README.md`, "Licences").
public struct Licence: Hashable, Sendable {
    /// The format version this code writes and reads.
    public static let formatVersion: UInt16 = 1
    /// The domain of the broker's signature.
    public static let signatureDomain = Domain("cairn/licence/v1")
    /// The domain of the digest that names a signed licence in the audit log.
    public static let digestDomain = Domain("cairn/licence-digest/v1")

    /// 16 random bytes.
    public var id: [UInt8]
    /// The model (its federation's id).
    public var model: String
    /// The versions covered, inclusive.
    public var versions: ClosedRange<UInt32>
    /// The licensee's Ed25519 identity key.
    public var licensee: Ed25519.PublicKey
    /// What the licensee may do.
    public var entitlements: Entitlements
    /// Valid from this Unix second…
    public var notBefore: Int64
    /// …to this one, inclusive.
    public var notAfter: Int64
    /// How many containers may be delivered under it (≥ 1).
    public var deliveryLimit: UInt32

    /// A licence; refuses an empty validity window, a zero delivery limit, an empty or unknown
    /// entitlement set, and a model name that is not 1–64 characters of `a-z 0-9 - _ .`.
    public init(
        id: [UInt8],
        model: String,
        versions: ClosedRange<UInt32>,
        licensee: Ed25519.PublicKey,
        entitlements: Entitlements,
        notBefore: Int64,
        notAfter: Int64,
        deliveryLimit: UInt32
    ) throws {
        guard id.count == 16 else { throw LicensingError(.malformed, "a licence id has 16 bytes, not \(id.count)") }
        try Self.checkModelName(model)
        guard !entitlements.isEmpty, Entitlements.all.isSuperset(of: entitlements) else {
            throw LicensingError(.malformed, "entitlements \(entitlements.rawValue) are empty or unknown")
        }
        guard notBefore >= 0, notBefore < notAfter else {
            throw LicensingError(
                .malformed,
                "a licence's not-before (\(notBefore)) must precede its not-after (\(notAfter))"
            )
        }
        guard deliveryLimit >= 1 else { throw LicensingError(.malformed, "a licence allows at least one delivery") }
        self.id = id
        self.model = model
        self.versions = versions
        self.licensee = licensee
        self.entitlements = entitlements
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.deliveryLimit = deliveryLimit
    }

    /// Refuses a model name that is not 1–64 characters of `a-z 0-9 - _ .`.
    static func checkModelName(_ name: String) throws {
        let ok =
            name.utf8.count >= 1 && name.utf8.count <= 64
            && name.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f || c == 0x2e
            }
        guard ok else { throw LicensingError(.malformed, "a model name has 1–64 characters of a-z 0-9 - _ .") }
    }

    /// The id in lower-case hex, as the API and the audit log show it.
    public var idHex: String { Hex.encode(id) }

    /// The canonical encoding (the signed bytes).
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u16(Self.formatVersion)
        w.raw(id)
        w.label(model)
        w.u32(versions.lowerBound)
        w.u32(versions.upperBound)
        w.raw(licensee.rawRepresentation)
        w.u32(entitlements.rawValue)
        w.u64(UInt64(notBefore))
        w.u64(UInt64(notAfter))
        w.u32(deliveryLimit)
        return w.bytes
    }

    /// Reads a licence from `reader`, checking every field.
    init(reading r: inout ByteReader) throws {
        do {
            let version = try r.u16("licence format version")
            guard version == Self.formatVersion else {
                throw LicensingError(
                    .malformed,
                    "licence format version \(version); this release reads \(Self.formatVersion)"
                )
            }
            let id = try r.fixed(16, "licence id")
            let model = try r.label("model")
            let first = try r.u32("first version")
            let last = try r.u32("last version")
            guard first <= last else { throw LicensingError(.malformed, "the version range \(first)–\(last) is empty") }
            let licensee = try Ed25519.PublicKey(rawRepresentation: try r.fixed(32, "licensee key"))
            let entitlements = Entitlements(rawValue: try r.u32("entitlements"))
            let notBefore = try r.u64("not before")
            let notAfter = try r.u64("not after")
            guard notBefore <= UInt64(Int64.max), notAfter <= UInt64(Int64.max) else {
                throw LicensingError(.malformed, "a licence time is out of range")
            }
            try self.init(
                id: id,
                model: model,
                versions: first...last,
                licensee: licensee,
                entitlements: entitlements,
                notBefore: Int64(notBefore),
                notAfter: Int64(notAfter),
                deliveryLimit: try r.u32("delivery limit")
            )
        } catch let error as WireError {
            throw LicensingError(.malformed, "not a licence: \(error.message)")
        } catch let error as CryptoError {
            throw LicensingError(.malformed, "not a licence: \(error.message)")
        }
    }

    /// Signs the licence with the broker's licence key.
    public func signed(by key: Ed25519.PrivateKey) throws -> SignedLicence {
        let bytes = encoded()
        return SignedLicence(
            licence: self,
            bytes: bytes + (try key.signature(for: bytes, domain: Self.signatureDomain))
        )
    }

    /// Refuses use at `now` (Unix seconds) outside the validity window, naming which side.
    public func checkValid(at now: Int64) throws {
        guard now >= notBefore else {
            throw LicensingError(.notLicensed, "licence \(idHex) is not valid until \(notBefore) (now \(now))")
        }
        guard now <= notAfter else {
            throw LicensingError(.notLicensed, "licence \(idHex) expired at \(notAfter) (now \(now))")
        }
    }
}

/// A licence with the broker's signature: its encoding followed by the 64-byte Ed25519
/// signature in the domain `cairn/licence/v1`.
public struct SignedLicence: Hashable, Sendable {
    /// The licence.
    public let licence: Licence
    /// The encoding and the signature, as sent.
    public let bytes: [UInt8]
    /// The largest signed licence: fixed fields, a 64-character model name and the signature.
    public static let maximumByteCount = 256

    fileprivate init(licence: Licence, bytes: [UInt8]) {
        self.licence = licence
        self.bytes = bytes
    }

    /// Decodes a signed licence and verifies its signature under the broker's licence key.
    public init(decoding bytes: [UInt8], brokerLicenceKey: Ed25519.PublicKey) throws {
        guard bytes.count <= Self.maximumByteCount else {
            throw LicensingError(
                .malformed,
                "a signed licence has at most \(Self.maximumByteCount) bytes, not \(bytes.count)"
            )
        }
        var r = ByteReader(bytes)
        let licence = try Licence(reading: &r)
        let signed = r.offset
        let signature: [UInt8]
        do {
            signature = try r.fixed(Ed25519.signatureByteCount, "licence signature")
            try r.finish()
        } catch {
            throw LicensingError(.malformed, "not a signed licence: \(error.message)")
        }
        guard
            brokerLicenceKey.isValidSignature(
                signature,
                for: Array(bytes[..<signed]),
                domain: Licence.signatureDomain
            )
        else {
            throw LicensingError(
                .badSignature,
                "the licence's signature does not verify under the broker's licence key"
            )
        }
        self.init(licence: licence, bytes: bytes)
    }

    /// The digest the audit log's `licence.issue` entry carries (`cairn/licence-digest/v1`).
    public func digest() throws -> [UInt8] { try BLAKE2b.hash(bytes, domain: Licence.digestDomain) }
}
