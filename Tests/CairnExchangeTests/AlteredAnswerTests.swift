import CairnAudit
import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnSecAgg
import CairnWire
import Foundation
import GRDB
import Glibc
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@testable import CairnBroker

@Suite struct AlteredAnswerTests {
    /// Three `Participant.run`s over loopback; a proxy alters the key list one node fetches in
    /// round 1. That node must sit the round out with the reason (not exit, not answer it), and
    /// take part in the next round, whose sum holds its input; the round it left aborts and is
    /// never called finished; no node keeps round state once training stops.
    @Test func anAlteredKeyListIsSatOutAndTheNodeGoesOn() async throws {
        var policy = RoundPolicy(dropoutFraction: 0.3, corruptFraction: 0)
        // The share deadline (far beyond what loopback needs) ends round 1, which the altered node
        // never answers; the other phases close when everyone answered, long before theirs.
        policy.deadlines = PhaseDeadlines(advertise: 600, share: 8, mask: 600, check: 600, unmask: 600)
        var settings = TestClock().settings
        settings.now = { unixTime() }  // the nodes sign with the real clock
        let fixture = try await Fixture(policy: policy, settings: settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let op = try await fixture.caller(fixture.operatorKey)
        try await fixture.exchange.createFederation(op, Fixture.spec("delta", policy: policy))
        let app = Application(
            router: BrokerServer.router(fixture.exchange, logger: quiet),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        let seen = Seen()
        try await app.test(.live) { client in
            // The first share-phase view of round 1 a node fetches: one hex digit of its key
            // list changed near the end (inside a signature), as an attacker on the path would.
            let proxy = try await RecordingProxy.start(
                to: client.port!,
                alter: { line, answer in
                    guard line.hasPrefix("GET /v1/federations/delta/round") else { return nil }
                    let text = String(decoding: answer, as: UTF8.self)
                    guard text.contains("\"phase\":\"share\""), text.contains("\"round\":1,"),
                        let value = text.range(of: "\"message\":\""),
                        let end = text[value.upperBound...].firstIndex(of: "\""),
                        text.distance(from: value.upperBound, to: end) > 20
                    else { return nil }
                    return seen.altered.withLock { first -> [UInt8]? in
                        guard first == nil else { return nil }
                        first = line
                        var bytes = answer
                        let at =
                            text.utf8.distance(from: text.utf8.startIndex, to: end.samePosition(in: text.utf8)!) - 10
                        bytes[at] = bytes[at] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
                        return bytes
                    }
                }
            )
            let url = "http://127.0.0.1:\(proxy.port)"
            var nodes: [(home: String, identity: NodeIdentity)] = []
            for i in 0..<3 {
                let home = fixture.folder + "/node\(i)"
                let identity = try NodeIdentity.create(
                    home: home,
                    passphrase: SecretBytes(copying: Array("passphrase \(i)".utf8)),
                    parameters: .interactive
                )
                let invite = try await fixture.exchange.invite(
                    op,
                    federation: "delta",
                    InviteRequest(role: .participant)
                )
                try await Enrolment.enrol(url: url, code: invite.code, identity: identity).0.write(home: home)
                nodes.append((home, identity))
            }
            _ = try await fixture.exchange.training(
                op,
                federation: "delta",
                TrainingRequest(action: "start", rounds: 1)
            )
            let ticker = fixture.roundClock()
            defer { ticker.cancel() }
            let rows = Fixture.rows
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, node) in nodes.enumerated() {
                    group.addTask {
                        var participant = try await Participant.connect(home: node.home, identity: node.identity)
                        participant.pollInterval = 0.05
                        try await participant.run(data: rows, evaluation: nil, rounds: nil) { event in
                            let line = event.testLine
                            if let line { seen.events.withLock { $0[i, default: []].append(line) } }
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await proxy.stop()
        }
        #expect(seen.altered.withLock { $0 } != nil)
        let reports = seen.events.withLock { $0 }
        // The node whose key list was altered sat round 1 out, saying why.
        let victims = reports.filter {
            $0.value.contains { $0.hasPrefix("missed 1:") && !$0.hasPrefix("missed 1: the round aborted") }
        }
        #expect(victims.count == 1, "\(reports)")
        for (i, lines) in reports {
            // Round 1 aborted (said so, never called finished); round 2 finished with every
            // node's input, and each node then saw training stop.
            #expect(!lines.contains { $0.hasPrefix("finished 1") }, "node \(i): \(lines)")
            #expect(
                lines.suffix(2) == ["finished 2: included, 1 counted", "stopped, 1 counted"],
                "node \(i): \(lines)"
            )
            #expect(
                !DurableFile.exists(
                    try Enrolment.select(home: fixture.folder + "/node\(i)", federation: nil).folder + "/round.state"
                )
            )
        }
        #expect(reports.count == 3)
        // The node that sat round 1 out sent no share answer for it: the broker took the others'.
        let entries = try (0..<fixture.log.size).map { try fixture.log.entry($0) }
        #expect(entries.filter { $0.action == "round.share" && $0.objectID == "delta/1" }.count == 2)
        let rounds = try await fixture.exchange.store.read { db in
            try String.fetchAll(db, sql: "SELECT phase FROM rounds WHERE federation = 'delta' ORDER BY round")
        }
        #expect(rounds == ["aborted", "finished"])
    }
}

/// What the proxy and the nodes saw, shared with their closures.
private final class Seen: Sendable {
    let altered = Mutex<String?>(nil)
    let events = Mutex<[Int: [String]]>([:])
}

extension Fixture {
    /// The daemon's round clock for a live test: ticks the exchange every 50 ms until cancelled.
    func roundClock() -> Task<Void, Never> {
        Task { [exchange] in
            while !Task.isCancelled {
                await exchange.tick()
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// 60 rows of the fixture's schema, the same every time.
    static var rows: Dataset {
        var features: [Float] = []
        var labels: [Int32] = []
        for row in 0..<60 {
            features += [Float(row % 7) / 7, Float(row % 5) / 5]
            labels.append(Int32(row % 3))
        }
        return Dataset(schema: schema, features: features, labels: labels)
    }
}

extension Participant.Event {
    /// The event in one line for a test to compare: rounds missed and finished, training
    /// stopped and retries; nil for the others.
    var testLine: String? {
        switch self {
        case .roundMissed(let round, let reason): "missed \(round): \(reason)"
        case .roundFinished(let round, let included, let counted, _, _, _):
            "finished \(round): \(included ? "included" : "without"), \(counted) counted"
        case .trainingStopped(let counted): "stopped, \(counted) counted"
        case .retrying(let failure, _): "retry: \(failure.message)"
        default: nil
        }
    }
}
