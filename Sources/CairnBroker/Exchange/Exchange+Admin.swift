import CairnAudit
import CairnCrypto
public import CairnExchange
import CairnModels
import CairnSIMD
import CairnSecAgg
import CairnWire
import Foundation
import GRDB
import Logging

extension Exchange {
    /// `POST /v1/admin/federations`.
    public func createFederation(_ caller: Caller, _ spec: FederationSpec) throws {
        try requireOperator(caller)
        try Self.check(spec)
        let model = try FederatedModel.initialModel(of: spec)
        let digest = try FederatedModel.digest(
            model,
            standardisation: FederatedModel.standardisation(of: spec, pooled: nil),
            control: FederatedModel.usesControlVariates(spec)
                ? [Float](repeating: 0, count: model.parameters.count) : nil,
            of: spec
        )
        let json = try Self.json(spec)
        let now = settings.now()
        let exists = try store.read { db in
            try Row.fetchOne(db, sql: "SELECT 1 FROM federations WHERE id = ?", arguments: [spec.id]) != nil
        }
        guard !exists else { throw ExchangeError(.conflict, "federation \(spec.id) already exists") }
        // The log first, as for every state change: a crash between the two leaves an entry
        // whose change the operator's retry makes (the entry repeats), never a change without one.
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "federation.create",
            objectType: "federation",
            objectID: spec.id,
            digests: [
                .init(name: "spec", bytes: try BLAKE2b.hash(Array(json.utf8), domain: .requestBody)),
                .init(name: "model", bytes: digest),
            ]
        )
        try store.write { db in
            try db.execute(
                sql: "INSERT INTO federations (id, spec, state, rounds_left, created) VALUES (?, ?, 'idle', 0, ?)",
                arguments: [spec.id, json, now]
            )
            try Self.storeModel(
                db,
                federation: spec.id,
                round: 0,
                digest: digest,
                parameters: model.parameters,
                contributors: 0
            )
        }
    }

    static func check(_ spec: FederationSpec) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
        guard (1...64).contains(spec.id.count), spec.id.allSatisfy({ allowed.contains($0) }) else {
            throw ExchangeError(.malformed, "a federation id has 1–64 characters of a-z 0-9 - _ .")
        }
        guard spec.description.utf8.count <= 1000 else {
            throw ExchangeError(.malformed, "the description exceeds 1000 bytes")
        }
        do { try spec.schema.validate() } catch { throw ExchangeError(.malformed, "the schema: \(error)") }
        do { _ = try FederatedModel.architecture(of: spec) } catch {
            throw ExchangeError(.malformed, "the model: \(error)")
        }
        let p = spec.policy
        guard (3...10_000).contains(p.minimumParticipants) else {
            throw ExchangeError(.malformed, "minimumParticipants must be 3 to 10000 (SecAgg+ needs three)")
        }
        guard (0..<0.5).contains(p.dropoutFraction), (0..<0.5).contains(p.corruptFraction) else {
            throw ExchangeError(.malformed, "dropoutFraction and corruptFraction must be in [0, 0.5)")
        }
        guard p.deadlines.all.allSatisfy({ (1...86_400).contains($0) }) else {
            throw ExchangeError(.malformed, "every phase deadline must be 1 to 86400 seconds")
        }
        guard let q = try? FederatedModel.quantisation(p), q.isSafe(participants: p.minimumParticipants) else {
            throw ExchangeError(
                .malformed,
                "scale \(p.scale) and clip bound \(p.clipBound) cannot be summed safely over \(p.minimumParticipants) participants"
            )
        }
        guard (1...1000).contains(p.inactiveAfter ?? RoundPolicy.defaultInactiveAfter) else {
            throw ExchangeError(.malformed, "inactiveAfter must be 1 to 1000 rounds")
        }
        guard p.maximumSampleCount >= 1 else {
            throw ExchangeError(.malformed, "maximumSampleCount must be at least 1")
        }
        guard (1...1000).contains(p.localEpochs), (1...100_000).contains(p.batchSize),
            p.learningRate > 0, p.learningRate.isFinite, p.l2 >= 0, p.l2.isFinite
        else {
            throw ExchangeError(
                .malformed,
                "local training needs 1–1000 epochs, a batch of 1–100000, a positive learning rate and l2 ≥ 0"
            )
        }
        if let problem = p.serverOptimiser?.problem { throw ExchangeError(.malformed, "serverOptimiser: \(problem)") }
        if let mu = p.proximal, !(mu.isFinite && mu >= 0 && mu <= 100) {
            throw ExchangeError(.malformed, "proximal (FedProx's μ) must be 0 to 100")
        }
        guard (0...1000).contains(p.patience ?? 0) else {
            throw ExchangeError(.malformed, "patience must be 0 to 1000 scored rounds")
        }
    }

    /// A federation's description, decoded once (a federation's spec never changes).
    func federationSpec(_ id: String) throws -> FederationSpec {
        if let spec = specs[id] { return spec }
        guard
            let json = try store.read({ db in
                try String.fetchOne(db, sql: "SELECT spec FROM federations WHERE id = ?", arguments: [id])
            })
        else { throw ExchangeError(.notFound, "no federation \(id)") }
        let spec = try JSONDecoder().decode(FederationSpec.self, from: Data(json.utf8))
        specs[id] = spec
        return spec
    }

    /// `POST /v1/admin/federations/{federation}/invites`.
    public func invite(_ caller: Caller, federation: String, _ request: InviteRequest) throws -> Invite {
        try requireOperator(caller)
        _ = try federationSpec(federation)
        guard request.role != .operator else {
            throw ExchangeError(.malformed, "the operator is set when the broker is initialised, not invited")
        }
        guard (60...2_592_000).contains(request.validFor) else {
            throw ExchangeError(.malformed, "validFor must be 60 s to 30 days (2592000 s)")
        }
        let secret = SecureRandom.bytes(16)
        let digest = try BLAKE2b.hash(secret, domain: .invite)
        let expires = settings.now() + Int64(request.validFor)
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "invite.issue",
            objectType: "federation",
            objectID: federation,
            reason: "role \(request.role.rawValue), expires \(expires)",
            digests: [.init(name: "invite", bytes: digest)]
        )
        try store.write { db in
            try db.execute(
                sql: "INSERT INTO invites (digest, federation, role, expires) VALUES (?, ?, ?, ?)",
                arguments: [Data(digest), federation, request.role.rawValue, expires]
            )
        }
        // `secret.identity`, and `.fingerprint` of the TLS certificate when the broker serves one.
        var code = Hex.encode(secret) + "." + Hex.encode(keys.identity.publicKey.rawRepresentation)
        if let certificate = settings.certificate {
            code += "." + Hex.encode(try TLSCertificate.fingerprint(pem: certificate))
        }
        return Invite(
            code: code,
            federation: federation,
            role: request.role,
            expires: expires
        )
    }

    /// `POST /v1/enrol`: the caller's key joins the invite's federation in the invite's role.
    public func enrol(_ caller: Caller, _ request: EnrolRequest) throws -> MemberRecord {
        guard !caller.isOperator else {
            throw ExchangeError(.conflict, "the operator's key cannot enrol as a member: use a node's own key")
        }
        guard request.invite.utf8.count == 32, let secret = try? Hex.decode(request.invite) else {
            throw ExchangeError(.malformed, "the invite secret is 32 hex digits (the part of the code before the dot)")
        }
        guard request.deliveryKey.utf8.count == 64, let delivery = try? Hex.decode(request.deliveryKey) else {
            throw ExchangeError(.malformed, "deliveryKey is an X25519 key, 64 hex digits")
        }
        let digest = try BLAKE2b.hash(secret, domain: .invite)
        let now = settings.now()
        let key = caller.key.rawRepresentation
        // Checked, then audited, then stored (the actor runs one request at a time, so nothing
        // changes in between): a crash after the entry leaves the invite unused for the retry.
        let (member, repeated) = try store.read { db -> (Member, Bool) in
            guard
                let row = try Row.fetchOne(db, sql: "SELECT * FROM invites WHERE digest = ?", arguments: [Data(digest)])
            else { throw ExchangeError(.forbidden, "no such invite") }
            if let usedBy = row["used_by"] as Data? {
                // The same key presenting the invite it used, with the same delivery key, is the
                // same enrolment asked again (a node that crashed before it wrote its record): it
                // gets its record back, and nothing changes.
                guard usedBy == Data(key), let held = caller.membership(in: row["federation"]),
                    held.role.rawValue == row["role"] as String,
                    try Data.fetchOne(
                        db,
                        sql: "SELECT delivery_key FROM members WHERE key = ? AND federation = ?",
                        arguments: [Data(key), held.federation]
                    ) == Data(delivery)
                else { throw ExchangeError(.forbidden, "this invite was already used") }
                return (held, true)
            }
            guard (row["expires"] as Int64) > now else {
                throw ExchangeError(.forbidden, "this invite has expired")
            }
            guard let role = Role(rawValue: row["role"]) else {
                throw ExchangeError(.internal, "the invite names an unknown role")
            }
            if let held = caller.membership(in: row["federation"]) {
                throw ExchangeError(
                    .conflict,
                    "key \(caller.key.fingerprint) is already a \(held.role.rawValue) of federation \(held.federation); the invite is left unused"
                )
            }
            return (Member(key: key, role: role, federation: row["federation"], status: "active", enrolled: now), false)
        }
        if repeated { return try record(member) }
        try audit(
            actor: "\(member.role.rawValue):\(caller.key.fingerprint)",
            request: caller.request,
            action: "member.enrol",
            objectType: "federation",
            objectID: member.federation,
            digests: [
                .init(name: "invite", bytes: digest), .init(name: "member.key", bytes: caller.key.rawRepresentation),
            ]
        )
        try store.write { db in
            try db.execute(
                sql: "UPDATE invites SET used_by = ? WHERE digest = ?",
                arguments: [Data(key), Data(digest)]
            )
            try db.execute(
                sql:
                    "INSERT INTO members (key, role, federation, status, enrolled, delivery_key) VALUES (?, ?, ?, 'active', ?, ?)",
                arguments: [Data(key), member.role.rawValue, member.federation, now, Data(delivery)]
            )
        }
        return try record(member)
    }

    func record(_ member: Member) throws -> MemberRecord {
        let key = try Ed25519.PublicKey(rawRepresentation: member.key)
        let rounds = try store.read { db -> [Contribution] in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT round, phase, config, included, statistics FROM rounds WHERE federation = ? ORDER BY round DESC LIMIT 100",
                arguments: [member.federation]
            ).compactMap { row -> Contribution? in
                let number: Int = row["round"]
                guard let config = try? RoundConfig(decoding: Array(row["config"] as Data)),
                    let index = config.roster.firstIndex(of: key)
                else { return nil }
                let phases = try String.fetchAll(
                    db,
                    sql: "SELECT phase FROM answers WHERE federation = ? AND round = ? AND participant = ?",
                    arguments: [member.federation, number, index]
                )
                let ordered = ExchangePhase.answering.map(\.rawValue).filter(phases.contains)
                let phase: String = row["phase"]
                var contribution = Contribution(
                    round: number,
                    phases: ordered,
                    // The sum is over every masked input accepted before masking closed, whether or
                    // not its sender then signed the survivor set.
                    included: phase == "finished" && ordered.contains("mask"),
                    outcome: phase == "finished" || phase == "aborted" ? phase : "open"
                )
                if row["statistics"] as Bool { contribution.statistics = true }
                return contribution
            }
        }
        return MemberRecord(
            key: Hex.encode(member.key),
            fingerprint: key.fingerprint,
            role: member.role,
            federation: member.federation,
            status: member.status,
            enrolled: member.enrolled,
            rounds: rounds
        )
    }

    /// `GET /v1/me?federation=F`: the caller's membership of `federation`, or its only one when
    /// none is named (an inactive one is active again: its node is back; a suspended one is
    /// shown as such).
    public func me(_ caller: Caller, federation: String?) throws -> MemberRecord {
        let member: Member
        if let federation {
            guard let named = caller.membership(in: federation) else {
                throw ExchangeError(
                    .notFound,
                    "key \(caller.key.fingerprint) is not a member of federation \(federation)"
                )
            }
            member = named
        } else {
            guard caller.memberships.count == 1, let only = caller.memberships.first else {
                throw ExchangeError(
                    .malformed,
                    "key \(caller.key.fingerprint) is a member of federations \(caller.memberships.map(\.federation).joined(separator: ", ")): name one with ?federation="
                )
            }
            member = only
        }
        return try record(member.status == "inactive" ? standing(caller, member) : member)
    }

    /// `GET /v1/admin/federations/{federation}/participants`.
    public func members(_ caller: Caller, federation: String) throws -> [MemberRecord] {
        try requireOperator(caller)
        _ = try federationSpec(federation)
        let members = try store.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM members WHERE federation = ? ORDER BY enrolled, key",
                arguments: [federation]
            )
            .compactMap(Member.init(row:))
        }
        let names = try displayNames()
        return try members.map { member in
            var record = try record(member)
            record.name = names[record.fingerprint]
            return record
        }
    }

    /// The display names recorded in the audit log's personal-data table, by fingerprint: for
    /// the operator's lists only (members never see each other's names).
    func displayNames() throws -> [String: String] {
        Dictionary(try log.people().map { ($0.id, $0.displayName) }, uniquingKeysWith: { first, _ in first })
    }

    /// `POST /v1/admin/federations/{federation}/participants/{key}/suspend` and `…/resume`: a
    /// suspended key's requests are refused from now on, and it is left out of rounds that open
    /// later; a resumed one is active again. `member` is its identity key (64 hex digits) or its
    /// fingerprint (`ed25519:` and 32 hex digits).
    public func setStanding(
        _ caller: Caller,
        federation: String,
        member name: String,
        suspended: Bool
    ) throws -> MemberRecord {
        try requireOperator(caller)
        guard var member = try store.read({ db in try Self.member(db, named: name, in: federation) }) else {
            throw ExchangeError(.notFound, "no member \(name.prefix(48)) in federation \(federation)")
        }
        let status = suspended ? "suspended" : "active"
        guard member.status != status else { return try record(member) }
        try audit(
            actor: caller.name,
            request: caller.request,
            action: suspended ? "member.suspend" : "member.resume",
            objectType: "member",
            objectID: (try? Ed25519.PublicKey(rawRepresentation: member.key).fingerprint) ?? name
        )
        try store.write { db in
            try db.execute(
                sql: "UPDATE members SET status = ?, missed = 0 WHERE key = ? AND federation = ?",
                arguments: [status, Data(member.key), federation]
            )
        }
        member.status = status
        return try record(member)
    }

    /// The member of `federation` that `name` names: its identity key (64 hex digits) or its
    /// fingerprint (`ed25519:` and 32 hex digits).
    static func member(_ db: Database, named name: String, in federation: String) throws -> Member? {
        if name.utf8.count == 64, let raw = try? Hex.decode(name) {
            return try Member.fetch(db, key: raw, federation: federation)
        }
        guard name.hasPrefix("ed25519:"), name.utf8.count == 40 else {
            throw ExchangeError(
                .malformed,
                "a member is named by its fingerprint (ed25519: and 32 hex digits) or its identity key (64 hex digits)"
            )
        }
        let keys = try Data.fetchAll(db, sql: "SELECT key FROM members WHERE federation = ?", arguments: [federation])
        guard
            let key = keys.first(where: { (try? Ed25519.PublicKey(rawRepresentation: Array($0)))?.fingerprint == name })
        else { return nil }
        return try Member.fetch(db, key: Array(key), federation: federation)
    }

    /// `POST /v1/admin/federations/{federation}/training`: `start` runs `rounds` more rounds;
    /// `stop` opens no new round (one in progress runs to its end).
    public func training(_ caller: Caller, federation: String, _ request: TrainingRequest) throws -> FederationStatus {
        try requireOperator(caller)
        _ = try federationSpec(federation)
        switch request.action {
        case "start":
            guard let rounds = request.rounds, (1...10_000).contains(rounds) else {
                throw ExchangeError(.malformed, "start needs rounds: 1 to 10000")
            }
            try audit(
                actor: caller.name,
                request: caller.request,
                action: "training.start",
                objectType: "federation",
                objectID: federation,
                reason: "\(rounds) rounds"
            )
            try store.write { db in
                try db.execute(
                    sql: """
                        UPDATE federations SET state = 'training', rounds_left = ?, stopped_because = NULL,
                            trained_from = (SELECT coalesce(max(round), 0) FROM models WHERE federation = ?)
                        WHERE id = ?
                        """,
                    arguments: [rounds, federation, federation]
                )
            }
        case "stop":
            try audit(actor: caller.name, action: "training.stop", objectType: "federation", objectID: federation)
            try store.write { db in
                try db.execute(
                    sql:
                        "UPDATE federations SET state = 'stopped', rounds_left = 0, stopped_because = NULL WHERE id = ?",
                    arguments: [federation]
                )
            }
        default:
            throw ExchangeError(.malformed, "action is start or stop, not \(request.action.prefix(20))")
        }
        return try status(federation)
    }

    /// `GET /v1/admin/federations/{federation}`.
    /// `GET /v1/admin/federations`: every federation's status, by id.
    public func federations(_ caller: Caller) throws -> [FederationStatus] {
        try requireOperator(caller)
        return try store.read { db in try String.fetchAll(db, sql: "SELECT id FROM federations ORDER BY id") }
            .map { try status($0) }
    }

    public func status(_ caller: Caller, federation: String) throws -> FederationStatus {
        try requireOperator(caller)
        return try status(federation)
    }

    func status(_ federation: String) throws -> FederationStatus {
        _ = try federationSpec(federation)
        let open = self.open[federation]
        return try store.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT * FROM federations WHERE id = ?", arguments: [federation])!
            let model = try Row.fetchOne(
                db,
                sql: "SELECT round, digest FROM models WHERE federation = ? ORDER BY round DESC LIMIT 1",
                arguments: [federation]
            )!
            let active = try Int.fetchOne(
                db,
                sql: "SELECT count(*) FROM members WHERE federation = ? AND role = 'participant' AND status = 'active'",
                arguments: [federation]
            )!
            let rounds = try Row.fetchAll(
                db,
                sql: "SELECT * FROM rounds WHERE federation = ? ORDER BY round DESC LIMIT 100",
                arguments: [federation]
            ).map { row -> RoundSummary in
                let number: Int = row["round"]
                let config = try RoundConfig(decoding: Array(row["config"] as Data))
                let answered = try ExchangePhase.answering.map { phase in
                    try Int.fetchOne(
                        db,
                        sql: "SELECT count(*) FROM answers WHERE federation = ? AND round = ? AND phase = ?",
                        arguments: [federation, number, phase.rawValue]
                    )!
                }
                let isOpen = open?.number == number
                return RoundSummary(
                    round: number,
                    phase: isOpen ? open!.phase.rawValue : row["phase"],
                    deadline: isOpen ? open!.deadline : 0,
                    participants: config.participantCount,
                    neighbours: config.neighbours,
                    threshold: config.threshold,
                    signatureThreshold: config.signatureThreshold,
                    answered: answered,
                    included: row["included"],
                    reason: row["reason"],
                    modelDigest: (row["model_digest"] as Data?).map { Hex.encode(Array($0)) } ?? "",
                    waitingFor: isOpen
                        ? open!.expected.subtracting(open!.answered).sorted().map {
                            config.roster[Int($0)].fingerprint
                        } : []
                )
            }
            return FederationStatus(
                id: federation,
                state: row["state"],
                roundsLeft: row["rounds_left"],
                participants: active,
                modelDigest: Hex.encode(Array(model["digest"] as Data)),
                modelRound: model["round"],
                rounds: rounds,
                stoppedBecause: row["stopped_because"]
            )
        }
    }
}

extension Domain {
    /// Digests of invite secrets (the broker stores only these).
    static let invite = Domain("cairn/invite/v1")
}

extension JSONEncoder {
    /// Key-sorted JSON, so stored and hashed documents are stable.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
