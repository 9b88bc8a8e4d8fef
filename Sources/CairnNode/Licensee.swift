public import CairnAudit
public import CairnCrypto
public import CairnExchange
public import CairnLicensing
import CairnWire
import Foundation

/// The broker's delivery keys, each checked against the identity key pinned at enrolment.
public struct BrokerDeliveryKeys: Sendable {
    /// Signs licences, container headers and model versions.
    public let licence: Ed25519.PublicKey
    /// Verifies the audit log's checkpoints.
    public let checkpoint: NoteVerifier

    /// Takes both keys from `info` only if the broker's identity `broker` signed them.
    public init(_ info: BrokerInfo, broker: Ed25519.PublicKey) throws {
        guard let licenceBytes = try? Hex.decode(info.licenceKey),
            let licence = try? Ed25519.PublicKey(rawRepresentation: licenceBytes),
            let signature = try? Hex.decode(info.licenceKeySignature),
            broker.isValidSignature(signature, for: licenceBytes, domain: .brokerLicenceKey),
            let checkpoint = try? NoteVerifier(encoded: info.checkpointKey),
            let checkpointSignature = try? Hex.decode(info.checkpointKeySignature),
            broker.isValidSignature(
                checkpointSignature,
                for: Array(info.checkpointKey.utf8),
                domain: .brokerCheckpointKey
            )
        else {
            throw ExchangeError(
                .forbidden,
                "the broker's licence or checkpoint key carries no valid signature from its identity"
            )
        }
        self.licence = licence
        self.checkpoint = checkpoint
    }

    /// The licence in `record`, checked: the broker's signature, this node as licensee, and its
    /// `licence.issue` entry in the audit log (the entry carries the licence's digest, and the
    /// inclusion proof leads to a checkpoint signed by the checkpoint key). Refuses a licence that
    /// is not granted or not in the log.
    public func verifiedLicence(_ record: LicenceRecord, for node: Ed25519.PublicKey) throws -> SignedLicence {
        guard record.status == "granted" else {
            throw LicensingError(.notLicensed, "licence \(record.id) is \(record.status), not granted")
        }
        guard let bytes = try? Hex.decode(record.licence) else {
            throw LicensingError(.malformed, "the broker sent no licence for \(record.id)")
        }
        let signed = try SignedLicence(decoding: bytes, brokerLicenceKey: licence)
        guard signed.licence.licensee == node else {
            throw LicensingError(
                .notLicensed,
                "licence \(record.id) names \(signed.licence.licensee.fingerprint), not this node"
            )
        }
        guard let proof = record.proof else {
            throw LicensingError(.notLicensed, "licence \(record.id) came without its audit-log proof")
        }
        do {
            let checkpoint = try Checkpoint(text: try SignedNote.open(proof.checkpoint, verifier: self.checkpoint))
            let entryBytes = try Hex.decode(proof.entry)
            let entry = try AuditEntry(decoding: entryBytes)
            let hashes = try proof.hashes.map { h -> MerkleHash in
                guard let hash = MerkleHash(try Hex.decode(h)) else {
                    throw LicensingError(.malformed, "bad proof hash")
                }
                return hash
            }
            guard entry.action == "licence.issue", entry.objectID == signed.licence.idHex,
                entry.sequence == UInt64(proof.index),
                entry.digests.contains(where: { $0.name == "licence" && $0.bytes == (try? signed.digest()) })
            else { throw LicensingError(.notLicensed, "the audit entry sent is not this licence's issue entry") }
            guard
                RFC6962.verifyInclusion(
                    leaf: RFC6962.leafHash(entryBytes),
                    index: proof.index,
                    size: checkpoint.size,
                    proof: hashes,
                    root: checkpoint.root
                )
            else { throw LicensingError(.notLicensed, "the inclusion proof does not lead to the signed checkpoint") }
        } catch let error as LicensingError {
            throw LicensingError(.notLicensed, "licence \(record.id) is not in the audit log: \(error.message)")
        } catch {
            throw LicensingError(.notLicensed, "licence \(record.id) is not in the audit log: \(error)")
        }
        return signed
    }
}

/// A node as a licensee: browses its federation's listing, asks for licences and fetches
/// licensed models, checking every signature, the licence's audit proof and the container.
public struct Licensee: Sendable {
    let client: BrokerClient
    let identity: NodeIdentity
    /// The federation (the model's name).
    public let federation: String
    /// The broker's licence and checkpoint keys.
    public let keys: BrokerDeliveryKeys

    /// Connects with the enrolment in `home` that `federation` names (its only one when nil), as
    /// a participant or a licensee.
    public static func connect(
        home: String,
        federation: String? = nil,
        identity: NodeIdentity
    ) async throws
        -> Licensee
    {
        let enrolment = try Enrolment.select(home: home, federation: federation).enrolment
        let broker = try enrolment.brokerIdentity
        let (client, info) = try await withRetries { try await enrolment.connect(identity: identity.identity) }
        return Licensee(
            client: client,
            identity: identity,
            federation: enrolment.federation,
            keys: try BrokerDeliveryKeys(info, broker: broker)
        )
    }

    /// The listing, with every version's signature checked.
    public func listing() async throws -> Listing {
        let listing: Listing = try await client.json("GET", "/v1/federations/\(federation)/listing")
        for version in listing.versions where !version.isSigned(by: keys.licence) || version.model != federation {
            throw ExchangeError(
                .transport,
                "version \(version.version) of \(federation) does not carry the broker's signature"
            )
        }
        return listing
    }

    /// Asks for a licence to the listing.
    public func request(entitlements: [String]) async throws -> LicenceRecord {
        try await client.json(
            "POST",
            "/v1/federations/\(federation)/licences",
            LicenceRequest(entitlements: entitlements)
        )
    }

    /// This node's licences and requests, newest first (without their proofs).
    public func licences() async throws -> [LicenceRecord] {
        try await client.json("GET", "/v1/licences")
    }

    /// A licence's record as the broker keeps it.
    public func record(_ id: String) async throws -> LicenceRecord {
        try await client.json("GET", "/v1/licences/\(id)")
    }

    /// Fetches `version` (the newest the licence covers when nil) under licence `id` and returns
    /// the model file's bytes, released only after the licence (signature, licensee, window,
    /// audit-log proof), the container (signature, every chunk, final tag) and the payload's
    /// digest against the signed registry entry all check out.
    public func fetch(
        licence id: String,
        version: Int? = nil,
        now: Int64 = unixTime()
    ) async throws
        -> (version: ModelVersion, licence: SignedLicence, file: [UInt8])
    {
        let signed = try keys.verifiedLicence(try await record(id), for: identity.identity.publicKey)
        try signed.licence.checkValid(at: now)
        let listing = try await listing()
        let wanted =
            version ?? listing.versions.map(\.version).filter { signed.licence.versions.contains(UInt32($0)) }.max()
        guard let wanted, let entry = listing.versions.first(where: { $0.version == wanted }) else {
            throw LicensingError(
                .notLicensed,
                "licence \(id) covers no published version\(version.map { " \($0)" } ?? "")"
            )
        }
        let reply = try await client.send("GET", "/v1/licences/\(id)/versions/\(wanted)/container")
        let (header, payload) = try Container.open(
            reply.body,
            licence: signed,
            identity: identity.identity.publicKey,
            deliveryKey: identity.delivery,
            brokerLicenceKey: keys.licence,
            now: now
        )
        guard Hex.encode(header.plaintextDigest) == entry.fileDigest,
            Hex.encode(try Container.plaintextDigest(payload)) == entry.fileDigest
        else {
            throw LicensingError(.tampered, "the model in the container is not the registry's version \(wanted)")
        }
        return (entry, signed, payload)
    }
}
