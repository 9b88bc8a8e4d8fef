import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnWire
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@testable import CairnBroker

@Suite struct MultiFederationTests {
    /// Three node homes each enrol in two federations of one broker with their one key, and take
    /// part in both federations' rounds at once: each enrolment chosen by its federation, each
    /// with its own round state and witnessed checkpoint in its own folder. A home holding two
    /// enrolments refuses to guess which one is meant.
    @Test func oneHomeTrainsInTwoFederations() async throws {
        var policy = RoundPolicy(dropoutFraction: 0.3, corruptFraction: 0)
        policy.deadlines = PhaseDeadlines(advertise: 600, share: 600, mask: 600, check: 600, unmask: 600)
        var settings = TestClock().settings
        settings.now = { unixTime() }  // the nodes sign with the real clock
        let fixture = try await Fixture(policy: policy, settings: settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let op = try await fixture.caller(fixture.operatorKey)
        let federations = ["delta", "gamma"]
        for federation in federations {
            try await fixture.exchange.createFederation(op, Fixture.spec(federation, policy: policy))
        }
        let app = Application(
            router: BrokerServer.router(fixture.exchange, logger: quiet),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        let events = Reports()
        try await app.test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)"
            var nodes: [(home: String, identity: NodeIdentity)] = []
            for i in 0..<3 {
                let home = fixture.folder + "/node\(i)"
                let identity = try NodeIdentity.create(
                    home: home,
                    passphrase: SecretBytes(copying: Array("passphrase \(i)".utf8)),
                    parameters: .interactive
                )
                for federation in federations {
                    let invite = try await fixture.exchange.invite(
                        op,
                        federation: federation,
                        InviteRequest(role: .participant)
                    )
                    let (enrolment, record) = try await Enrolment.enrol(url: url, code: invite.code, identity: identity)
                    #expect(
                        record.federation == federation && record.fingerprint == identity.identity.publicKey.fingerprint
                    )
                    let held = try enrolment.write(home: home)
                    #expect(
                        held.folder
                            == "\(home)/enrolments/\(federation)@\(Hex.encode(fixture.broker.rawRepresentation).prefix(16))"
                    )
                    // The same enrolment again would overwrite the first: refused.
                    #expect(throws: ExchangeError.self) { try enrolment.write(home: home) }
                }
                nodes.append((home, identity))
            }
            let ambiguous = await #expect(throws: ExchangeError.self) {
                try await Participant.connect(home: nodes[0].home, identity: nodes[0].identity)
            }
            #expect(
                ambiguous?.message.hasPrefix(
                    "\(nodes[0].home) holds 2 enrolments: choose one with --federation (delta@"
                ) == true
            )
            let unknown = await #expect(throws: ExchangeError.self) {
                try await Participant.connect(home: nodes[0].home, federation: "alpha", identity: nodes[0].identity)
            }
            #expect(
                unknown?.message.hasPrefix("\(nodes[0].home) is not enrolled in a federation alpha; it holds delta@")
                    == true
            )
            for federation in federations {
                _ = try await fixture.exchange.training(
                    op,
                    federation: federation,
                    TrainingRequest(action: "start", rounds: 1)
                )
            }
            let ticker = fixture.roundClock()
            defer { ticker.cancel() }
            let rows = Fixture.rows
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, node) in nodes.enumerated() {
                    for federation in federations {
                        group.addTask {
                            var participant = try await Participant.connect(
                                home: node.home,
                                federation: federation,
                                identity: node.identity
                            )
                            participant.pollInterval = 0.05
                            try await participant.run(data: rows, evaluation: nil, rounds: nil) { event in
                                let line = event.testLine
                                if let line {
                                    events.lines.withLock { $0["node\(i) \(federation)", default: []].append(line) }
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let reports = events.lines.withLock { $0 }
        #expect(reports.count == 6)
        for (who, lines) in reports {
            #expect(lines == ["finished 1: included, 1 counted", "stopped, 1 counted"], "\(who)")
        }
        for i in 0..<3 {
            let held = try Enrolment.all(home: fixture.folder + "/node\(i)")
            #expect(held.map(\.enrolment.federation) == federations)
            for enrolment in held {
                // Each enrolment witnessed its own federation's checkpoint and kept no round state.
                #expect(DurableFile.exists(enrolment.folder + "/" + Witness.stateFileName))
                #expect(!DurableFile.exists(enrolment.folder + "/round.state"))
            }
        }
        for federation in federations {
            let round = try await fixture.exchange.store.read { db in
                try Row.fetchOne(
                    db,
                    sql: "SELECT phase, included FROM rounds WHERE federation = ? AND round = 1",
                    arguments: [federation]
                )
            }
            #expect(round?["phase"] == "finished" && round?["included"] == 3)
        }
    }

    /// A home enrolled before homes held several keeps its one enrolment at its top level (its
    /// state in the home itself), and a new enrolment beside it makes two.
    @Test func aHomeFromBeforeKeepsItsEnrolment() throws {
        let home = String(cString: mkdtemp(strdup("/tmp/cairn-home-test-XXXXXX")))
        defer { _ = system("rm -rf '\(home)'") }
        let brokerKey = String(repeating: "ab", count: 32)
        let old = Enrolment(
            broker: "http://127.0.0.1:7400",
            brokerKey: brokerKey,
            federation: "alpha",
            role: .participant
        )
        let encoder = JSONEncoder()
        try DurableFile.write(Array(try encoder.encode(old)), to: home + "/enrolment.json", replace: false)
        let held = try Enrolment.select(home: home, federation: nil)
        #expect(held.enrolment == old && held.folder == home)
        // The same federation at the same broker is that enrolment already.
        #expect(throws: ExchangeError.self) { try old.write(home: home) }
        var other = old
        other.federation = "beta"
        try other.write(home: home)
        #expect(try Enrolment.all(home: home).map(\.name) == ["alpha@abababababababab", "beta@abababababababab"])
        #expect(
            try Enrolment.select(home: home, federation: "beta@abababababababab").folder == home
                + "/enrolments/beta@abababababababab"
        )
        #expect(try Enrolment.select(home: home, federation: "alpha").folder == home)
    }
}

/// The lines each node reported, by node and federation.
private final class Reports: Sendable {
    let lines = Mutex<[String: [String]]>([:])
}
