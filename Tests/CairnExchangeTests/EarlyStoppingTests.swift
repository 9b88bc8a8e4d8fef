import CairnAudit
import CairnExchange
import CairnWire
import Foundation
import GRDB
import Testing

@testable import CairnBroker

/// Federated early stopping: the rule, and the broker stopping a federation whose federated
/// evaluation loss has stopped improving.
@Suite struct FederatedEarlyStoppingTests {
    /// The best scored round so far, once `patience` scored rounds after it have not brought the
    /// loss below 0.9999 of it.
    @Test func theRule() {
        let losses: [(round: Int, loss: Double)] = [(1, 1.0), (2, 0.8), (4, 0.79995), (5, 0.9)]
        #expect(FederatedModel.plateau(losses, patience: 2).map { [Double($0.round), $0.loss] } == [2, 0.8])
        #expect(FederatedModel.plateau(losses, patience: 3) == nil)
        #expect(FederatedModel.plateau(Array(losses.prefix(3)), patience: 2) == nil)
        #expect(FederatedModel.plateau(losses + [(6, 0.7)], patience: 2) == nil)
        #expect(FederatedModel.plateau(losses, patience: 0) == nil)
        #expect(FederatedModel.plateau([(1, .nan), (2, 0.5), (3, 0.6)], patience: 1).map(\.round) == 2)
        // One participant claiming a billion rows and a loss of 100 does not move the median of three.
        #expect(FederatedModel.median([0.61, 100, 0.6]) == 0.61)
        #expect(FederatedModel.median([0.5, 0.7]) == 0.6)
        #expect(FederatedModel.median([]) == nil)
        #expect(FederatedModel.plateau([], patience: 1) == nil)
    }

    /// A federation with patience 2 and enough participants for a round: scores of rounds 1–4
    /// (medians 0.6, 0.66, none: one scorer, 0.6) stop it instead of the round opening, with the
    /// reason in its status and in the audit log; started again, it looks only at the models
    /// after the restart, and the round opens.
    @Test func theBrokerStopsAFederationThatNoLongerImproves() async throws {
        // Three active participants: a round would open at the next tick.
        let fixture = try await Fixture(
            policy: RoundPolicy(patience: 2),
            participants: 2,
            settings: TestClock().settings
        )
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let op = try await fixture.caller(fixture.operatorKey)
        _ = try await fixture.exchange.training(op, federation: "alpha", TrainingRequest(action: "start", rounds: 10))
        func score(_ round: Int, _ scores: [(samples: Int, loss: Double)]) async throws {
            try await fixture.exchange.store.write { db in
                try Exchange.storeModel(
                    db,
                    federation: "alpha",
                    round: round,
                    digest: [UInt8](repeating: UInt8(round), count: 32),
                    parameters: [Float](repeating: 0, count: 9),
                    contributors: 3
                )
                for (k, s) in scores.enumerated() {
                    try db.execute(
                        sql:
                            "INSERT INTO evaluations (federation, round, member, samples, accuracy, log_loss) VALUES ('alpha', ?, ?, ?, 0.5, ?)",
                        arguments: [round, Data([UInt8(k)]), s.samples, s.loss]
                    )
                }
            }
        }
        try await score(1, [(100, 0.5), (300, 0.7)])  // median 0.6: rows claimed do not weigh
        try await score(2, [(100, 0.66), (300, 0.66)])
        try await score(3, [(100, 0.01)])  // one evaluator: not a federated score
        try await score(4, [(200, 0.6), (200, 0.6)])  // not below 0.6 · 0.9999
        await fixture.exchange.tick()
        let status = try await fixture.exchange.status(op, federation: "alpha")
        let reason = "early stop: the median log loss has not improved for 2 scored rounds since its best, round 1"
        #expect(status.state == "stopped" && status.roundsLeft == 0)
        #expect(status.stoppedBecause == reason)
        let stops = try (0..<fixture.log.size).map { try fixture.log.entry($0) }.filter { $0.action == "training.stop" }
        #expect(stops.map(\.reason) == [reason])
        #expect(stops.map(\.actor) == [await fixture.exchange.brokerActor])
        _ = try await fixture.exchange.training(op, federation: "alpha", TrainingRequest(action: "start", rounds: 3))
        await fixture.exchange.tick()
        let again = try await fixture.exchange.status(op, federation: "alpha")
        #expect(again.state == "training" && again.roundsLeft == 3 && again.stoppedBecause == nil)
        #expect(again.rounds.map(\.phase) == ["advertise"])  // no score since the restart: a round opened
    }

    /// A policy's patience is 0 to 1000 scored rounds.
    @Test func patienceIsBounded() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let op = try await fixture.caller(fixture.operatorKey)
        let refused = await #expect(throws: ExchangeError.self) {
            try await fixture.exchange.createFederation(op, Fixture.spec("gamma", policy: RoundPolicy(patience: 1001)))
        }
        #expect(refused?.message == "patience must be 0 to 1000 scored rounds")
    }
}
