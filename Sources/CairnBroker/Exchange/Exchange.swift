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
import Synchronization

/// The broker's exchange: enrolment, access control, federations and the SecAgg+ rounds, with
/// every state change in SQLite (``BrokerStore``) and every decision in the audit log.
///
/// An actor: requests and the round clock are serialised through it, so each decision sees one
/// consistent state. The HTTP layer (``BrokerServer``) only decodes, calls and encodes. It runs on
/// a thread of its own (``ThreadExecutor``): its blocking SQLite work never holds a thread of
/// Swift's cooperative pool.
public actor Exchange {
    /// The thread the actor runs on.
    nonisolated let executor = ThreadExecutor(name: "cairn-exchange")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    deinit { executor.stop() }

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
        /// Refusals no key can be held to (401) and rate-limited ones, per source and second,
        /// answered at once; past it, each is answered after ``refusalDelay``.
        public var anonymousRefusalsPerSecond: Int = 100
        /// The wait before answering a refusal past ``anonymousRefusalsPerSecond``.
        public var refusalDelay: Duration = .milliseconds(100)
        /// Masked-input uploads decrypted at once; each holds a buffer of `4 · (D + 1)` bytes.
        public var concurrentUploads: Int = 2
        /// The TLS certificate served (PEM), if any: `GET /v1/broker` shows it and invite codes
        /// carry its fingerprint.
        public var certificate: String?
        /// The clock, Unix seconds (tests move it).
        public var now: @Sendable () -> Int64 = { unixTime() }

        /// Defaults.
        public init() {}
    }

    let store: BrokerStore
    /// The broker's data folder.
    let folder: String
    let log: AuditLog
    nonisolated let keys: Keys
    let origin: String
    let logger: Logger
    let settings: Settings
    /// The open round of each federation, in memory (restored from SQLite at start).
    var open: [String: OpenRound] = [:]
    /// Federation specs by id, decoded on first use.
    var specs: [String: FederationSpec] = [:]
    private var buckets: [[UInt8]: (tokens: Double, time: Int64)] = [:]
    /// Refusals counted this minute, by source and status (``countRefusal(source:status:)``).
    private let refusals = Mutex(RefusalCounts())

    /// Refusals no key can be held to: by source and status for the minute's summary, and by
    /// source in the current second for the slow-down.
    struct RefusalCounts {
        var minute: [String: [Int: Int]] = [:]
        var second: Int64 = 0
        var thisSecond: [String: Int] = [:]
    }
    private var refusalMinute: Int64 = 0
    /// Uploads streaming now, by federation and roster index: one at a time per participant.
    var uploading: Set<String> = []
    private var freeUploads: Int
    private var uploadQueue: [CheckedContinuation<Void, Never>] = []
    /// Upload buffers kept between the uploads of a mask phase (freed when it closes).
    var spareBuffers: [UploadBuffer] = []
    /// Counters for `/metrics`.
    public let metrics: ExchangeMetrics
    /// State-changing requests being answered now, by signer and request id (a retry that
    /// arrives meanwhile is asked to wait, ``begin(key:request:path:digest:)``).
    var answering: Set<String> = []
    /// The key stored answers are encrypted under (``Outcome``).
    let outcomeKey: SymmetricKey
    /// Every nonce seen since this process started, by key and nonce, with its signed time: a
    /// read's nonce is checked here only (no write to disk for a poll), a POST's also on disk.
    private var seenNonces: [[UInt8]: Int64] = [:]
    private var seenNoncesPruned: Int64 = 0

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
        self.folder = folder
        self.log = log
        self.keys = keys
        self.origin = origin
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        freeUploads = max(1, settings.concurrentUploads)
        outcomeKey = try BLAKE2b.deriveKey(
            from: keys.transport.rawRepresentation,
            domain: .storedOutcome,
            context: keys.identity.publicKey.rawRepresentation
        )
        let now = settings.now()
        let operatorKey = keys.operatorKey
        try store.write { db in
            try db.execute(
                sql: """
                    INSERT INTO members (key, role, federation, status, enrolled) VALUES (?, 'operator', '*', 'active', ?)
                    ON CONFLICT (key, federation) DO NOTHING
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
            version: CairnVersion.software,
            tlsCertificate: settings.certificate
        )
    }

    /// The number of entries in the audit log.
    public nonisolated var auditSize: Int { log.size }

    var brokerActor: String { "broker:" + keys.identity.publicKey.fingerprint }

    // MARK: Audit

    /// Appends one audit entry; a failure to audit fails the request (nothing unaudited happens).
    /// Free text (the object id and the reason) is made fit for an entry first: control
    /// characters become spaces and it is cut to whole characters within the entry's byte limits,
    /// so nothing a client sends can make an entry unwritable.
    @discardableResult
    func audit(
        actor: String,
        request: AuditEntry.SignedRequest? = nil,
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
                    actor: Self.fit(actor, 200),
                    action: action,
                    objectType: objectType,
                    objectID: Self.fit(objectID, 400),
                    outcome: outcome,
                    reason: Self.fit(reason, 900),
                    requestID: request.flatMap { Self.requestID(inTarget: $0.target) } ?? "",
                    digests: digests,
                    request: request
                )
            }
        } catch {
            logger.error("audit append failed", metadata: ["error": "\(error)"])
            throw ExchangeError(.internal, "the audit log refused an entry; nothing was changed")
        }
    }

    /// `text` with control characters as spaces, cut to at most `bytes` UTF-8 bytes of whole
    /// characters; never empty.
    static func fit(_ text: String, _ bytes: Int) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            let clean: Unicode.Scalar = scalar.value < 0x20 || scalar.value == 0x7F ? " " : scalar
            let size = String(clean).utf8.count
            guard count + size <= bytes else { break }
            out.unicodeScalars.append(clean)
            count += size
        }
        return out.isEmpty ? "-" : out
    }

    /// Records a refused request of a member (the HTTP layer calls it for every refusal it
    /// answers once the caller's signature, time and nonce checked out and its key is enrolled).
    public func auditRefusal(caller: Caller, method: String, path: String, error: ExchangeError) {
        metrics.refused.increment()
        _ = try? audit(
            actor: caller.name,
            request: caller.request,
            action: "request.refused",
            objectType: "endpoint",
            objectID: method + " " + path,
            outcome: .refused,
            reason: "\(error.status) \(error.code): \(error.message)"
        )
    }

    /// Counts a refusal that no key can be held to (no or a bad signature, an unknown key, a
    /// stale time, a replayed nonce; anyone can send these) or a rate-limited key's: one summary
    /// entry per source and minute (``flushRefusals(force:)``), not one entry each.
    /// Nonisolated: a flood of them never waits for, or holds up, the actor that serves members.
    /// Returns whether `source` has had more than ``Settings/anonymousRefusalsPerSecond`` such
    /// refusals this second: the HTTP layer then answers it only after
    /// ``Settings/refusalDelay``, which slows a flood to what its connections can wait for.
    public nonisolated func countRefusal(source: String, status: Int) -> Bool {
        metrics.refused.increment()
        let now = settings.now()
        return refusals.withLock { counts in
            let key =
                counts.minute.count < Self.maximumRefusalSources || counts.minute[source] != nil
                ? source : "other sources"
            counts.minute[key, default: [:]][status, default: 0] += 1
            if counts.second != now { (counts.second, counts.thisSecond) = (now, [:]) }
            counts.thisSecond[key, default: 0] += 1
            return counts.thisSecond[key]! > settings.anonymousRefusalsPerSecond
        }
    }

    /// Distinct sources summarised per minute; the rest share one summary.
    static let maximumRefusalSources = 256

    /// Writes the summaries of the minute that ended (or of the one in progress, with `force`):
    /// `request.refused` entries whose object is the source and whose reason counts each status.
    public func flushRefusals(force: Bool = false) {
        let minute = settings.now() / 60
        guard force || minute != refusalMinute else { return }
        let start = Date(timeIntervalSince1970: TimeInterval(refusalMinute * 60))
        refusalMinute = minute
        let counted = refusals.withLock { counts in
            defer { counts.minute = [:] }
            return counts.minute
        }
        for (source, statuses) in counted.sorted(by: { $0.key < $1.key }) {
            let total = statuses.values.reduce(0, +)
            let counts = statuses.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }.joined(separator: ", ")
            _ = try? audit(
                actor: "anonymous",
                action: "request.refused",
                objectType: "source",
                objectID: source,
                outcome: .refused,
                reason: "\(total) unauthenticated or rate-limited requests refused in the minute from "
                    + "\(start.formatted(.iso8601)): \(counts)"
            )
        }
        // Rate buckets that are full again hold nothing a new request would not recreate.
        let now = settings.now()
        buckets = buckets.filter { Double(now - $0.value.time) * settings.requestsPerSecond < settings.burst }
    }

    /// Whether the exchange answers and its database reads (`/healthz`).
    public func ready() -> Bool {
        (try? store.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }

    /// Signs a checkpoint over the log as it stands; returns its size (nil when signing failed,
    /// which is logged).
    @discardableResult
    public func checkpoint() -> Int? {
        do {
            let note = try log.signCheckpoint(origin: origin, signer: keys.checkpoint)
            return try Checkpoint(text: SignedNote.open(note, verifier: keys.checkpoint.verifier)).size
        } catch {
            logger.error("checkpoint signing failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    // MARK: Authentication

    /// The caller of a request: its key and its memberships (one per federation it joined).
    public struct Caller: Sendable {
        /// The key that signed.
        public let key: Ed25519.PublicKey
        /// Its memberships, the earliest first (empty for a key not yet enrolled).
        let memberships: [Member]
        /// The request as the caller signed it, which the entries it causes carry.
        public let request: AuditEntry.SignedRequest

        /// Whether the key is enrolled at all.
        var enrolled: Bool { !memberships.isEmpty }
        /// Whether the key is the operator's.
        var isOperator: Bool { memberships.contains { $0.role == .operator } }
        /// Its membership in `federation`.
        func membership(in federation: String) -> Member? { memberships.first { $0.federation == federation } }
        /// Whether it holds `role` in some federation.
        func holds(_ role: Role) -> Bool { memberships.contains { $0.role == role } }

        /// For audit entries: its roles (`participant`, or `licensee+participant` for a key with
        /// two roles in different federations; `key` before it enrolled) and its fingerprint.
        public var name: String {
            let roles = Set(memberships.map(\.role.rawValue)).sorted()
            return (roles.isEmpty ? "key" : roles.joined(separator: "+")) + ":" + key.fingerprint
        }
    }

    /// Checks a request's signature, time, nonce, key and standing, and the caller's rate:
    /// ``verify(method:target:signature:bodyDigest:)``, ``identify(verified:enrolling:)`` (a
    /// refusal up to here is not attributable to the key the headers name), then
    /// ``admit(_:)``. `enrolling` admits a key the broker does not know yet (only `POST /v1/enrol`).
    public func authenticate(
        method: String,
        target: String,
        signature: RequestSignature?,
        bodyDigest: [UInt8],
        enrolling: Bool = false
    ) throws -> Caller {
        try admit(
            try identify(
                verified: verify(method: method, target: target, signature: signature, bodyDigest: bodyDigest),
                enrolling: enrolling
            )
        )
    }

    /// Checks a request's signature and time. Nonisolated: it needs no state, so a flood of
    /// unsigned or badly signed requests is refused without entering the actor members wait on.
    public nonisolated func verify(
        method: String,
        target: String,
        signature: RequestSignature?,
        bodyDigest: [UInt8]
    ) throws -> AuditEntry.SignedRequest {
        // The request is kept in the entries it causes, which hold targets up to this length.
        guard target.utf8.count <= RequestSignature.maximumTargetByteCount else {
            throw ExchangeError(
                .malformed,
                "the request target is longer than \(RequestSignature.maximumTargetByteCount) bytes"
            )
        }
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
        return AuditEntry.SignedRequest(
            signature,
            method: method,
            target: target,
            bodyDigest: bodyDigest,
            broker: keys.identity.publicKey
        )
    }

    /// The key of a verified request (enrolled, unless `enrolling`) and its nonce (not seen).
    public func identify(verified request: AuditEntry.SignedRequest, enrolling: Bool = false) throws -> Caller {
        let now = settings.now()
        let key = request.key
        let signature = try Ed25519.PublicKey(rawRepresentation: key)
        let memberships = try store.read { db in try Member.fetchAll(db, key: key) }
        if memberships.isEmpty && !enrolling {
            throw ExchangeError(.unauthenticated, "key \(signature.fingerprint) is not enrolled at this broker")
        }
        // Nonces older than the window cannot come back: their time is refused.
        let expired = now - 2 * RequestSignature.maximumClockSkew - 1
        if now - seenNoncesPruned >= 10 {
            seenNonces = seenNonces.filter { $0.value >= expired }
            seenNoncesPruned = now
        }
        var fresh = seenNonces.updateValue(request.time, forKey: key + request.nonce) == nil
        // A state change's nonce is also kept on disk, so that it cannot be replayed after a
        // restart either; a read's is not: replayed after a restart, a read changes nothing and
        // tells whoever replays it no more than the answer it could see before (and polls, four a
        // second per node, cost no fsync).
        if fresh, request.method != "GET" {
            fresh = try store.write { db -> Bool in
                try db.execute(sql: "DELETE FROM nonces WHERE time < ?", arguments: [expired])
                try db.execute(
                    sql: "INSERT INTO nonces (key, nonce, time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    arguments: [Data(key), Data(request.nonce), request.time]
                )
                return db.changesCount == 1
            }
        }
        guard fresh else {
            throw ExchangeError(.unauthenticated, "this nonce was already used: the request is a replay")
        }
        return Caller(key: signature, memberships: memberships, request: request)
    }

    /// The second half: the caller's standing (a key suspended in every federation it joined is
    /// refused; a suspension in one federation is enforced by ``requireMember(_:of:role:)``) and
    /// its rate.
    public func admit(_ caller: Caller) throws -> Caller {
        if caller.enrolled, !caller.memberships.contains(where: { $0.status != "suspended" }) {
            throw ExchangeError(.forbidden, "key \(caller.key.fingerprint) is suspended")
        }
        try takeToken(caller.key.rawRepresentation, now: settings.now())
        return caller
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
        guard caller.isOperator else {
            throw ExchangeError(.forbidden, "only the operator may do this; \(caller.name) may not")
        }
    }

    /// The caller's membership of `federation` in `role`, in standing: a suspended membership is
    /// refused, and an inactive participant is active again (its node is back).
    func requireMember(_ caller: Caller, of federation: String, role: Role = .participant) throws -> Member {
        guard let member = caller.membership(in: federation), member.role == role else {
            throw ExchangeError(.forbidden, "\(caller.name) is not a \(role.rawValue) of federation \(federation)")
        }
        return try standing(caller, member)
    }

    /// `member` (one of the caller's memberships) if it is in standing: refused when suspended,
    /// made active again when it was inactive.
    func standing(_ caller: Caller, _ member: Member) throws -> Member {
        var member = member
        if member.status == "inactive" {
            try audit(
                actor: caller.name,
                request: caller.request,
                action: "member.active",
                objectType: "member",
                objectID: caller.key.fingerprint,
                reason: "back in federation \(member.federation) after missing rounds"
            )
            try store.write { db in
                try db.execute(
                    sql:
                        "UPDATE members SET status = 'active', missed = 0 WHERE key = ? AND federation = ? AND status = 'inactive'",
                    arguments: [Data(member.key), member.federation]
                )
            }
            member.status = "active"
        }
        guard member.status == "active" else {
            throw ExchangeError(
                .forbidden,
                "key \(caller.key.fingerprint) is suspended in federation \(member.federation)"
            )
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
    public func releaseUpload(_ ticket: UploadTicket) {
        uploading.remove(ticket.slotName)
        let buffer = ticket.buffer
        buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        if spareBuffers.count < settings.concurrentUploads, open.values.contains(where: { $0.phase == .mask }) {
            spareBuffers.append(buffer)
        }
        if uploadQueue.isEmpty { freeUploads += 1 } else { uploadQueue.removeFirst().resume() }
    }

    /// Whether `ticket`'s round is still taking masked inputs (its upload may go on).
    public func uploadIsOpen(_ ticket: UploadTicket) -> Bool {
        guard let round = open[ticket.federation] else { return false }
        return round.number == ticket.round && round.phase == .mask
    }
}
