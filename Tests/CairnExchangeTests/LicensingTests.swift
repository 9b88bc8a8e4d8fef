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
}
