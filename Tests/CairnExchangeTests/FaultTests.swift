import CairnAudit
import CairnCrypto
import CairnExchange
import CairnModels
import CairnSecAgg
import CairnWire
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

@testable import CairnBroker

/// The exchange's clock, moved by the test: deadlines pass without waiting.
final class TestClock: Sendable {
    private let seconds = Mutex(unixTime())

    var now: Int64 { seconds.withLock { $0 } }

    func advance(_ by: Int) { seconds.withLock { $0 += Int64(by) } }

    /// Exchange settings on this clock, with no rate limit in the way of a test's burst.
    var settings: Exchange.Settings {
        var settings = Exchange.Settings()
        settings.now = { self.now }
        settings.requestsPerSecond = 1e9
        settings.burst = 1e9
        settings.anonymousRefusalsPerSecond = .max
        return settings
    }
}

/// Six participants of alpha (`participant`, `p1` … `p5`) taking part in round 1 over HTTP, one
/// request at a time, each with a known input, on a policy that tolerates two dropouts
/// (δ = 0.3: SecAgg+ with k = 5 neighbours, threshold 3, 4 signatures).
struct RoundDriver {
    static let policy = RoundPolicy(dropoutFraction: 0.3, corruptFraction: 0)
    static let names = ["participant", "p1", "p2", "p3", "p4", "p5"]

    var fixture: Fixture
    let clock: TestClock
    let transport: X25519.PublicKey
    var clients: [String: SecAggClient] = [:]
    var inputs: [String: (words: [UInt32], samples: UInt32)] = [:]
    /// Whose masked input the broker accepted.
    var uploaded: Set<String> = []

    init(policy: RoundPolicy = Self.policy) async throws {
        clock = TestClock()
        fixture = try await Fixture(policy: policy, participants: 5, settings: clock.settings)
        transport = fixture.exchange.keys.transport.publicKey
        var generator = SystemRandomNumberGenerator()
        for name in Self.names {
            inputs[name] = (
                (0..<9).map { _ in UInt32.random(in: 0..<(1 << 20), using: &generator) },
                UInt32.random(in: 1...1000, using: &generator)
            )
        }
        _ = try await fixture.exchange.training(
            try await fixture.caller(fixture.operatorKey),
            federation: "alpha",
            TrainingRequest(action: "start", rounds: 1)
        )
        await fixture.exchange.tick()
    }

    /// One request signed by `name` at the test clock's time.
    func call(
        _ client: some TestClientProtocol,
        _ name: String,
        _ method: HTTPRequest.Method,
        _ path: String,
        _ body: [UInt8] = [],
        contentType: String? = nil
    ) async throws -> (status: Int, body: [UInt8]) {
        try await fixture.request(client, fixture.members[name]!, method, path, body, contentType: contentType)
    }

    /// The round as `name` sees it.
    func view(_ client: some TestClientProtocol, _ name: String) async throws -> RoundView {
        let reply = try await call(client, name, .get, "/v1/federations/alpha/round")
        #expect(reply.status == 200)
        return try JSONDecoder().decode(RoundView.self, from: Data(reply.body))
    }

    /// `name`'s answer to the open phase and the path it goes to; nil when its SecAgg+ client
    /// refuses the broker's message (it then takes no further part).
    mutating func answer(_ view: RoundView, _ name: String) throws -> (path: String, body: [UInt8])? {
        let message = try Hex.decode(view.message)
        let base = "/v1/federations/alpha/rounds/\(view.round)/"
        do {
            switch view.phase {
            case "advertise":
                var client = try SecAggClient(
                    config: try RoundConfig(decoding: try Hex.decode(view.config)),
                    identity: fixture.members[name]!
                )
                let body = try client.advertise().encoded
                clients[name] = client
                return (base + "advertise", body)
            case "share":
                return (base + "share", try clients[name]!.shareKeys(try KeyList(decoding: message)).encoded)
            case "mask":
                let input = inputs[name]!
                let masked = try clients[name]!.maskInput(
                    try ShareDelivery(decoding: message),
                    input: input.words,
                    sampleCount: input.samples
                )
                let layout = MaskedUpload(wordCount: masked.words.count, session: masked.session, sender: masked.sender)
                var body: [UInt8] = []
                try layout.encrypt(masked.words, key: try clients[name]!.uploadKey(brokerKey: transport)) { body += $0 }
                return (base + "input", body)
            case "check":
                return (
                    base + "check", try clients[name]!.signSurvivors(try ConsistencyRequest(decoding: message)).encoded
                )
            case "unmask":
                return (base + "unmask", try clients[name]!.unmask(try UnmaskRequest(decoding: message)).encoded)
            default:
                return nil
            }
        } catch is SecAggError {
            return nil
        }
    }

    /// Runs `round` with `dropped` answering nothing from `phase` on; every phase that still
    /// waits for someone closes at its deadline. Returns the round's final phase.
    /// `probe` sees each answer before it is sent, with its sender and path.
    mutating func run(
        _ client: some TestClientProtocol,
        round: Int = 1,
        dropping dropped: Set<String> = [],
        at phase: ExchangePhase = .advertise,
        probe: (_ name: String, _ path: String, _ body: [UInt8]) async throws -> Void = { _, _, _ in }
    ) async throws -> String {
        var gone: Set<String> = []
        for current in ExchangePhase.answering {
            if current == phase { gone.formUnion(dropped) }
            for name in Self.names where !gone.contains(name) {
                let view = try await view(client, name)
                guard view.phase == current.rawValue, view.index >= 0, !view.answered else { continue }
                guard let (path, body) = try answer(view, name) else {
                    gone.insert(name)
                    continue
                }
                try await probe(name, path, body)
                let reply = try await call(client, name, .post, path, body, contentType: "application/octet-stream")
                #expect(reply.status == 202, "\(name) \(current): \(String(decoding: reply.body, as: UTF8.self))")
                if current == .mask { uploaded.insert(name) }
            }
            if try await view(client, "participant").phase == current.rawValue {
                clock.advance(current.deadline(Self.policy.deadlines) + 1)
                await fixture.exchange.tick()
            }
            // A round that ended is followed at once by round 2 (training asked for one
            // finished round), so the outcome is read from round 1's record.
            let ended = try await fixture.exchange.store.read { db in
                try String.fetchOne(
                    db,
                    sql: "SELECT phase FROM rounds WHERE federation = 'alpha' AND round = ?",
                    arguments: [round]
                )!
            }
            if ended == "finished" || ended == "aborted" { return ended }
        }
        return "unfinished"
    }

    /// Checks that round 1 finished with exactly the sum of the inputs the broker accepted:
    /// the stored model is the base model plus that sum, and the audited sum digest is its.
    func expectExactSum() async throws {
        var sum = [UInt32](repeating: 0, count: 9)
        var samples: UInt32 = 0
        for name in uploaded {
            for i in sum.indices { sum[i] &+= inputs[name]!.words[i] }
            samples += inputs[name]!.samples
        }
        let spec = Fixture.spec("alpha", policy: Self.policy)
        let (row, base) = try await fixture.exchange.store.read { db in
            (
                try Row.fetchOne(db, sql: "SELECT * FROM rounds WHERE federation = 'alpha' AND round = 1")!,
                try Exchange.model(db, of: spec, before: 1).model
            )
        }
        #expect(row["phase"] as String == "finished")
        #expect(row["included"] as Int == uploaded.count)
        let expected = try FederatedModel.applying(sum: sum, sampleCount: samples, to: base, policy: Self.policy)
        #expect(Array(row["model_digest"] as Data) == (try FederatedModel.digest(expected)))
        let log = fixture.log
        let aggregate = try #require(
            try (0..<log.size).map { try log.entry($0) }.first { $0.action == "round.aggregate" }
        )
        #expect(aggregate.objectID == "alpha/1")
        #expect(
            aggregate.digests.first?.bytes
                == (try sum.withUnsafeBytes { try BLAKE2b.hash(Array($0), domain: .aggregate) })
        )
        #expect(aggregate.reason == "\(uploaded.count) inputs, \(samples) samples")
    }
}

@Suite struct FaultTests {
    /// Participants who stop answering at each phase: up to the tolerance (two of six) the
    /// round finishes with exactly the sum of the inputs the broker accepted; one more and it
    /// aborts with the reason recorded in the round and the audit log.
    @Test(arguments: ExchangePhase.answering)
    func participantsDropOut(at phase: ExchangePhase) async throws {
        for count in [1, 2, 3] {
            let start = try await RoundDriver()
            defer { _ = system("rm -rf '\(start.fixture.folder)'") }
            let app = Application(router: BrokerServer.router(start.fixture.exchange, logger: quiet))
            let dropped = Set(RoundDriver.names.suffix(count))
            let (outcome, driver) = try await app.test(.router) { client in
                var driver = start
                return (try await driver.run(client, dropping: dropped, at: phase), driver)
            }
            let row = try await driver.fixture.exchange.store.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM rounds WHERE federation = 'alpha' AND round = 1")!
            }
            let log = driver.fixture.log
            let last = try (0..<log.size).map { try log.entry($0) }.filter { $0.objectID == "alpha/1" }
            if count <= 2 {
                #expect(outcome == "finished", "\(count) dropping at \(phase)")
                let participantsAtMask = phase == .advertise || phase == .share || phase == .mask
                #expect(driver.uploaded.count == (participantsAtMask ? 6 - count : 6))
                try await driver.expectExactSum()
            } else {
                #expect(outcome == "aborted", "\(count) dropping at \(phase)")
                let reason: String = row["reason"]
                let expected =
                    switch phase {
                    case .advertise: "only 3 participants advertised keys; the round needs 4 and aborts"
                    case .share: "only 3 participants shared keys; the round needs 4 and aborts"
                    case .mask: "only 3 participants sent masked inputs; the round needs 4 and aborts"
                    case .check: "only 3 participants signed the survivor set; the round needs 4 and aborts"
                    default: "the self-mask seed of participant * has 2 shares; 3 are needed: the round aborts"
                    }
                let (head, tail) = (expected.prefix { $0 != "*" }, expected.drop { $0 != "*" }.dropFirst())
                #expect(reason.hasPrefix(head) && reason.hasSuffix(tail), "\(reason)")
                let entry = try #require(last.last)
                #expect(entry.action == "round.abort" && entry.outcome == .failed && entry.reason == reason)
            }
        }
    }
}

@Suite struct MalformedBodyTests {
    /// A refusal as the client sees it: the status and the problem's message, which must be
    /// a 4xx with a message and leave stored state as it was.
    /// `audited`: the caller is a member, whose refusal is its own entry; a key that is not
    /// enrolled (a failed enrolment) is counted for the minute's summary instead.
    static func refused(
        _ fixture: Fixture,
        _ send: () async throws -> (status: Int, body: [UInt8]),
        _ what: String,
        audited: Bool = true
    ) async throws -> Int {
        let before = try await fixture.state()
        let size = fixture.log.size
        let reply = try await send()
        let problem = try? JSONDecoder().decode(Problem.self, from: Data(reply.body))
        #expect((400..<500).contains(reply.status), "\(what): \(reply.status)")
        #expect(problem.map { !$0.message.isEmpty } == true, "\(what): no message")
        #expect(try await fixture.state() == before, "\(what): state changed")
        #expect(fixture.log.size == size + (audited ? 1 : 0), "\(what): the refusal is not audited as it should be")
        return reply.status
    }

    /// Bodies cut short at every byte, with a byte too many, of the wrong type, too large or
    /// under the wrong content type, for every JSON endpoint: 400, 413 or 415 with a message,
    /// each audited, nothing stored.
    @Test func jsonBodies() async throws {
        let clock = TestClock()
        let fixture = try await Fixture(settings: clock.settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        func encode(_ value: some Encodable) -> [UInt8] { Array(try! JSONEncoder().encode(value)) }
        let endpoints: [(path: String, signer: Ed25519.PrivateKey, valid: [UInt8], wrongTypes: [String])] = [
            (
                "/v1/admin/federations", fixture.operatorKey, encode(Fixture.spec("gamma")),
                [#"{"id": 7}"#, #"{"id": "gamma", "schema": []}"#, "[]", "null", #""gamma""#]
            ),
            (
                "/v1/admin/federations/alpha/invites", fixture.operatorKey, encode(InviteRequest(role: .participant)),
                [#"{"role": "king"}"#, #"{"role": 1}"#, #"{"role": "participant", "validity": "soon"}"#, "{}"]
            ),
            (
                "/v1/admin/federations/alpha/training", fixture.operatorKey,
                encode(TrainingRequest(action: "start", rounds: 2)),
                [#"{"action": 5}"#, #"{"action": "start", "rounds": "two"}"#, #"{"action": "start", "rounds": 2.5}"#]
            ),
            (
                "/v1/enrol", try Ed25519.PrivateKey(),
                encode(
                    EnrolRequest(
                        invite: String(repeating: "00", count: 16),
                        deliveryKey: String(repeating: "ab", count: 32)
                    )
                ),
                [#"{"invite": 1, "deliveryKey": "ab"}"#, #"{"invite": "00"}"#, #"{"deliveryKey": null}"#]
            ),
        ]
        let statuses = try await app.test(.router) { client -> [Int: Int] in
            var statuses: [Int: Int] = [:]
            for (path, key, valid, wrongTypes) in endpoints {
                var corpus: [(String, [UInt8], String?)] = (0..<valid.count).map {
                    ("\(path) cut to \($0) bytes", Array(valid.prefix($0)), "application/json")
                }
                corpus.append(("\(path) with a byte more", valid + [0x7D], "application/json"))
                corpus.append(("\(path) not UTF-8", [0xFF, 0xFE, 0x00], "application/json"))
                corpus += wrongTypes.map { ("\(path) with \($0)", Array($0.utf8), "application/json") }
                corpus.append(("\(path) as text/plain", valid, "text/plain"))
                corpus.append(("\(path) with no content type", valid, nil))
                corpus.append(
                    ("\(path) over 4 MiB", [UInt8](repeating: 0x20, count: (4 << 20) + 1), "application/json")
                )
                for (what, body, type) in corpus {
                    let status = try await Self.refused(
                        fixture,
                        { try await fixture.request(client, key, .post, path, body, contentType: type) },
                        what,
                        audited: path != "/v1/enrol"
                    )
                    statuses[status, default: 0] += 1
                }
            }
            return statuses
        }
        // Every prefix of the four valid bodies, the extra byte, not UTF-8 and the wrong types
        // are 400; the content types 415; the oversized bodies 413.
        let prefixes = endpoints.map(\.valid.count).reduce(0, +)
        let wrongTypes = endpoints.map(\.wrongTypes.count).reduce(0, +)
        #expect(statuses == [400: prefixes + 2 * 4 + wrongTypes, 413: 4, 415: 2 * 4])
        // The failed enrolments are in one summary entry.
        let enrolments = endpoints[3].valid.count + 2 + endpoints[3].wrongTypes.count + 3
        let size = fixture.log.size
        await fixture.exchange.flushRefusals(force: true)
        #expect(fixture.log.size == size + 1)
        #expect(try fixture.log.entry(size).reason.hasPrefix("\(enrolments) unauthenticated or rate-limited requests"))
    }

    /// Every SecAgg+ answer of a round, and the masked-input upload, sent first cut short at
    /// every byte, with a byte more, with each byte's low bit flipped, as another phase's
    /// message, under the wrong content type and over 4 MiB: each refused with a 4xx and a
    /// message, audited, nothing stored; then the real answers finish the round with the exact
    /// sum of all six inputs.
    @Test func roundBodies() async throws {
        let start = try await RoundDriver()
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        let fixture = start.fixture
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let outcome = try await app.test(.router) { client -> String in
            var driver = start
            var previous: [UInt8] = [0x01]
            return try await driver.run(client) { name, path, valid in
                guard name == "participant" else { return }
                let phase = String(path.split(separator: "/").last!)
                let binary = "application/octet-stream"
                // A flipped sender or index is a message signed for someone else: 403.
                let flipped: Set<Int> = phase == "input" ? [400] : [400, 403]
                // The upload's length is fixed by the round: anything longer is 413.
                let longer: Set<Int> = phase == "input" ? [413] : [400]
                var corpus: [(String, [UInt8], String, Set<Int>)] = (0..<valid.count).map {
                    ("cut to \($0) bytes", Array(valid.prefix($0)), binary, [400])
                }
                corpus.append(("a byte more", valid + [0], binary, longer))
                corpus += valid.indices.filter { Self.brokerChecks(phase, $0) }.map { i in
                    var bytes = valid
                    bytes[i] ^= 1
                    return ("bit flip at \(i)", bytes, binary, flipped)
                }
                corpus.append(
                    ("the previous phase's message", previous, binary, previous.count > valid.count ? longer : [400])
                )
                corpus.append(("as text/plain", valid, "text/plain", [415]))
                corpus.append(("over 4 MiB", [UInt8](repeating: 0, count: (4 << 20) + 1), binary, [413]))
                previous = valid
                for (what, body, type, expected) in corpus {
                    let status = try await Self.refused(
                        fixture,
                        { try await start.call(client, name, .post, path, body, contentType: type) },
                        "\(phase) \(what)"
                    )
                    #expect(expected.contains(status), "\(phase) \(what): \(status)")
                }
            }
        }
        #expect(outcome == "finished")
        var driver = start
        driver.uploaded = Set(RoundDriver.names)
        try await driver.expectExactSum()
    }

    /// Whether the broker can tell a flipped bit at `offset` of a `phase` answer: everything but
    /// the share ciphertexts of ShareKeys (nonce and ciphertext, checked by their recipient) and
    /// the revealed share values of UnmaskResponse (checked only by reconstruction).
    static func brokerChecks(_ phase: String, _ offset: Int) -> Bool {
        // After u16 version, u8 type, the 32-byte session, u16 sender and u32 count: entries.
        switch phase {
        case "share": offset < 41 || (offset - 41) % (2 + 24 + 144) < 2
        case "unmask": offset < 41 || (offset - 41) % (2 + 1 + 64) < 3
        default: true
        }
    }
}

@Suite struct BackupTests {
    /// A backup taken while round 1 is in its share phase, restored into a new folder: a new
    /// exchange there (the same keys, as `serve` unlocks them) resumes the round, which aborts
    /// cleanly since the nodes' share answers went to the old broker; round 2 then finishes with
    /// exactly the inputs accepted. An export taken before the backup verifies against one taken
    /// after, and the logs hold `broker.backup`, `broker.restore` and `round.resume`.
    @Test func backupDuringARoundRestoresAndTheFederationContinues() async throws {
        var driver = try await RoundDriver()
        let old = driver.fixture
        defer { _ = system("rm -rf '\(old.folder)' '\(old.folder)-backup' '\(old.folder)-restored'") }
        let keys = old.exchange.keys
        // What the data folder holds beside the databases (the keystore is copied as it is).
        try DurableFile.write(
            BrokerConfig(origin: "cairn.test/exchange", processing: .cairnDefaults(controller: "C", contact: "c@x"))
                .json(),
            to: old.folder + "/" + BrokerHome.configFileName,
            replace: false
        )
        try DurableFile.write(
            Array("keystore bytes".utf8),
            to: old.folder + "/" + BrokerHome.keystoreFileName,
            replace: false
        )
        try DurableFile.write(
            Array((keys.checkpoint.verifier.encoded + "\n").utf8),
            to: old.folder + "/" + BrokerHome.verifierFileName,
            replace: false
        )
        let before = old.folder + "/export-before"
        try AuditBundle.export(
            log: old.log,
            origin: "cairn.test/exchange",
            signer: keys.checkpoint,
            actor: "operator",
            to: before
        )

        let oldApp = Application(router: BrokerServer.router(old.exchange, logger: quiet))
        let started = driver
        let backup = try await oldApp.test(.router) { client in
            var driver = started
            var backup: BrokerBackup.Summary?
            _ = try await driver.run(client) { _, path, _ in
                if backup == nil, path.hasSuffix("/share") {
                    backup = try BrokerBackup.take(
                        home: try BrokerHome(path: old.folder),
                        signer: keys.checkpoint,
                        actor: "operator",
                        to: old.folder + "-backup"
                    )
                }
            }
            return backup
        }
        let summary = try #require(backup)
        #expect(summary.files.count == 5)

        // Restoring into a folder that exists, a backup with a changed or an extra file, or one
        // signed by another key is refused, and nothing is written.
        func refusal(_ from: String, key: NoteVerifier? = nil, to: String = old.folder + "-nowhere") -> String? {
            do {
                try BrokerBackup.restore(from: from, to: to, key: key, actor: "operator")
                return nil
            } catch { return (error as? WireError)?.message ?? "\(error)" }
        }
        #expect(
            refusal(old.folder + "-backup", to: old.folder) == "\(old.folder) already exists; restore into a new folder"
        )
        let tampered = old.folder + "-backup-tampered"
        defer { _ = system("rm -rf '\(tampered)'") }
        try FileManager.default.copyItem(atPath: old.folder + "-backup", toPath: tampered)
        try DurableFile.write(Array("extra".utf8), to: tampered + "/notes.txt", replace: false)
        #expect(refusal(tampered) == "the backup holds files its manifest does not list: [\"notes.txt\"]")
        unlink(tampered + "/notes.txt")
        var config = try DurableFile.read(tampered + "/broker.json", maximum: 1 << 20)
        config[config.count / 2] ^= 1
        try DurableFile.write(config, to: tampered + "/broker.json", replace: true)
        #expect(refusal(tampered) == "\(tampered)/broker.json: its SHA-256 differs from the manifest's")
        let stranger = try NoteSigner(name: "cairn.test/exchange", key: .init())
        #expect(
            refusal(old.folder + "-backup", key: stranger.verifier)?.hasPrefix("\(old.folder)-backup/manifest: ")
                == true
        )
        let leftovers = try DurableFile.entries(in: "/tmp").filter {
            $0.hasPrefix(URL(fileURLWithPath: old.folder).lastPathComponent + "-nowhere")
        }
        #expect(leftovers.isEmpty)
        let restored = old.folder + "-restored"
        #expect(
            try BrokerBackup.restore(
                from: old.folder + "-backup",
                to: restored,
                key: keys.checkpoint.verifier,
                actor: "operator"
            ) == summary
        )
        let log = try AuditLog(path: restored + "/" + BrokerHome.auditFileName)
        driver.fixture.folder = restored
        driver.fixture.log = log
        driver.fixture.exchange = try Exchange(
            folder: restored,
            log: log,
            keys: keys,
            origin: "cairn.test/exchange",
            settings: driver.clock.settings,
            metrics: ExchangeMetrics(),
            logger: quiet
        )
        let phase = try await driver.fixture.exchange.store.read { db in
            try String.fetchOne(db, sql: "SELECT phase FROM rounds WHERE federation = 'alpha' AND round = 1")
        }
        #expect(phase == "share")
        let app = Application(router: BrokerServer.router(driver.fixture.exchange, logger: quiet))
        let resumed = driver
        let outcomes = try await app.test(.router) { client in
            var driver = resumed
            let first = try await driver.run(client, dropping: Set(RoundDriver.names), at: .share)
            driver.clients = [:]
            driver.uploaded = []
            _ = try await driver.fixture.exchange.training(
                try await driver.fixture.caller(driver.fixture.operatorKey),
                federation: "alpha",
                TrainingRequest(action: "start", rounds: 1)
            )
            await driver.fixture.exchange.tick()
            return [first, try await driver.run(client, round: 2)]
        }
        #expect(outcomes == ["aborted", "finished"])
        let actions = try (0..<log.size).map { try log.entry($0).action }
        #expect(actions.contains("broker.backup") && actions.contains("broker.restore"))
        #expect(actions.contains("round.resume"))
        let after = restored + "/export-after"
        try AuditBundle.export(
            log: log,
            origin: "cairn.test/exchange",
            signer: keys.checkpoint,
            actor: "operator",
            to: after
        )
        let earlier = try AuditBundle.verify(directory: before, verifier: keys.checkpoint.verifier)
        let later = try AuditBundle.verify(directory: after, verifier: keys.checkpoint.verifier)
        try AuditBundle.checkConsistency(earlier: earlier, later: later)
    }
}
