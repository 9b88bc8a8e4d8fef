import CairnAudit
import CairnCrypto
import CairnExchange
import CairnLicensing
import CairnModels
import CairnNode
import CairnWire
import Foundation
import GRDB
import Testing

@testable import CairnBroker

/// The registry, the catalogue and licensed delivery, through the exchange as the HTTP layer
/// calls it (the access matrix covers every refusal over HTTP).
@Suite(.serialized) struct LicensingTests {
    /// Expects `body` to fail with `code` and a message containing `words`.
    func refuses(
        _ code: ExchangeError.Code,
        _ words: String,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> some Any
    ) async {
        do {
            _ = try await body()
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch let error as ExchangeError {
            #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
            #expect(error.message.contains(words), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func publishRequestGrantDeliverAndRevoke() async throws {
        let f = try await Fixture()
        defer { _ = system("rm -rf '\(f.folder)'") }
        let op = try await f.caller(f.operatorKey)
        // A licensee with a real delivery key (the fixture's members have a placeholder one).
        let licenseeKey = try Ed25519.PrivateKey()
        let delivery = try X25519.PrivateKey()
        let invite = try await f.exchange.invite(op, federation: "alpha", InviteRequest(role: .licensee))
        _ = try await f.exchange.enrol(
            try await f.caller(licenseeKey, enrolling: true),
            EnrolRequest(
                invite: String(invite.code.prefix(32)),
                deliveryKey: Hex.encode(delivery.publicKey.rawRepresentation)
            )
        )
        let licensee = try await f.caller(licenseeKey)
        let participant = try await f.caller(f.members["participant"]!)
        let keys = try BrokerDeliveryKeys(try await f.exchange.info(), broker: f.broker)

        await refuses(.notFound, "no published model yet") {
            try await f.exchange.listing(licensee, federation: "alpha")
        }
        let offer = LicenceOffer(
            entitlements: ["inference", "fine-tuning"],
            deliveryLimit: 3,
            pricing: "cost-plus",
            cost: 100,
            margin: 0.25
        )
        let version = try await f.exchange.publish(
            op,
            federation: "alpha",
            PublishRequest(description: "digits", offer: offer)
        )
        #expect(version.version == 1 && version.rounds == [0] && version.contributors == [0])
        #expect(version.isSigned(by: keys.licence))
        var forged = version
        forged.published += 1
        #expect(!forged.isSigned(by: keys.licence))
        await refuses(.conflict, "already published as version 1") {
            try await f.exchange.publish(op, federation: "alpha", PublishRequest(description: "again", offer: offer))
        }
        await refuses(.malformed, "pricing is fixed, cost-plus or usage") {
            try await f.exchange.publish(
                op,
                federation: "beta",
                PublishRequest(description: "", offer: LicenceOffer(pricing: "auction"))
            )
        }
        let listing = try await f.exchange.listing(licensee, federation: "alpha")
        #expect(listing.offer.price == 125 && listing.versions == [version] && listing.task == "multiclass")
        await refuses(.forbidden, "is not a participant or licensee of federation alpha") {
            try await f.exchange.listing(try await f.caller(f.members["outsider"]!), federation: "alpha")
        }

        // A licensee asks and waits; a participant is granted at once (the listing says so).
        let asked = try await f.exchange.requestLicence(
            licensee,
            federation: "alpha",
            LicenceRequest(entitlements: ["inference"])
        )
        #expect(asked.status == "requested" && asked.licence.isEmpty && asked.proof == nil && asked.offer.price == 125)
        await refuses(.forbidden, "is requested, not granted") {
            try await f.exchange.deliver(licensee, id: asked.id, version: 1)
        }
        await refuses(.malformed, "unknown entitlement \"resale\"") {
            try await f.exchange.requestLicence(licensee, federation: "alpha", LicenceRequest(entitlements: ["resale"]))
        }
        let own = try await f.exchange.requestLicence(
            participant,
            federation: "alpha",
            LicenceRequest(entitlements: ["inference"])
        )
        #expect(own.status == "granted")
        _ = try keys.verifiedLicence(own, for: f.members["participant"]!.publicKey)

        // The operator grants; the licence is in the log, and a doctored proof is refused.
        let granted = try await f.exchange.decide(op, id: asked.id, LicenceDecision(action: "grant", reason: "paid"))
        let signed = try keys.verifiedLicence(granted, for: licenseeKey.publicKey)
        #expect(signed.licence.versions == 1...1 && signed.licence.deliveryLimit == 3)
        #expect(signed.licence.entitlements == .inference)
        #expect(signed.licence.notAfter - signed.licence.notBefore == 30 * 86_400)
        await refuses(.conflict, "is granted; it cannot be granted") {
            try await f.exchange.decide(op, id: asked.id, LicenceDecision(action: "grant"))
        }
        var doctored = granted
        doctored.proof!.index += 1
        #expect(throws: LicensingError.self) { try keys.verifiedLicence(doctored, for: licenseeKey.publicKey) }
        doctored = granted
        doctored.proof!.entry = own.proof!.entry
        #expect(throws: LicensingError.self) { try keys.verifiedLicence(doctored, for: licenseeKey.publicKey) }
        doctored = granted
        doctored.proof = nil
        let missing = #expect(throws: LicensingError.self) {
            try keys.verifiedLicence(doctored, for: licenseeKey.publicKey)
        }
        #expect(missing?.message == "licence \(granted.id) came without its audit-log proof")
        #expect(throws: LicensingError.self) {
            try keys.verifiedLicence(granted, for: f.members["participant"]!.publicKey)
        }

        // Three deliveries, each a fresh container that opens to the registry's file; then none.
        let file = try await f.exchange.store.read { db in
            try Data.fetchOne(db, sql: "SELECT file FROM versions WHERE federation = 'alpha' AND version = 1")
        }
        var deliveryIDs: Set<[UInt8]> = []
        for _ in 0..<3 {
            let container = try await f.exchange.deliver(licensee, id: asked.id, version: 1)
            let (header, payload) = try Container.open(
                container,
                licence: signed,
                identity: licenseeKey.publicKey,
                deliveryKey: delivery,
                brokerLicenceKey: keys.licence,
                now: unixTime()
            )
            #expect(payload == Array(try #require(file)))
            #expect(Hex.encode(header.plaintextDigest) == version.fileDigest)
            #expect(try ModelFile.decode(payload).model.parameters.count == 9)
            deliveryIDs.insert(header.deliveryID)
        }
        #expect(deliveryIDs.count == 3)
        await refuses(.forbidden, "has used its 3 deliveries") {
            try await f.exchange.deliver(licensee, id: asked.id, version: 1)
        }
        await refuses(.forbidden, "holds no licence \(asked.id)") {
            try await f.exchange.deliver(participant, id: asked.id, version: 1)
        }
        await refuses(.forbidden, "holds no licence \(asked.id)") {
            try await f.exchange.licence(participant, id: asked.id)
        }
        await refuses(.forbidden, "covers versions 1–1, not 2") {
            try await f.exchange.deliver(participant, id: own.id, version: 2)
        }

        // Revoked: no more deliveries. Refused: never granted.
        _ = try await f.exchange.decide(
            op,
            id: own.id,
            LicenceDecision(action: "revoke", reason: "left the federation")
        )
        await refuses(.forbidden, "is revoked, not granted") {
            try await f.exchange.deliver(participant, id: own.id, version: 1)
        }
        await refuses(.conflict, "is revoked; it cannot be revoked") {
            try await f.exchange.decide(op, id: own.id, LicenceDecision(action: "revoke", reason: "again"))
        }
        let second = try await f.exchange.requestLicence(
            licensee,
            federation: "alpha",
            LicenceRequest(entitlements: ["fine-tuning"])
        )
        #expect(try await f.exchange.decide(op, id: second.id, LicenceDecision(action: "refuse")).status == "refused")
        #expect(
            try await f.exchange.licences(op, federation: "alpha").map(\.status).sorted() == [
                "granted", "refused", "revoked",
            ]
        )

        var actions: [String: Int] = [:]
        try f.log.forEachEntry(in: 0..<f.log.size) { _, bytes, _ in
            actions[try AuditEntry(decoding: bytes).action, default: 0] += 1
        }
        #expect(actions["model.publish"] == 1 && actions["licence.request"] == 3 && actions["licence.issue"] == 2)
        #expect(actions["licence.use"] == 3 && actions["model.deliver"] == 3)
        #expect(actions["licence.revoke"] == 1 && actions["licence.refuse"] == 1)
    }

    /// Participants' scores of a round's model are averaged by row count into the version
    /// published from it; a lone score is not published; bad or changed scores are refused.
    @Test func federatedEvaluationIsAveragedByRowCount() async throws {
        let f = try await Fixture(participants: 1)
        defer { _ = system("rm -rf '\(f.folder)'") }
        let op = try await f.caller(f.operatorKey)
        let participant = try await f.caller(f.members["participant"]!)
        let p1 = try await f.caller(f.members["p1"]!)
        let digest = Hex.encode(try await f.exchange.model(participant, federation: "alpha").digest)
        func report(_ samples: Int, _ accuracy: Double, _ logLoss: Double, round: Int = 0) -> EvaluationReport {
            EvaluationReport(
                round: round,
                parametersDigest: digest,
                samples: samples,
                accuracy: accuracy,
                logLoss: logLoss
            )
        }
        let mine = report(100, 0.75, 0.5)
        #expect(try await f.exchange.reportEvaluation(participant, federation: "alpha", mine) == mine)
        // The same score again is accepted (a node that restarts reports it again); another is not.
        #expect(try await f.exchange.reportEvaluation(participant, federation: "alpha", mine) == mine)
        await refuses(.conflict, "already reported a different score for round 0") {
            try await f.exchange.reportEvaluation(participant, federation: "alpha", report(100, 0.8, 0.5))
        }
        await refuses(.notFound, "federation alpha has no model of round 7") {
            try await f.exchange.reportEvaluation(p1, federation: "alpha", report(10, 0.5, 0.5, round: 7))
        }
        var other = report(10, 0.5, 0.5)
        other.parametersDigest = String(repeating: "0", count: 64)
        await refuses(.conflict, "the model of round 0 has digest \(digest.prefix(16))…, not 0000000000000000…") {
            try await f.exchange.reportEvaluation(p1, federation: "alpha", other)
        }
        for bad in [report(0, 0.5, 0.5), report(10, 1.5, 0.5), report(10, 0.5, -1), report(10, 0.5, 0.5, round: -1)] {
            await refuses(.malformed, "1–10^9 samples, accuracy 0–1 and log-loss 0–1000") {
                try await f.exchange.reportEvaluation(p1, federation: "alpha", bad)
            }
        }
        await refuses(.forbidden, "is not a participant of federation alpha") {
            try await f.exchange.reportEvaluation(
                try await f.caller(f.members["licensee"]!),
                federation: "alpha",
                report(10, 0.5, 0.5)
            )
        }
        await refuses(.forbidden, "is not a participant of federation alpha") {
            try await f.exchange.reportEvaluation(
                try await f.caller(f.members["outsider"]!),
                federation: "alpha",
                report(10, 0.5, 0.5)
            )
        }
        _ = try await f.exchange.reportEvaluation(p1, federation: "alpha", report(300, 0.5, 0.25))

        let version = try await f.exchange.publish(
            op,
            federation: "alpha",
            PublishRequest(description: "m", offer: LicenceOffer())
        )
        // (100 × 0.75 + 300 × 0.5) / 400 and (100 × 0.5 + 300 × 0.25) / 400.
        #expect(version.metrics == ["accuracy": 0.5625, "log-loss": 0.3125, "evaluators": 2, "evaluation-rows": 400])
        let keys = try BrokerDeliveryKeys(try await f.exchange.info(), broker: f.broker)
        #expect(version.isSigned(by: keys.licence))
        var inflated = version
        inflated.metrics["accuracy"] = 0.99
        #expect(!inflated.isSigned(by: keys.licence))

        // Beta's one participant scores its model alone: nothing is published for it.
        let outsider = try await f.caller(f.members["outsider"]!)
        var lone = report(50, 1, 0)
        lone.parametersDigest = Hex.encode(try await f.exchange.model(outsider, federation: "beta").digest)
        _ = try await f.exchange.reportEvaluation(outsider, federation: "beta", lone)
        let beta = try await f.exchange.publish(
            op,
            federation: "beta",
            PublishRequest(description: "m", offer: LicenceOffer())
        )
        #expect(beta.metrics.isEmpty)

        var evaluated = 0
        try f.log.forEachEntry(in: 0..<f.log.size) { _, bytes, _ in
            if try AuditEntry(decoding: bytes).action == "model.evaluate" { evaluated += 1 }
        }
        #expect(evaluated == 3)
    }

    /// A new round makes a new version whose lineage starts after the last one; a grant covers
    /// the range the operator chooses, and a container outside it is refused.
    @Test func grantsCoverTheChosenVersions() async throws {
        let f = try await Fixture()
        defer { _ = system("rm -rf '\(f.folder)'") }
        let op = try await f.caller(f.operatorKey)
        let participant = try await f.caller(f.members["participant"]!)
        let licensee = try await f.caller(f.members["licensee"]!)
        let base = try ModelFile.decode(try await f.exchange.model(participant, federation: "alpha").file).model
        /// Stores the model of `round` as if a round with `contributors` inputs had produced it.
        func finishRound(_ round: Int, contributors: Int) async throws {
            var model = base
            model.parameters = model.parameters.map { $0 + Float(round) }
            try await f.exchange.store.write { db in
                try Exchange.storeModel(
                    db,
                    federation: "alpha",
                    round: round,
                    digest: try FederatedModel.digest(model),
                    parameters: model.parameters,
                    contributors: contributors
                )
            }
        }
        let publish = PublishRequest(description: "m", offer: LicenceOffer(autoGrantParticipants: false))
        try await finishRound(1, contributors: 3)
        try await finishRound(2, contributors: 4)
        let v1 = try await f.exchange.publish(op, federation: "alpha", publish)
        #expect(v1.rounds == [1, 2] && v1.contributors == [3, 4])
        try await finishRound(3, contributors: 5)
        let v2 = try await f.exchange.publish(op, federation: "alpha", publish)
        #expect(v2.version == 2 && v2.rounds == [3] && v2.contributors == [5] && v2.fileDigest != v1.fileDigest)

        func ask() async throws -> String {
            try await f.exchange.requestLicence(
                licensee,
                federation: "alpha",
                LicenceRequest(entitlements: ["inference"])
            )
            .id
        }
        let all = try await f.exchange.decide(op, id: try await ask(), LicenceDecision(action: "grant"))
        #expect(all.versions == [1, 2])
        let id = try await ask()
        for (first, last) in [(3, 3), (0, 2), (2, 1)] {
            await refuses(.malformed, "not \(first)–\(last)") {
                try await f.exchange.decide(
                    op,
                    id: id,
                    LicenceDecision(action: "grant", firstVersion: first, lastVersion: last)
                )
            }
        }
        await refuses(.malformed, "belong to a grant, not a refuse") {
            try await f.exchange.decide(op, id: id, LicenceDecision(action: "refuse", lastVersion: 2))
        }
        let later = try await f.exchange.decide(
            op,
            id: id,
            LicenceDecision(action: "grant", firstVersion: 2, lastVersion: 9)
        )
        #expect(later.status == "granted" && later.versions == [2, 9])
        await refuses(.forbidden, "covers versions 2–9, not 1") {
            try await f.exchange.deliver(licensee, id: id, version: 1)
        }
        await refuses(.notFound, "alpha has no version 3") {
            try await f.exchange.deliver(licensee, id: id, version: 3)
        }
        #expect(try await f.exchange.deliver(licensee, id: id, version: 2).count > 0)

        // Each caller sees its own licences, and only those.
        let own = try await f.exchange.ownLicences(licensee)
        #expect(Set(own.map(\.id)) == [all.id, id] && own.allSatisfy { $0.proof == nil && $0.status == "granted" })
        #expect(try await f.exchange.ownLicences(participant).isEmpty)
    }
}
