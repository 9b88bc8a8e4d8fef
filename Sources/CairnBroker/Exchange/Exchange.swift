public import CairnAudit
public import CairnCrypto
public import CairnExchange
import CairnModels
import CairnSecAgg
public import CairnWire
import CoreMetrics
import Foundation
import GRDB
public import Logging

/// The broker's exchange: enrolment, access control, federations and the SecAgg+ rounds, with
/// every state change in SQLite (``BrokerStore``) and every decision in the audit log.
///
/// An actor: requests and the round clock are serialised through it, so each decision sees one
/// consistent state. The HTTP layer (``BrokerServer``) only decodes, calls and encodes.
public actor Exchange {
    /// The keys the exchange works with.
    public struct Keys: Sendable {
        /// Signs nothing here; requests are bound to it.
        public let identity: Ed25519.PrivateKey
        /// Masked inputs are encrypted to it.
        public let transport: X25519.PrivateKey
        /// Signs audit checkpoints.
        public let checkpoint: NoteSigner
        /// Signs licences, container headers and model versions.
        public let licence: Ed25519.PrivateKey
        /// The operator's public key, enrolled with role `operator`.
        public let operatorKey: Ed25519.PublicKey

        /// The keys.
        public init(
            identity: Ed25519.PrivateKey,
            transport: X25519.PrivateKey,
            checkpoint: NoteSigner,
            licence: Ed25519.PrivateKey,
            operatorKey: Ed25519.PublicKey
        ) {
            self.identity = identity
            self.transport = transport
            self.checkpoint = checkpoint
            self.licence = licence
            self.operatorKey = operatorKey
        }
    }

    /// Limits and clocks.
    public struct Settings: Sendable {
        /// Requests per second allowed per identity (sustained).
        public var requestsPerSecond: Double = 50
        /// Burst size per identity.
        public var burst: Double = 200
        /// Masked-input uploads decrypted at once; each holds a buffer of `4 · (D + 1)` bytes.
        public var concurrentUploads: Int = 2
        /// The clock, Unix seconds (tests move it).
        public var now: @Sendable () -> Int64 = { unixTime() }

        /// Defaults.
        public init() {}
    }

    let store: BrokerStore
    let log: AuditLog
    let keys: Keys
    let origin: String
    let logger: Logger
    let settings: Settings
    /// The open round of each federation, in memory (restored from SQLite at start).
    var open: [String: OpenRound] = [:]
    /// Federation specs by id, decoded on first use.
    var specs: [String: FederationSpec] = [:]
    private var buckets: [[UInt8]: (tokens: Double, time: Int64)] = [:]
    private var freeUploads: Int
    private var uploadQueue: [CheckedContinuation<Void, Never>] = []
    /// Upload buffers kept between the uploads of a mask phase (freed when it closes).
    var spareBuffers: [UploadBuffer] = []
    /// Counters for `/metrics`.
    public let metrics: ExchangeMetrics

    /// Opens the exchange over `broker.sqlite` in `folder`, enrols the operator key and resumes
    /// every open round (each open phase gets its full deadline again).
    public init(
        folder: String,
        log: AuditLog,
        keys: Keys,
        origin: String,
        settings: Settings = Settings(),
        metrics: ExchangeMetrics,
        logger: Logger
    ) throws {
        store = try BrokerStore(path: folder + "/broker.sqlite")
        self.log = log
        self.keys = keys
        self.origin = origin
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        freeUploads = max(1, settings.concurrentUploads)
        let now = settings.now()
        let operatorKey = keys.operatorKey
        try store.write { db in
            try db.execute(
                sql: """
                    INSERT INTO members (key, role, federation, status, enrolled) VALUES (?, 'operator', '*', 'active', ?)
                    ON CONFLICT (key) DO NOTHING
                    """,
                arguments: [Data(operatorKey.rawRepresentation), now]
            )
        }
        open = try Self.restore(
            store: store,
            log: log,
            actor: "broker:" + keys.identity.publicKey.fingerprint,
            now: now
        )
    }

    /// What `GET /v1/broker` answers.
    public func info() throws -> BrokerInfo {
        BrokerInfo(
            origin: origin,
            identityKey: Hex.encode(keys.identity.publicKey.rawRepresentation),
            transportKey: Hex.encode(keys.transport.publicKey.rawRepresentation),
            transportSignature: Hex.encode(
                try keys.identity.signature(
                    for: keys.transport.publicKey.rawRepresentation,
                    domain: .brokerTransportKey
                )
            ),
            licenceKey: Hex.encode(keys.licence.publicKey.rawRepresentation),
            licenceKeySignature: Hex.encode(
                try keys.identity.signature(for: keys.licence.publicKey.rawRepresentation, domain: .brokerLicenceKey)
            ),
            checkpointKey: keys.checkpoint.verifier.encoded,
            checkpointKeySignature: Hex.encode(
                try keys.identity.signature(
                    for: Array(keys.checkpoint.verifier.encoded.utf8),
                    domain: .brokerCheckpointKey
                )
            ),
            version: CairnVersion.software
        )
    }

    var brokerActor: String { "broker:" + keys.identity.publicKey.fingerprint }

    // MARK: Audit

    /// Appends one audit entry; a failure to audit fails the request (nothing unaudited happens).
    @discardableResult
    func audit(
        actor: String,
        action: String,
        objectType: String,
        objectID: String,
        outcome: AuditEntry.Outcome = .succeeded,
        reason: String = "",
        digests: [AuditEntry.Digest] = []
    ) throws -> AuditEntry {
        do {
            return try log.append {
                AuditEntry(
                    sequence: $0,
                    time: AuditEntry.now(),
                    actor: String(actor.prefix(AuditEntry.maximumTextBytes)),
                    action: action,
                    objectType: objectType,
                    objectID: String(objectID.prefix(200)),
                    outcome: outcome,
                    reason: String(reason.prefix(900)),
                    digests: digests
                )
            }
        } catch {
            logger.error("audit append failed", metadata: ["error": "\(error)"])
            throw ExchangeError(.internal, "the audit log refused an entry; nothing was changed")
        }
    }

    /// Records a refused request (the HTTP layer calls it for every refusal it answers).
    public func auditRefusal(caller: String, method: String, path: String, error: ExchangeError) {
        metrics.refused.increment()
        _ = try? audit(
            actor: caller,
            action: "request.refused",
            objectType: "endpoint",
            objectID: method + " " + path,
            outcome: .refused,
            reason: "\(error.status) \(error.code): \(error.message)"
        )
    }

    /// Signs a checkpoint over the log as it stands.
    public func checkpoint() {
        do { _ = try log.signCheckpoint(origin: origin, signer: keys.checkpoint) } catch {
            logger.error("checkpoint signing failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Authentication

    /// The caller of a request: its key and, when enrolled, its membership.
    public struct Caller: Sendable {
        /// The key that signed.
        public let key: Ed25519.PublicKey
        /// Its membership (nil for a key not yet enrolled).
        let member: Member?

        /// For audit entries.
        public var name: String { (member?.role.rawValue ?? "key") + ":" + key.fingerprint }
    }

    /// Checks a request's signature, time, nonce, key and standing, and the caller's rate.
    /// `enrolling` admits a key the broker does not know yet (only `POST /v1/enrol`).
    public func authenticate(
        method: String,
        target: String,
        signature: RequestSignature?,
        bodyDigest: [UInt8],
        enrolling: Bool = false
    ) throws -> Caller {
        guard let signature else {
            throw ExchangeError(
                .unauthenticated,
                "this endpoint takes signed requests only (headers Cairn-Key, Cairn-Time, Cairn-Nonce, Cairn-Signature)"
            )
        }
        let now = settings.now()
        guard abs(signature.time - now) <= RequestSignature.maximumClockSkew else {
            throw ExchangeError(
                .unauthenticated,
                "the request time is \(signature.time - now) s from the broker's clock; at most ±\(RequestSignature.maximumClockSkew) s is accepted (stale or replayed request, or a wrong clock)"
            )
        }
        guard
            signature.isValid(
                method: method,
                target: target,
                bodyDigest: bodyDigest,
                broker: keys.identity.publicKey
            )
        else {
            throw ExchangeError(
                .unauthenticated,
                "the request signature does not verify for this method, path and body"
            )
        }
        let key = signature.key.rawRepresentation
        let member = try store.read { db in try Member.fetch(db, key: key) }
        if member == nil && !enrolling {
            throw ExchangeError(.unauthenticated, "key \(signature.key.fingerprint) is not enrolled at this broker")
        }
        if let member, member.status != "active" {
            throw ExchangeError(.forbidden, "key \(signature.key.fingerprint) is suspended")
        }
        try takeToken(key, now: now)
        let fresh = try store.write { db -> Bool in
            try db.execute(
                sql: "DELETE FROM nonces WHERE time < ?",
                arguments: [now - 2 * RequestSignature.maximumClockSkew - 1]
            )
            try db.execute(
                sql: "INSERT INTO nonces (key, nonce, time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                arguments: [Data(key), Data(signature.nonce), signature.time]
            )
            return db.changesCount == 1
        }
        guard fresh else {
            throw ExchangeError(.unauthenticated, "this nonce was already used: the request is a replay")
        }
        return Caller(key: signature.key, member: member)
    }

    private func takeToken(_ key: [UInt8], now: Int64) throws {
        var bucket = buckets[key] ?? (settings.burst, now)
        bucket.tokens = min(settings.burst, bucket.tokens + Double(now - bucket.time) * settings.requestsPerSecond)
        bucket.time = now
        guard bucket.tokens >= 1 else {
            buckets[key] = bucket
            throw ExchangeError(.rateLimited, "too many requests from this key; retry in a second")
        }
        bucket.tokens -= 1
        buckets[key] = bucket
    }

    // MARK: Authorisation

    func requireOperator(_ caller: Caller) throws {
        guard caller.member?.role == .operator else {
            throw ExchangeError(.forbidden, "only the operator may do this; \(caller.name) may not")
        }
    }

    func requireMember(_ caller: Caller, of federation: String, role: Role = .participant) throws -> Member {
        guard let member = caller.member, member.role == role, member.federation == federation else {
            throw ExchangeError(.forbidden, "\(caller.name) is not a \(role.rawValue) of federation \(federation)")
        }
        return member
    }

    // MARK: Upload slots

    /// Waits for a free upload slot (at most ``Settings/concurrentUploads`` at once) and returns
    /// its buffer of `byteCount` bytes, reused from an earlier upload of the same size when there
    /// is one (a fresh 4 MB allocation per upload costs page faults and zeroing every time).
    func acquireUpload(byteCount: Int) async -> UploadBuffer {
        if freeUploads > 0 {
            freeUploads -= 1
        } else {
            await withCheckedContinuation { uploadQueue.append($0) }
        }
        if let i = spareBuffers.firstIndex(where: { $0.bytes.count == byteCount }) {
            return spareBuffers.remove(at: i)
        }
        return UploadBuffer(byteCount: byteCount)
    }

    /// Returns an upload slot taken by ``beginUpload(_:federation:round:)`` and zeroes its buffer,
    /// which is kept for the next upload while some round is masking, and freed otherwise.
    public func releaseUpload(_ buffer: UploadBuffer) {
        buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        if spareBuffers.count < settings.concurrentUploads, open.values.contains(where: { $0.phase == .mask }) {
            spareBuffers.append(buffer)
        }
        if uploadQueue.isEmpty { freeUploads += 1 } else { uploadQueue.removeFirst().resume() }
    }
}
