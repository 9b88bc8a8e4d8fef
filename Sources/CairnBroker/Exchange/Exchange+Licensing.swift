import CairnAudit
import CairnCrypto
public import CairnExchange
import CairnLicensing
import CairnModels
import CairnWire
import Foundation
import GRDB

/// The model registry, the catalogue and licensed delivery (`Protocol/README.md`, "Model
/// registry", "Licences", "Model containers").
extension Exchange {
    /// `POST /v1/admin/federations/{federation}/publish`: the current global model becomes the
    /// next version (immutable, broker-signed), and the listing shows `request`'s terms.
    /// A model already published is refused (409): a new version needs a new round.
    public func publish(_ caller: Caller, federation: String, _ request: PublishRequest) throws -> ModelVersion {
        try requireOperator(caller)
        let spec = try federationSpec(federation)
        let offer = try Self.checked(request.offer)
        guard request.description.utf8.count <= 1000 else {
            throw ExchangeError(.malformed, "the description exceeds 1000 bytes")
        }
        let now = settings.now()
        // Built in a read, audited, then stored: a crash in between leaves an entry for a version
        // that the retry publishes again (the same number and model; the entry repeats).
        let (version, round, file) = try store.read { db -> (ModelVersion, Int, [UInt8]) in
            let current = try Self.model(db, of: spec)
            let last = try Row.fetchOne(
                db,
                sql: "SELECT version, round FROM versions WHERE federation = ? ORDER BY version DESC LIMIT 1",
                arguments: [federation]
            )
            // The rounds since the last version; the first version's start after the initial
            // model (round 0), unless it is that model.
            let lastRound: Int = last?["round"] ?? (current.round > 0 ? 0 : -1)
            guard current.round > lastRound else {
                throw ExchangeError(
                    .conflict,
                    "the model of round \(current.round) is already published as version \(last?["version"] ?? 0); versions are immutable"
                )
            }
            let lineage = try Row.fetchAll(
                db,
                sql:
                    "SELECT round, contributors FROM models WHERE federation = ? AND round > ? AND round <= ? ORDER BY round",
                arguments: [federation, lastRound, current.round]
            )
            let file = try ModelFile(
                model: current.model,
                schema: spec.schema,
                standardisation: current.standardisation
            ).encoded()
            var version = ModelVersion(
                model: federation,
                version: (last?["version"] ?? 0) + 1,
                rounds: lineage.map { $0["round"] },
                contributors: lineage.map { $0["contributors"] },
                parametersDigest: Hex.encode(current.digest),
                fileDigest: Hex.encode(try Container.plaintextDigest(file)),
                metrics: try Self.federatedMetrics(db, federation: federation, round: current.round),
                published: now,
                signature: ""
            )
            version.signature = Hex.encode(
                try keys.licence.signature(for: try version.signedBytes(), domain: .modelVersion)
            )
            return (version, current.round, file)
        }
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "model.publish",
            objectType: "model",
            objectID: "\(federation)@\(version.version)",
            reason: "round \(round), \(offer.pricing) \(offer.price) \(offer.currency)",
            digests: [
                .init(name: "model.parameters", bytes: try Hex.decode(version.parametersDigest)),
                .init(name: "model.file", bytes: try Hex.decode(version.fileDigest)),
            ]
        )
        try store.write { db in
            try db.execute(
                sql: "INSERT INTO versions (federation, version, round, metadata, file) VALUES (?, ?, ?, ?, ?)",
                arguments: [federation, version.version, round, try Self.json(version), Data(file)]
            )
            try db.execute(
                sql: """
                    INSERT INTO listings (federation, description, offer) VALUES (?, ?, ?)
                    ON CONFLICT (federation) DO UPDATE SET description = excluded.description, offer = excluded.offer
                    """,
                arguments: [federation, request.description, try Self.json(offer)]
            )
        }
        return version
    }

    /// The row-weighted means of the scores reported for `round`'s model (`accuracy`,
    /// `log-loss`), with `evaluators` and `evaluation-rows`; empty below ``EvaluationReport/minimumEvaluators``.
    /// Both means are of per-row quantities, so they equal the score of the pooled held-out rows.
    static func federatedMetrics(_ db: Database, federation: String, round: Int) throws -> [String: Double] {
        let row = try Row.fetchOne(
            db,
            sql: """
                SELECT count(*) AS n, total(samples) AS rows, total(samples * accuracy) AS correct,
                    total(samples * log_loss) AS loss
                FROM evaluations WHERE federation = ? AND round = ?
                """,
            arguments: [federation, round]
        )!
        let n: Int = row["n"]
        let rows: Double = row["rows"]
        guard n >= EvaluationReport.minimumEvaluators, rows > 0 else { return [:] }
        return [
            "accuracy": row["correct"] / rows,
            "log-loss": row["loss"] / rows,
            "evaluators": Double(n),
            "evaluation-rows": rows,
        ]
    }

    /// `POST /v1/federations/{federation}/evaluations`: records a participant's score of one
    /// round's model on its held-out rows. The same report again is accepted; a different one for
    /// the same round is refused (409), so a score cannot be changed once given.
    public func reportEvaluation(
        _ caller: Caller,
        federation: String,
        _ report: EvaluationReport
    ) throws -> EvaluationReport {
        let member = try requireMember(caller, of: federation)
        guard (1...1_000_000_000).contains(report.samples), (0...1).contains(report.accuracy),
            (0...1000).contains(report.logLoss), report.round >= 0,
            report.parametersDigest.utf8.count == 64, let digest = try? Hex.decode(report.parametersDigest)
        else {
            throw ExchangeError(
                .malformed,
                "an evaluation has a round, a 64-hex-digit parameters digest, 1–10^9 samples, accuracy 0–1 and log-loss 0–1000"
            )
        }
        // Checked, then audited, then stored: a crash between the two leaves an audited score
        // that is not stored, and the node's retry stores it (auditing it again), never a stored
        // score without its entry.
        let stored = try store.read { db -> Bool in
            guard
                let model = try Data.fetchOne(
                    db,
                    sql: "SELECT digest FROM models WHERE federation = ? AND round = ?",
                    arguments: [federation, report.round]
                )
            else { throw ExchangeError(.notFound, "federation \(federation) has no model of round \(report.round)") }
            guard Array(model) == digest else {
                throw ExchangeError(
                    .conflict,
                    "the model of round \(report.round) has digest \(Hex.encode(Array(model)).prefix(16))…, not \(report.parametersDigest.prefix(16))…"
                )
            }
            guard
                let earlier = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT samples, accuracy, log_loss FROM evaluations WHERE federation = ? AND round = ? AND member = ?",
                    arguments: [federation, report.round, Data(member.key)]
                )
            else { return false }
            guard earlier["samples"] == report.samples, earlier["accuracy"] == report.accuracy,
                earlier["log_loss"] == report.logLoss
            else {
                throw ExchangeError(
                    .conflict,
                    "\(caller.name) already reported a different score for round \(report.round); a score is given once"
                )
            }
            return true
        }
        guard !stored else { return report }
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "model.evaluate",
            objectType: "model",
            objectID: "\(federation)#\(report.round)",
            reason: "\(report.samples) held-out rows",
            digests: [.init(name: "model.parameters", bytes: digest)]
        )
        try store.write { db in
            try db.execute(
                sql: """
                    INSERT INTO evaluations (federation, round, member, samples, accuracy, log_loss)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    federation, report.round, Data(member.key), report.samples, report.accuracy, report.logLoss,
                ]
            )
        }
        return report
    }

    /// Refuses terms out of range and computes a cost-plus price.
    static func checked(_ offer: LicenceOffer) throws -> LicenceOffer {
        var offer = offer
        do { _ = try Entitlements(names: offer.entitlements) } catch let error as LicensingError {
            throw ExchangeError(.malformed, error.message)
        }
        guard (1...366).contains(offer.licenceDays), (1...1000).contains(offer.deliveryLimit) else {
            throw ExchangeError(.malformed, "licenceDays must be 1–366 and deliveryLimit 1–1000")
        }
        guard offer.currency.utf8.count == 3, offer.currency.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw ExchangeError(.malformed, "currency is a three-letter ISO 4217 code such as EUR")
        }
        func amount(_ x: Double?, _ name: String) throws -> Double {
            guard let x, x.isFinite, x >= 0, x <= 1e12 else {
                throw ExchangeError(.malformed, "\(offer.pricing) pricing needs \(name) between 0 and 10^12")
            }
            return x
        }
        switch offer.pricing {
        case "fixed":
            offer.price = try amount(offer.price, "price")
            offer.cost = nil
            offer.margin = nil
            offer.unit = nil
        case "cost-plus":
            let cost = try amount(offer.cost, "cost")
            let margin = try amount(offer.margin, "margin")
            offer.price = (cost * (1 + margin) * 100).rounded() / 100
            offer.unit = nil
        case "usage":
            offer.price = try amount(offer.price, "price")
            guard let unit = offer.unit, (1...64).contains(unit.utf8.count) else {
                throw ExchangeError(
                    .malformed,
                    "usage pricing needs a unit of 1–64 bytes, such as \"1000 predictions\""
                )
            }
            offer.cost = nil
            offer.margin = nil
        default:
            throw ExchangeError(.malformed, "pricing is fixed, cost-plus or usage, not \(offer.pricing)")
        }
        return offer
    }

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder.sorted.encode(value), as: UTF8.self)
    }

    /// Participants and licensees of the federation (and the operator) may see and ask.
    private func requireCustomer(_ caller: Caller, of federation: String) throws -> Member? {
        if caller.isOperator { return nil }
        guard let member = caller.membership(in: federation), [.participant, .licensee].contains(member.role) else {
            throw ExchangeError(
                .forbidden,
                "\(caller.name) is not a participant or licensee of federation \(federation)"
            )
        }
        return try standing(caller, member)
    }

    /// `GET /v1/federations/{federation}/listing`.
    public func listing(_ caller: Caller, federation: String) throws -> Listing {
        _ = try requireCustomer(caller, of: federation)
        let spec = try federationSpec(federation)
        return try store.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT * FROM listings WHERE federation = ?",
                    arguments: [federation]
                )
            else { throw ExchangeError(.notFound, "federation \(federation) has no published model yet") }
            let versions = try String.fetchAll(
                db,
                sql: "SELECT metadata FROM versions WHERE federation = ? ORDER BY version",
                arguments: [federation]
            ).map { try JSONDecoder().decode(ModelVersion.self, from: Data($0.utf8)) }
            return Listing(
                model: federation,
                description: row["description"],
                task: spec.schema.task.rawValue,
                schema: spec.schema,
                versions: versions,
                offer: try JSONDecoder().decode(LicenceOffer.self, from: Data((row["offer"] as String).utf8))
            )
        }
    }

    /// `POST /v1/federations/{federation}/licences`: records the request under the listing's
    /// current terms; a participant of the federation is granted at once when the listing says so.
    public func requestLicence(_ caller: Caller, federation: String, _ request: LicenceRequest) throws -> LicenceRecord
    {
        guard let member = try requireCustomer(caller, of: federation) else {
            throw ExchangeError(.forbidden, "the operator grants licences; it does not hold them")
        }
        let offer = try listing(caller, federation: federation).offer
        let wanted: Entitlements
        do { wanted = try Entitlements(names: request.entitlements) } catch let error as LicensingError {
            throw ExchangeError(.malformed, error.message)
        }
        guard try Entitlements(names: offer.entitlements).isSuperset(of: wanted) else {
            throw ExchangeError(.forbidden, "the listing offers \(offer.entitlements), not \(request.entitlements)")
        }
        let id = SecureRandom.bytes(16)
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "licence.request",
            objectType: "licence",
            objectID: Hex.encode(id),
            reason: "\(wanted.names.joined(separator: ",")) under \(offer.pricing) \(offer.price) \(offer.currency)"
        )
        try store.write { db in
            try db.execute(
                sql: """
                    INSERT INTO licences (id, federation, licensee, status, requested, entitlements, offer)
                    VALUES (?, ?, ?, 'requested', ?, ?, ?)
                    """,
                arguments: [
                    Data(id), federation, Data(member.key), settings.now(), wanted.names.joined(separator: ","),
                    try Self.json(offer),
                ]
            )
        }
        if member.role == .participant && offer.autoGrantParticipants {
            return try decide(
                id: id,
                LicenceDecision(action: "grant", reason: "participant of \(federation)"),
                actor: brokerActor
            )
        }
        return try licenceRecord(id: id)
    }

    /// `GET /v1/admin/federations/{federation}/licences`: every request, newest first.
    public func licences(_ caller: Caller, federation: String) throws -> [LicenceRecord] {
        try requireOperator(caller)
        _ = try federationSpec(federation)
        let names = try displayNames()
        return try licenceRecords(where: "federation", is: federation).map { record in
            var record = record
            record.licenseeName = try names[
                Ed25519.PublicKey(rawRepresentation: Hex.decode(record.licensee)).fingerprint
            ]
            return record
        }
    }

    /// The records of the licences whose `column` (`federation` or `licensee`) is `value`,
    /// newest first, without proofs.
    private func licenceRecords(
        where column: String,
        is value: some DatabaseValueConvertible
    ) throws
        -> [LicenceRecord]
    {
        let ids = try store.read { db in
            try Data.fetchAll(
                db,
                sql: "SELECT id FROM licences WHERE \(column) = ? ORDER BY requested DESC, id",
                arguments: [value]
            )
        }
        return try ids.map { try licenceRecord(id: Array($0), withProof: false) }
    }

    /// `POST /v1/admin/licences/{id}`: grant or refuse a request, or revoke a granted licence.
    public func decide(_ caller: Caller, id: String, _ decision: LicenceDecision) throws -> LicenceRecord {
        try requireOperator(caller)
        return try decide(id: try Self.licenceID(id), decision, actor: caller.name, request: caller.request)
    }

    static func licenceID(_ text: String) throws -> [UInt8] {
        guard text.utf8.count == 32, let id = try? Hex.decode(text) else {
            throw ExchangeError(.malformed, "a licence id is 32 hex digits")
        }
        return id
    }

    private func decide(
        id: [UInt8],
        _ decision: LicenceDecision,
        actor: String,
        request: AuditEntry.SignedRequest? = nil
    ) throws -> LicenceRecord {
        guard decision.reason.utf8.count <= 200 else { throw ExchangeError(.malformed, "the reason exceeds 200 bytes") }
        guard decision.action == "grant" || (decision.firstVersion == nil && decision.lastVersion == nil) else {
            throw ExchangeError(.malformed, "firstVersion and lastVersion belong to a grant, not a \(decision.action)")
        }
        let now = settings.now()
        let (row, lastVersion) = try store.read { db in
            (
                try Row.fetchOne(db, sql: "SELECT * FROM licences WHERE id = ?", arguments: [Data(id)]),
                try Int.fetchOne(
                    db,
                    sql:
                        "SELECT max(version) FROM versions WHERE federation = (SELECT federation FROM licences WHERE id = ?)",
                    arguments: [Data(id)]
                ) ?? 0
            )
        }
        guard let row else { throw ExchangeError(.notFound, "no licence \(Hex.encode(id))") }
        let status: String = row["status"]
        let federation: String = row["federation"]
        let next: String
        switch (decision.action, status) {
        case ("grant", "requested"): next = "granted"
        case ("refuse", "requested"): next = "refused"
        case ("revoke", "granted"): next = "revoked"
        case ("grant", _), ("refuse", _), ("revoke", _):
            throw ExchangeError(
                .conflict,
                "licence \(Hex.encode(id)) is \(status); it cannot be \(["grant": "granted", "refuse": "refused", "revoke": "revoked"][decision.action] ?? decision.action)"
            )
        default:
            throw ExchangeError(.malformed, "action is grant, refuse or revoke, not \(decision.action)")
        }
        var signed: SignedLicence?
        if next == "granted" {
            let offer = try JSONDecoder().decode(LicenceOffer.self, from: Data((row["offer"] as String).utf8))
            let first = decision.firstVersion ?? 1
            let last = decision.lastVersion ?? max(first, lastVersion)
            guard lastVersion >= 1, (1...lastVersion).contains(first), (first...Int(UInt32.max)).contains(last) else {
                throw ExchangeError(
                    .malformed,
                    "a grant covers versions first–last with 1 ≤ first ≤ \(max(1, lastVersion)) (the newest) and last ≥ first, not \(first)–\(last)"
                )
            }
            signed = try Licence(
                id: id,
                model: federation,
                versions: UInt32(first)...UInt32(last),
                licensee: try Ed25519.PublicKey(rawRepresentation: Array(row["licensee"] as Data)),
                entitlements: try Entitlements(
                    names: (row["entitlements"] as String).split(separator: ",").map(String.init)
                ),
                notBefore: now,
                notAfter: now + Int64(offer.licenceDays) * 86_400,
                deliveryLimit: UInt32(offer.deliveryLimit)
            ).signed(by: keys.licence)
        }
        let entry = try audit(
            actor: actor,
            request: request,
            action: "licence." + ["granted": "issue", "refused": "refuse", "revoked": "revoke"][next]!,
            objectType: "licence",
            objectID: Hex.encode(id),
            reason: decision.reason,
            digests: try signed.map { [.init(name: "licence", bytes: try $0.digest())] } ?? []
        )
        try store.write { db in
            try db.execute(
                sql:
                    "UPDATE licences SET status = ?, signed = coalesce(?, signed), entry = coalesce(?, entry) WHERE id = ?",
                arguments: [next, signed.map { Data($0.bytes) }, signed == nil ? nil : Int64(entry.sequence), Data(id)]
            )
        }
        if signed != nil { checkpoint() }
        return try licenceRecord(id: id)
    }

    /// `GET /v1/licences`: the caller's own licences and requests, newest first (without proofs;
    /// `GET /v1/licences/{id}` gives one with its proof).
    public func ownLicences(_ caller: Caller) throws -> [LicenceRecord] {
        try licenceRecords(where: "licensee", is: Data(caller.key.rawRepresentation))
    }

    /// `GET /v1/licences/{id}`: the licensee's own licence, with its audit proof once granted.
    public func licence(_ caller: Caller, id: String) throws -> LicenceRecord {
        let raw = try Self.licenceID(id)
        if !caller.isOperator {
            // The same refusal whether the licence exists or not: no one learns others' ids.
            let holder = try store.read { db in
                try Data.fetchOne(db, sql: "SELECT licensee FROM licences WHERE id = ?", arguments: [Data(raw)])
            }
            guard holder.map(Array.init) == caller.key.rawRepresentation else {
                throw ExchangeError(.forbidden, "\(caller.name) holds no licence \(id)")
            }
        }
        return try licenceRecord(id: raw)
    }

    private func licenceRecord(id: [UInt8], withProof: Bool = true) throws -> LicenceRecord {
        guard
            let row = try store.read({ db in
                try Row.fetchOne(db, sql: "SELECT * FROM licences WHERE id = ?", arguments: [Data(id)])
            })
        else { throw ExchangeError(.notFound, "no licence \(Hex.encode(id))") }
        var proof: LicenceProof?
        if withProof, let index = row["entry"] as Int? {
            let checkpoint = try log.latestCheckpoint() ?? log.signCheckpoint(origin: origin, signer: keys.checkpoint)
            var size = try Checkpoint(text: try SignedNote.open(checkpoint, verifier: keys.checkpoint.verifier)).size
            var note = checkpoint
            if size <= index {
                note = try log.signCheckpoint(origin: origin, signer: keys.checkpoint)
                size = try Checkpoint(text: try SignedNote.open(note, verifier: keys.checkpoint.verifier)).size
            }
            proof = LicenceProof(
                index: index,
                entry: Hex.encode(try log.entry(index).encoded()),
                hashes: try log.inclusionProof(index: index, size: size).map { Hex.encode($0.bytes) },
                checkpoint: note
            )
        }
        let signed = (row["signed"] as Data?).map { Array($0) } ?? []
        let versions =
            try signed.isEmpty
            ? nil : SignedLicence(decoding: signed, brokerLicenceKey: keys.licence.publicKey).licence.versions
        return LicenceRecord(
            id: Hex.encode(id),
            model: row["federation"],
            licensee: Hex.encode(Array(row["licensee"] as Data)),
            status: row["status"],
            requested: row["requested"],
            entitlements: (row["entitlements"] as String).split(separator: ",").map(String.init),
            offer: try JSONDecoder().decode(LicenceOffer.self, from: Data((row["offer"] as String).utf8)),
            licence: Hex.encode(signed),
            versions: versions.map { [Int($0.lowerBound), Int($0.upperBound)] },
            deliveries: row["deliveries"],
            proof: proof
        )
    }

    /// `GET /v1/licences/{id}/versions/{version}/container`: the version's model file sealed to
    /// the licensee's delivery key under a fresh file key. Refused (403, audited) unless the
    /// caller holds this licence, it is granted (not requested, refused or revoked), within its
    /// window, under its delivery limit and covers the version.
    public func deliver(_ caller: Caller, id: String, version: Int) throws -> [UInt8] {
        let id = try Self.licenceID(id)
        let now = settings.now()
        let (row, file, deliveryKey) = try store.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT * FROM licences WHERE id = ?", arguments: [Data(id)])
            let federation: String = row?["federation"] ?? ""
            return (
                row,
                try Row.fetchOne(
                    db,
                    sql: "SELECT file, metadata FROM versions WHERE federation = ? AND version = ?",
                    arguments: [federation, version]
                ),
                try Data.fetchOne(
                    db,
                    sql: "SELECT delivery_key FROM members WHERE key = ? AND federation = ?",
                    arguments: [Data(caller.key.rawRepresentation), federation]
                )
            )
        }
        guard let row, Array(row["licensee"] as Data) == caller.key.rawRepresentation else {
            throw ExchangeError(.forbidden, "\(caller.name) holds no licence \(Hex.encode(id))")
        }
        // A licensee suspended in the licence's federation fetches nothing from it.
        if let member = caller.membership(in: row["federation"]) { _ = try standing(caller, member) }
        let status: String = row["status"]
        guard status == "granted", let signedBytes = row["signed"] as Data? else {
            throw ExchangeError(.forbidden, "licence \(Hex.encode(id)) is \(status), not granted")
        }
        let signed = try SignedLicence(decoding: Array(signedBytes), brokerLicenceKey: keys.licence.publicKey)
        let terms = signed.licence
        do { try terms.checkValid(at: now) } catch let error as LicensingError {
            throw ExchangeError(.forbidden, error.message)
        }
        let deliveries: Int = row["deliveries"]
        guard deliveries < Int(terms.deliveryLimit) else {
            throw ExchangeError(.forbidden, "licence \(terms.idHex) has used its \(terms.deliveryLimit) deliveries")
        }
        guard version >= 1, version <= Int(UInt32.max), terms.versions.contains(UInt32(version)) else {
            throw ExchangeError(
                .forbidden,
                "licence \(terms.idHex) covers versions \(terms.versions.lowerBound)–\(terms.versions.upperBound), not \(version)"
            )
        }
        guard let file else { throw ExchangeError(.notFound, "\(terms.model) has no version \(version)") }
        let metadata = try JSONDecoder().decode(ModelVersion.self, from: Data((file["metadata"] as String).utf8))
        let digest = try Hex.decode(metadata.fileDigest)
        guard let deliveryKey, let key = try? X25519.PublicKey(rawRepresentation: Array(deliveryKey)) else {
            throw ExchangeError(.forbidden, "\(caller.name) enrolled without a delivery key")
        }
        let deliveryID = SecureRandom.bytes(16)
        let payload = Array(file["file"] as Data)
        let container = try payload.withUnsafeBytes { p in
            try Container.seal(
                p,
                plaintextDigest: digest,
                model: terms.model,
                version: UInt32(version),
                licence: terms,
                deliveryID: deliveryID,
                deliveryKey: key,
                signer: keys.licence
            )
        }
        // Audited before it is counted: a crash in between leaves a use in the log that the
        // counter does not show (the licensee is not charged a delivery it never received).
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "licence.use",
            objectType: "licence",
            objectID: terms.idHex,
            reason: "delivery \(deliveries + 1) of \(terms.deliveryLimit)"
        )
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "model.deliver",
            objectType: "delivery",
            objectID: Hex.encode(deliveryID),
            reason: "\(terms.model)@\(version) under licence \(terms.idHex)",
            digests: [.init(name: "model.file", bytes: digest)]
        )
        try store.write { db in
            try db.execute(
                sql: "UPDATE licences SET deliveries = deliveries + 1 WHERE id = ?",
                arguments: [Data(id)]
            )
        }
        return container
    }
}
