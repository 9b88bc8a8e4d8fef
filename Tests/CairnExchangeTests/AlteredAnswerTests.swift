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
        // The share deadline (far beyond what loopback needs) ends round 1, which the altered node
        // never answers; the other phases close when everyone answered, long before theirs.
        let run = try await Self.threeNodes(
            deadlines: PhaseDeadlines(advertise: 600, share: 8, mask: 600, check: 600, unmask: 600),
            rounds: 1
        ) { line, text in
            // The first share-phase view of round 1 a node fetches: one hex digit of its key
            // list changed near the end (inside a signature), as an attacker on the path would.
            guard line.hasPrefix("GET /v1/federations/delta/round"), text.contains("\"phase\":\"share\""),
                text.contains("\"round\":1,")
            else { return nil }
            return Self.flipDigit(in: text, field: "message", before: 10)
        }
        let reports = run.reports
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
        }
        // The node that sat round 1 out sent no share answer for it: the broker took the others'.
        #expect(run.entries.filter { $0.action == "round.share" && $0.objectID == "delta/1" }.count == 2)
        #expect(run.rounds == ["aborted", "finished"])
    }

    /// The broker refuses a node's answer: a proxy alters the round configuration one node
    /// fetches in round 1's advertise phase (one digit of the base-model digest), so the node
    /// advertises keys for a configuration the broker does not have, and the broker answers 400.
    /// The node sits the round out with the broker's reason and its saved state for the round
    /// discarded (it never sends that answer again); the round, which needs all three, aborts
    /// at the advertise deadline, and the next rounds sum all three.
    @Test func anAnswerTheBrokerRefusesIsSatOutAndNeverResent() async throws {
        let run = try await Self.threeNodes(
            deadlines: PhaseDeadlines(advertise: 8, share: 600, mask: 600, check: 600, unmask: 600),
            rounds: 2
        ) { line, text in
            guard line.hasPrefix("GET /v1/federations/delta/round"), text.contains("\"phase\":\"advertise\""),
                text.contains("\"round\":1,")
            else { return nil }
            // The configuration: text(federation) = u32 length ‖ "delta" (9 bytes), u64 round, then
            // the 32-byte base-model digest; a digit in the middle of the digest.
            return Self.flipDigit(in: text, field: "config", at: 2 * (9 + 8) + 20)
        }
        let reports = run.reports
        let victims = reports.filter {
            $0.value.first
                == "missed 1: its advertise answer was not accepted: the broker refused (400): AdvertiseKeys for another round configuration: refused as a replay [state discarded]"
        }
        #expect(victims.count == 1, "\(reports)")
        for (i, lines) in reports {
            // Round 1 waited for the third advertisement until its deadline and aborted; the two
            // rounds that training still had then summed all three inputs.
            #expect(lines.count == (victims.keys.contains(i) ? 5 : 4), "node \(i): \(lines)")
            #expect(
                lines.suffix(4) == [
                    "missed 1: the round aborted", "finished 2: included, 1 counted",
                    "finished 3: included, 2 counted", "stopped, 2 counted",
                ],
                "node \(i): \(lines)"
            )
        }
        // The broker refused one advertise answer of round 1, once: it was never resent.
        let refused = run.entries.filter {
            $0.action == "request.refused" && $0.objectID == "POST /v1/federations/delta/rounds/1/advertise"
        }
        #expect(
            refused.map(\.reason) == [
                "400 malformed: AdvertiseKeys for another round configuration: refused as a replay"
            ]
        )
        #expect(run.entries.filter { $0.action == "round.advertise" && $0.objectID == "delta/1" }.count == 2)
        #expect(run.rounds == ["aborted", "finished", "finished"])
    }

    /// `text` with one hex digit of the JSON string `field` changed: the one `at` characters into
    /// the value, or `before` characters before its end.
    static func flipDigit(in text: String, field: String, at: Int? = nil, before: Int? = nil) -> [UInt8]? {
        guard let value = text.range(of: "\"\(field)\":\""),
            let end = text[value.upperBound...].firstIndex(of: "\"")
        else { return nil }
        let start = text.utf8.distance(from: text.utf8.startIndex, to: value.upperBound.samePosition(in: text.utf8)!)
        let length = text.distance(from: value.upperBound, to: end)
        let offset = at ?? (length - (before ?? 1))
        guard length > 20, (0..<length).contains(offset) else { return nil }
        var bytes = Array(text.utf8)
        bytes[start + offset] = bytes[start + offset] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        return bytes
    }

    /// What ``threeNodes(deadlines:rounds:alter:)`` saw.
    struct Run {
        /// Each node's round reports (``Participant/Event/testLine``).
        var reports: [Int: [String]]
        /// The audit log's entries.
        var entries: [AuditEntry]
        /// The phase each round of `delta` ended in.
        var rounds: [String]
        /// Each stored model of `delta` by round: its pooled standardisation, if any.
        var standardisations: [Standardisation?]
        /// The server optimiser's stored states of `delta`: round and number of values.
        var optimiserStates: [[Int]]
        /// The latest stored server optimiser state's values (SCAFFOLD: `c`), if any.
        var optimiserState: [Float]?
        /// Each node's enrolment folder files that hold SCAFFOLD's control variates (name to
        /// bytes; none outside SCAFFOLD federations).
        var controlFiles: [Int: [String: [UInt8]]] = [:]
    }

    /// Three nodes enrolled in a new federation `delta` through a proxy that passes each answer
    /// (request line, text) to `alter`, which alters the first one it returns bytes for; they run
    /// `rounds` rounds until training stops. Checks that one answer was altered and that no node
    /// keeps round state at the end.
    static func threeNodes(
        deadlines: PhaseDeadlines,
        rounds: Int,
        standardisation: RoundPolicy.Standardising? = nil,
        serverOptimiser: ServerOptimiser? = nil,
        evaluate: Bool = false,
        data: @escaping @Sendable (Int) -> Dataset = { _ in Fixture.rows },
        alter: (@Sendable (String, String) -> [UInt8]?)?
    ) async throws -> Run {
        var policy = RoundPolicy(
            dropoutFraction: 0.3,
            corruptFraction: 0,
            standardisation: standardisation,
            serverOptimiser: serverOptimiser
        )
        policy.deadlines = deadlines
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
            let proxy = try await RecordingProxy.start(
                to: client.port!,
                alter: { line, answer in
                    seen.altered.withLock { first -> [UInt8]? in
                        guard first == nil, let altered = alter?(line, String(decoding: answer, as: UTF8.self)) else {
                            return nil
                        }
                        first = line
                        return altered
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
                TrainingRequest(action: "start", rounds: rounds)
            )
            let ticker = fixture.roundClock()
            defer { ticker.cancel() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, node) in nodes.enumerated() {
                    group.addTask {
                        var participant = try await Participant.connect(home: node.home, identity: node.identity)
                        participant.pollInterval = 0.05
                        let state = try Enrolment.select(home: node.home, federation: nil).folder + "/round.state"
                        try await participant.run(data: data(i), evaluation: evaluate ? data(i) : nil, rounds: nil) {
                            event in
                            guard var line = event.testLine else { return }
                            // A refused answer's round state is gone before the node says so: a
                            // restart could not send that answer again.
                            if line.contains("answer was not accepted") {
                                line += DurableFile.exists(state) ? " [state kept]" : " [state discarded]"
                            }
                            seen.events.withLock { $0[i, default: []].append(line) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await proxy.stop()
        }
        #expect((seen.altered.withLock { $0 } != nil) == (alter != nil))
        var controlFiles: [Int: [String: [UInt8]]] = [:]
        for i in 0..<3 {
            let folder = try Enrolment.select(home: fixture.folder + "/node\(i)", federation: nil).folder
            #expect(!DurableFile.exists(folder + "/round.state"))
            for name in ["scaffold.control", "scaffold.pending"] where DurableFile.exists(folder + "/" + name) {
                controlFiles[i, default: [:]][name] = try DurableFile.read(folder + "/" + name, maximum: 1 << 20)
            }
        }
        return Run(
            reports: seen.events.withLock { $0 },
            entries: try (0..<fixture.log.size).map { try fixture.log.entry($0) },
            rounds: try await fixture.exchange.store.read { db in
                try String.fetchAll(db, sql: "SELECT phase FROM rounds WHERE federation = 'delta' ORDER BY round")
            },
            standardisations: try await fixture.exchange.store.read { db in
                try Data?.fetchAll(
                    db,
                    sql: "SELECT standardisation FROM models WHERE federation = 'delta' ORDER BY round"
                ).map { blob in
                    blob.map { values in
                        let v = Exchange.floats(values)
                        return Standardisation(mean: Array(v[..<(v.count / 2)]), scale: Array(v[(v.count / 2)...]))
                    }
                }
            },
            optimiserStates: try await fixture.exchange.store.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT round, length(state) / 4 AS n FROM optimiser_state WHERE federation = 'delta'"
                )
                .map { [$0["round"], $0["n"]] }
            },
            optimiserState: try await fixture.exchange.store.read { db in
                try Data.fetchOne(
                    db,
                    sql: "SELECT state FROM optimiser_state WHERE federation = 'delta' ORDER BY round DESC LIMIT 1"
                ).map(Exchange.floats)
            },
            controlFiles: controlFiles
        )
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
        case .statisticsPooled(let round, let included):
            "statistics \(round): \(included ? "included" : "not included")"
        case .roundFinished(let round, let included, let counted, _, _, _):
            "finished \(round): \(included ? "included" : "without"), \(counted) counted"
        case .trainingStopped(let counted): "stopped, \(counted) counted"
        case .retrying(let failure, _): "retry: \(failure.message)"
        default: nil
        }
    }
}
