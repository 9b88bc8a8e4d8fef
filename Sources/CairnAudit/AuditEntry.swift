public import CairnCrypto
public import CairnExchange
import CairnWire
import Glibc

/// One entry of the audit log, and its canonical bytes (the Merkle leaf is
/// ``RFC6962/leafHash(_:)`` of ``encoded()``).
///
/// An entry holds pseudonymous ids and digests only, never personal data: names and contact
/// addresses live in a separate, erasable table, so erasing them never changes an entry.
public struct AuditEntry: Hashable, Sendable {
    /// What came of the action.
    public enum Outcome: UInt8, Sendable, CaseIterable {
        /// It was done.
        case succeeded = 0
        /// It was refused (authentication, authorisation, validation, rate limit).
        case refused = 1
        /// It failed on the broker's side.
        case failed = 2

        /// `succeeded`, `refused` or `failed`, as exports and reports write it.
        public var name: String {
            switch self {
            case .succeeded: "succeeded"
            case .refused: "refused"
            case .failed: "failed"
            }
        }
    }

    /// The encoding version of an entry without a signed request, 1.
    public static let schemaVersion: UInt16 = 1
    /// The encoding version of an entry that carries the signed request that caused it, 2.
    public static let signedSchemaVersion: UInt16 = 2

    /// Every action Cairn records (`Protocol/README.md`, "Audit actions"), in that table's order.
    public static let actions = [
        "broker.init", "person.record", "person.erase", "audit.export", "federation.create", "invite.issue",
        "member.enrol", "member.suspend", "member.resume", "member.inactive", "member.active", "training.start",
        "training.stop",
        "round.open", "round.advertise", "round.share", "round.mask", "round.check", "round.unmask", "round.phase",
        "round.aggregate", "model.update", "round.abort", "round.resume", "request.refused", "model.evaluate",
        "model.publish", "licence.request", "licence.issue", "licence.refuse", "licence.revoke", "licence.use",
        "model.deliver",
    ]
    /// The longest text field accepted: 1 KiB.
    public static let maximumTextBytes = 1024
    /// The most payload digests per entry: 16.
    public static let maximumDigests = 16

    /// The entry's position in the log, from 0.
    public var sequence: UInt64
    /// When it was appended: RFC 3339, UTC, whole seconds (`2026-11-24T03:25:00Z`).
    public var time: String
    /// Who acted: a pseudonymous id (a key fingerprint, `broker`, `operator:…`).
    public var actor: String
    /// What was done, as a label such as `participant.enrol` or `round.unmask`.
    public var action: String
    /// The kind of object acted on (`federation`, `round`, `licence`, …).
    public var objectType: String
    /// Its id.
    public var objectID: String
    /// What came of it.
    public var outcome: Outcome
    /// Why (for refusals and failures; may be empty). Never personal data.
    public var reason: String
    /// The request that caused it (may be empty).
    public var requestID: String
    /// Named SHA-256 or BLAKE2b-256 digests of payloads (32 bytes each), in a fixed order.
    public var digests: [Digest]
    /// The signed request that caused the entry, when a member's (or the operator's) request
    /// did: what the actor signed and the signature, so anyone can check offline that the actor
    /// named asked for it.
    public var request: SignedRequest?

    /// A request as its sender signed it (`Protocol/README.md`, "Signed requests"): the fields of
    /// the signed message, the signer's key and the signature.
    public struct SignedRequest: Hashable, Sendable {
        /// The HTTP method, e.g. `POST`.
        public var method: String
        /// The request target (path and query).
        public var target: String
        /// The signer's Ed25519 public key (32 bytes); its fingerprint is the actor's.
        public var key: [UInt8]
        /// The broker identity key the request was signed for (32 bytes).
        public var broker: [UInt8]
        /// The request body's digest (32 bytes).
        public var bodyDigest: [UInt8]
        /// The signed Unix time.
        public var time: Int64
        /// The nonce (16 bytes).
        public var nonce: [UInt8]
        /// The Ed25519 signature (64 bytes).
        public var signature: [UInt8]

        /// A signed request; ``isValid`` checks it.
        public init(
            method: String,
            target: String,
            key: [UInt8],
            broker: [UInt8],
            bodyDigest: [UInt8],
            time: Int64,
            nonce: [UInt8],
            signature: [UInt8]
        ) {
            self.method = method
            self.target = target
            self.key = key
            self.broker = broker
            self.bodyDigest = bodyDigest
            self.time = time
            self.nonce = nonce
            self.signature = signature
        }

        /// A request the broker verified.
        public init(
            _ signature: RequestSignature,
            method: String,
            target: String,
            bodyDigest: [UInt8],
            broker: Ed25519.PublicKey
        ) {
            self.init(
                method: method,
                target: target,
                key: signature.key.rawRepresentation,
                broker: broker.rawRepresentation,
                bodyDigest: bodyDigest,
                time: signature.time,
                nonce: signature.nonce,
                signature: signature.signature
            )
        }

        /// The signer's key fingerprint (`ed25519:…`), or nil when the key is not a valid key.
        public var fingerprint: String? { (try? Ed25519.PublicKey(rawRepresentation: key))?.fingerprint }

        /// Whether the signature holds for these fields under ``key``.
        public var isValid: Bool {
            guard let signer = try? Ed25519.PublicKey(rawRepresentation: key),
                let brokerKey = try? Ed25519.PublicKey(rawRepresentation: broker)
            else { return false }
            return RequestSignature(key: signer, time: time, nonce: nonce, signature: signature)
                .isValid(method: method, target: target, bodyDigest: bodyDigest, broker: brokerKey)
        }

        func check() -> Bool {
            !method.isEmpty && method.utf8.count <= 255 && !target.isEmpty
                && target.utf8.count <= RequestSignature.maximumTargetByteCount
                && !(method + target).unicodeScalars.contains(where: { $0.value < 0x20 }) && key.count == 32
                && broker.count == 32 && bodyDigest.count == 32 && nonce.count == RequestSignature.nonceByteCount
                && signature.count == Ed25519.signatureByteCount && time >= 0
        }
    }

    /// The role and key fingerprint an actor id names (`participant:ed25519:…` → `participant`,
    /// `ed25519:…`), or nil for an actor that is not a key (`operator`, `anonymous`).
    public static func keyActor(_ actor: String) -> (role: String, fingerprint: String)? {
        guard let colon = actor.firstIndex(of: ":") else { return nil }
        let rest = actor[actor.index(after: colon)...]
        return rest.hasPrefix("ed25519:") ? (String(actor[..<colon]), String(rest)) : nil
    }

    /// The fingerprint of the key the actor names, when a request of that key could have caused
    /// the entry (not `broker:…`, the broker's own key, which signs no requests), else nil.
    public var actorFingerprint: String? {
        Self.keyActor(actor).flatMap { $0.role == "broker" ? nil : $0.fingerprint }
    }

    /// A named 32-byte digest of a payload.
    public struct Digest: Hashable, Sendable {
        /// What was hashed, as a label (`model.parameters`, `licence.document`).
        public var name: String
        /// The digest.
        public var bytes: [UInt8]

        /// A digest; `bytes` must be 32 bytes (checked on encoding).
        public init(name: String, bytes: [UInt8]) {
            self.name = name
            self.bytes = bytes
        }
    }

    /// An entry; ``encoded()`` checks the fields.
    public init(
        sequence: UInt64,
        time: String,
        actor: String,
        action: String,
        objectType: String,
        objectID: String,
        outcome: Outcome,
        reason: String = "",
        requestID: String = "",
        digests: [Digest] = [],
        request: SignedRequest? = nil
    ) {
        self.sequence = sequence
        self.time = time
        self.actor = actor
        self.action = action
        self.objectType = objectType
        self.objectID = objectID
        self.outcome = outcome
        self.reason = reason
        self.requestID = requestID
        self.digests = digests
        self.request = request
    }

    /// The canonical bytes (`Protocol/README.md`, "Audit entries").
    public func encoded() throws -> [UInt8] {
        try check()
        var w = ByteWriter()
        w.u16(request == nil ? Self.schemaVersion : Self.signedSchemaVersion)
        w.u64(sequence)
        w.string(time)
        w.string(actor)
        w.label(action)
        w.label(objectType)
        w.string(objectID)
        w.u8(outcome.rawValue)
        w.string(reason)
        w.string(requestID)
        w.u32(UInt32(digests.count))
        for d in digests {
            w.label(d.name)
            w.raw(d.bytes)
        }
        if let r = request {
            w.string(r.method)
            w.string(r.target)
            for bytes in [r.key, r.broker, r.bodyDigest] { w.raw(bytes) }
            w.u64(UInt64(r.time))
            w.raw(r.nonce)
            w.raw(r.signature)
        }
        return w.bytes
    }

    /// Decodes canonical bytes, refusing anything ``encoded()`` would not produce.
    public init(decoding bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        do {
            let version = try r.u16("schema version")
            guard version == Self.schemaVersion || version == Self.signedSchemaVersion else {
                throw AuditError(
                    .malformed,
                    "audit entry schema version \(version); this reader knows \(Self.schemaVersion) and \(Self.signedSchemaVersion)"
                )
            }
            let sequence = try r.u64("sequence")
            let time = try r.string("time", maximum: Self.maximumTextBytes)
            let actor = try r.string("actor", maximum: Self.maximumTextBytes)
            let action = try r.label("action")
            let objectType = try r.label("object type")
            let objectID = try r.string("object id", maximum: Self.maximumTextBytes)
            guard let outcome = Outcome(rawValue: try r.u8("outcome")) else {
                throw AuditError(.malformed, "an audit entry has an unknown outcome")
            }
            let reason = try r.string("reason", maximum: Self.maximumTextBytes)
            let requestID = try r.string("request id", maximum: Self.maximumTextBytes)
            let count = try r.u32("digest count")
            guard count <= Self.maximumDigests else {
                throw AuditError(.malformed, "an audit entry has \(count) digests")
            }
            var digests: [Digest] = []
            for _ in 0..<count {
                let name = try r.label("digest name")
                digests.append(Digest(name: name, bytes: try r.fixed(32, "digest")))
            }
            var request: SignedRequest?
            if version == Self.signedSchemaVersion {
                let method = try r.string("method", maximum: 255)
                let target = try r.string("target", maximum: RequestSignature.maximumTargetByteCount)
                let key = try r.fixed(32, "key")
                let broker = try r.fixed(32, "broker key")
                let bodyDigest = try r.fixed(32, "body digest")
                let time = try r.u64("request time")
                guard time <= UInt64(Int64.max) else { throw AuditError(.malformed, "a request time is too large") }
                request = SignedRequest(
                    method: method,
                    target: target,
                    key: key,
                    broker: broker,
                    bodyDigest: bodyDigest,
                    time: Int64(time),
                    nonce: try r.fixed(RequestSignature.nonceByteCount, "nonce"),
                    signature: try r.fixed(Ed25519.signatureByteCount, "signature")
                )
            }
            try r.finish()
            self.init(
                sequence: sequence,
                time: time,
                actor: actor,
                action: action,
                objectType: objectType,
                objectID: objectID,
                outcome: outcome,
                reason: reason,
                requestID: requestID,
                digests: digests,
                request: request
            )
        } catch let error as WireError {
            throw AuditError(.malformed, "not an audit entry: \(error.message)")
        }
        try check()
    }

    private func check() throws {
        func fail(_ why: String) -> AuditError { AuditError(.malformed, "audit entry \(sequence): \(why)") }
        guard Self.isCanonicalTime(time) else { throw fail("the time is not RFC 3339 UTC in whole seconds") }
        for (name, text) in [("actor", actor), ("object id", objectID), ("reason", reason), ("request id", requestID)] {
            guard text.utf8.count <= Self.maximumTextBytes, !text.unicodeScalars.contains(where: { $0.value < 0x20 })
            else {
                throw fail("the \(name) is too long or holds control characters")
            }
        }
        guard !actor.isEmpty, !objectID.isEmpty else { throw fail("the actor and object id must not be empty") }
        for label in [action, objectType] + digests.map(\.name) {
            guard !label.isEmpty, label.utf8.count <= 64,
                label.utf8.allSatisfy({
                    ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 46 || $0 == 45 || $0 == 95
                })
            else { throw fail("'\(label)' is not a label (a–z, 0–9, '.', '-', '_'; 1–64 bytes)") }
        }
        guard digests.count <= Self.maximumDigests, digests.allSatisfy({ $0.bytes.count == 32 }) else {
            throw fail("at most \(Self.maximumDigests) digests of 32 bytes each")
        }
        if let request, !request.check() {
            throw fail(
                "the signed request has a field of the wrong size, an empty or too long method or target, or a control character"
            )
        }
    }

    /// A succeeded action on a person's record (`person.record`, `person.erase`).
    init(personAction action: String, id: String, sequence: UInt64, time: String, actor: String) {
        self.init(
            sequence: sequence,
            time: time,
            actor: actor,
            action: action,
            objectType: "person",
            objectID: id,
            outcome: .succeeded
        )
    }

    /// The canonical time of `seconds` since the Unix epoch (UTC, whole seconds).
    public static func time(secondsSinceEpoch seconds: Int) -> String {
        // Civil-from-days (H. Hinnant's algorithm), so no locale or time zone can change the text.
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = seconds - days * 86400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let y = String(year)
        return String(repeating: "0", count: max(0, 4 - y.count)) + y + "-\(two(month))-\(two(day))T"
            + "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))Z"
    }

    /// The canonical time now.
    public static func now() -> String { time(secondsSinceEpoch: Int(Glibc.time(nil))) }

    /// `YYYY-MM-DDTHH:MM:SSZ` with a valid calendar date and time (leap seconds refused).
    static func isCanonicalTime(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 20, b[4] == 45, b[7] == 45, b[10] == 84, b[13] == 58, b[16] == 58, b[19] == 90 else {
            return false
        }
        func number(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return (1...12).contains(month) && day >= 1 && day <= days[month - 1] && hour < 24 && minute < 60 && second < 60
    }
}
