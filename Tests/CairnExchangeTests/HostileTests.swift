import CairnAudit
import CairnCrypto
import CairnExchange
import CairnModels
import CairnSecAgg
import CairnWire
import Foundation
import GRDB
import Glibc
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import CairnBroker

/// A malicious member and a flood of strangers (`../shared/DESIGN.md` §8): a member's input
/// cannot move the model beyond the round's bounds, a stalled upload or a silent node costs only
/// its own input, and refusals nobody can be held to do not grow the log one by one.
@Suite(.serialized) struct HostileTests {
    /// A participant that adds 2^30 to one coordinate of its input (masking is linear, so this is
    /// what re-encrypting its masked input with +2^30 does): the unmasked sum is beyond what
    /// six clipped inputs can reach, the round aborts with that reason, and no model is stored.
    @Test func aForgedCoordinateAbortsTheRound() async throws {
        var start = try await RoundDriver()
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        start.inputs["p3"]!.words[4] &+= 1 << 30
        let driver = start
        let app = Application(router: BrokerServer.router(driver.fixture.exchange, logger: quiet))
        let outcome = try await app.test(.router) { client in
            var driver = driver
            return try await driver.run(client)
        }
        #expect(outcome == "aborted")
        let (reason, models) = try await driver.fixture.exchange.store.read { db in
            (
                try String.fetchOne(db, sql: "SELECT reason FROM rounds WHERE federation = 'alpha' AND round = 1")!,
                try Int.fetchOne(db, sql: "SELECT count(*) FROM models WHERE federation = 'alpha'")!
            )
        }
        // 6 inputs of at most s·c + 1 = 2^20·4 + 1 each.
        let bound = 6 * (4 << 20 + 1)
        #expect(
            reason
                == "coordinate 4 of the sum is beyond the ±\(bound) that 6 clipped inputs can reach: an input was forged; the update is not applied"
        )
        #expect(models == 1, "only round 0's model")
        let log = driver.fixture.log
        let abort = try #require(try (0..<log.size).map { try log.entry($0) }.last { $0.action == "round.abort" })
        #expect(abort.objectID == "alpha/1" && abort.outcome == .failed && abort.reason == reason)
        #expect(!(try (0..<log.size).map { try log.entry($0) }.contains { $0.action == "model.update" }))
    }

    /// The bounds themselves: a coordinate at the bound passes, one past it (either sign) does
    /// not, and the declared rows must lie in n…n·M.
    @Test func sumBounds() throws {
        let policy = RoundPolicy(clipBound: 4, scale: 1024, maximumSampleCount: 100)
        let bound = Int32(3 * (4 * 1024 + 1))
        func check(_ value: Int32, rows: UInt32 = 10) throws {
            try FederatedModel.checkBounds(
                sum: [0, UInt32(bitPattern: value), 7],
                sampleCount: rows,
                contributors: 3,
                policy: policy
            )
        }
        try check(bound)
        try check(-bound)
        #expect(throws: ExchangeError(.malformed, "")) { try check(bound + 1) }
        #expect(throws: ExchangeError(.malformed, "")) { try check(-bound - 1) }
        try check(0, rows: 3)
        try check(0, rows: 300)
        #expect(throws: ExchangeError(.malformed, "")) { try check(0, rows: 2) }
        #expect(throws: ExchangeError(.malformed, "")) { try check(0, rows: 301) }
        var model = Model(architecture: try ModelArchitecture(kind: .logistic, inputs: 2, classes: 2), seed: 1)
        try FederatedModel.checkStorable(model)
        model.parameters[1] = .nan
        #expect(throws: ExchangeError(.malformed, "")) { try FederatedModel.checkStorable(model) }
        model.parameters[1] = 2e6
        #expect(throws: ExchangeError(.malformed, "")) { try FederatedModel.checkStorable(model) }
    }

    /// A participant that opens its upload and never finishes it holds one upload slot: a second
    /// upload of its own is refused (409), the others upload through the other slot, the mask
    /// phase closes at its deadline and ends the stalled upload, and the round finishes with
    /// exactly the others' inputs.
    @Test func aHeldUploadLosesOnlyItsOwnInput() async throws {
        let start = try await RoundDriver()
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        let exchange = start.fixture.exchange
        let holder = try await start.fixture.caller(start.fixture.members["p2"]!)
        let app = Application(router: BrokerServer.router(exchange, logger: quiet))
        let (outcome, driver, held, second) = try await app.test(.router) { client in
            var driver = start
            var held: UploadTicket?
            var second: ExchangeError?
            let outcome = try await driver.run(client, dropping: ["p2"], at: .mask) { _, path, _ in
                guard path.hasSuffix("/input"), held == nil else { return }
                let commitment = [UInt8](repeating: 1, count: 32)
                held = try await exchange.beginUpload(holder, federation: "alpha", round: 1, commitment: commitment)
                do {
                    _ = try await exchange.beginUpload(holder, federation: "alpha", round: 1, commitment: commitment)
                } catch let e as ExchangeError { second = e }
                #expect(await exchange.uploadIsOpen(held!))
            }
            return (outcome, driver, held, second)
        }
        let ticket = try #require(held)
        #expect(second?.code == .conflict)
        #expect(second?.message.hasPrefix("an upload of this participant is already in progress") == true)
        #expect(outcome == "finished")
        #expect(!(await exchange.uploadIsOpen(ticket)), "the mask phase closed under the held upload")
        #expect(!driver.uploaded.contains("p2") && driver.uploaded.count == 5)
        try await driver.expectExactSum()
        await exchange.releaseUpload(ticket)
    }

    /// Over a real connection: a participant that sends the head and 20 bytes of its upload and
    /// then nothing has its connection closed by the broker once the mask phase closes (the
    /// round finishes without it), and its upload slot is free again.
    @Test func theMaskDeadlineEndsAStalledUpload() async throws {
        let start = try await RoundDriver()
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        let fixture = start.fixture
        let app = Application(
            router: BrokerServer.router(fixture.exchange, logger: quiet),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        let (outcome, socket) = try await app.test(.live) { client in
            var driver = start
            var socket: Int32 = -1
            let outcome = try await driver.run(client, dropping: ["p2"], at: .mask) { _, path, _ in
                guard path.hasSuffix("/input"), socket < 0 else { return }
                let path = RequestSignature.withRequestID(path)
                // A masked input of this round (D = 9) is 24 + 4 · 10 + 17 = 81 bytes.
                let body = SecureRandom.bytes(81)
                let signature = try RequestSignature.sign(
                    method: "POST",
                    target: path,
                    bodyDigest: try RequestSignature.digest(body),
                    identity: fixture.members["p2"]!,
                    broker: fixture.broker,
                    time: fixture.now()
                )
                var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                head += "Content-Length: \(body.count)\r\n\(RequestSignature.bodyDigestHeader): "
                head += Hex.encode(try RequestSignature.digest(body)) + "\r\n"
                for (name, value) in signature.headers { head += "\(name): \(value)\r\n" }
                socket = try connectedSocket(port: client.port!)
                let bytes = Array((head + "\r\n").utf8) + body.prefix(20)
                #expect(bytes.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) } == bytes.count)
                // The broker has begun the upload (its slot is taken) before the others send.
                for _ in 0..<6000 where await fixture.exchange.uploading.isEmpty {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(await fixture.exchange.uploading.count == 1)
            }
            return (outcome, socket)
        }
        defer { close(socket) }
        #expect(outcome == "finished")
        // The watch closes the connection within a quarter second of the phase closing; the
        // deadline here is far beyond that.
        var closed = false
        var buffer = [UInt8](repeating: 0, count: 1024)
        for _ in 0..<600 where !closed {
            let n = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { closed = true } else { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(closed)
        #expect(await fixture.exchange.uploading.isEmpty)
    }

    /// A node that quits (answers nothing) for `inactiveAfter` = 2 rounds in a row is marked
    /// inactive (audited) and the next round opens without it; when it calls again it is active.
    @Test func aNodeThatQuitsIsLeftOut() async throws {
        var policy = RoundDriver.policy
        policy.inactiveAfter = 2
        let start = try await RoundDriver(policy: policy)
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        let fixture = start.fixture
        let op = try await fixture.caller(fixture.operatorKey)
        _ = try await fixture.exchange.training(op, federation: "alpha", TrainingRequest(action: "start", rounds: 3))
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let quitter = fixture.members["p5"]!.publicKey
        let outcomes = try await app.test(.router) { client in
            var driver = start
            let first = try await driver.run(client, round: 1, dropping: ["p5"])
            await fixture.exchange.tick()  // opens the next round
            let second = try await driver.run(client, round: 2, dropping: ["p5"])
            await fixture.exchange.tick()
            return [first, second]
        }
        #expect(outcomes == ["finished", "finished"])
        let (status, rosters) = try await fixture.exchange.store.read { db in
            (
                try String.fetchOne(
                    db,
                    sql: "SELECT status FROM members WHERE key = ?",
                    arguments: [Data(quitter.rawRepresentation)]
                )!,
                try Data.fetchAll(db, sql: "SELECT config FROM rounds WHERE federation = 'alpha' ORDER BY round")
                    .map { try RoundConfig(decoding: Array($0)).roster }
            )
        }
        #expect(status == "inactive")
        #expect(rosters.count == 3, "round 3 opened after round 2")
        #expect(rosters[0].contains(quitter) && rosters[1].contains(quitter))
        #expect(rosters[2].count == 5 && !rosters[2].contains(quitter))
        let log = fixture.log
        let entries = try (0..<log.size).map { try log.entry($0) }
        #expect(entries.filter { $0.action == "member.inactive" }.map(\.objectID) == [quitter.fingerprint])
        // Its node comes back: a signed call about its federation makes it active again, for
        // rounds that open later.
        let back = try await app.test(.router) { client in
            try await fixture.request(client, fixture.members["p5"]!, .get, "/v1/me").status
        }
        #expect(back == 200)
        let after = try await fixture.exchange.store.read { db in
            try String.fetchOne(
                db,
                sql: "SELECT status FROM members WHERE key = ?",
                arguments: [Data(quitter.rawRepresentation)]
            )!
        }
        #expect(after == "active")
        #expect(try log.entry(log.size - 1).action == "member.active")
    }

    /// 10,000 unsigned requests: every one refused (401), none written alone; the minute's
    /// summary is one entry that counts them, and a member's signed call is still answered.
    @Test func anUnsignedFloodIsSummarised() async throws {
        let clock = TestClock()
        let fixture = try await Fixture(settings: clock.settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let size = fixture.log.size
        let (refused, signed) = try await app.test(.router) { client in
            var refused = 0
            for _ in 0..<10_000 {
                refused += try await send(client, .get, "/v1/federations/alpha/round", [], nil, nil) == 401 ? 1 : 0
            }
            let signed = try await fixture.request(client, fixture.members["participant"]!, .get, "/v1/me").status
            return (refused, signed)
        }
        #expect(refused == 10_000 && signed == 200)
        #expect(fixture.log.size == size)
        clock.advance(60)
        await fixture.exchange.tick()
        #expect(fixture.log.size == size + 1)
        let summary = try fixture.log.entry(size)
        #expect(summary.action == "request.refused" && summary.objectType == "source")
        #expect(summary.reason.hasSuffix(": 10000 × 401"))
    }

    /// Enrolment attempts with fresh keys and invites that do not exist (anyone can make keys):
    /// each refused (403), none logged alone, all in the minute's summary; an enrolled member's
    /// refusal is still its own entry.
    @Test func failedEnrolmentsAreSummarised() async throws {
        let clock = TestClock()
        let fixture = try await Fixture(settings: clock.settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let body = Fixture.unknownInviteEnrolment
        let size = fixture.log.size
        let (statuses, member) = try await app.test(.router) { client in
            var statuses: [Int] = []
            for _ in 0..<50 {
                statuses.append(
                    try await fixture.request(
                        client,
                        try Ed25519.PrivateKey(),
                        .post,
                        "/v1/enrol",
                        body,
                        contentType: "application/json"
                    ).status
                )
            }
            let member = try await fixture.request(
                client,
                fixture.members["licensee"]!,
                .get,
                "/v1/federations/alpha/round"
            )
            return (statuses, member.status)
        }
        #expect(statuses == Array(repeating: 403, count: 50) && member == 403)
        #expect(fixture.log.size == size + 1)
        #expect(try fixture.log.entry(size).actor.hasPrefix("licensee:"))
        clock.advance(60)
        await fixture.exchange.tick()
        #expect(fixture.log.size == size + 2)
        #expect(try fixture.log.entry(size + 1).reason.hasSuffix(": 50 × 403"))
    }

    /// Past `anonymousRefusalsPerSecond` refusals of one source in one second, that source's
    /// further refusals are slowed (answered after `refusalDelay`); other sources and the next
    /// second are not.
    @Test func aFloodingSourceIsSlowed() async throws {
        let clock = TestClock()
        var settings = clock.settings
        settings.anonymousRefusalsPerSecond = 3
        let fixture = try await Fixture(settings: settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let exchange = fixture.exchange
        let slowed = (0..<5).map { _ in exchange.countRefusal(source: "192.0.2.7", status: 401) }
        #expect(slowed == [false, false, false, true, true])
        #expect(!exchange.countRefusal(source: "192.0.2.8", status: 401))
        clock.advance(1)
        #expect(!exchange.countRefusal(source: "192.0.2.7", status: 401))
        // Slowed or not, each is counted in the minute's summary.
        clock.advance(60)
        let size = fixture.log.size
        await exchange.tick()
        let summaries = try (size..<fixture.log.size).map { try fixture.log.entry($0) }
        #expect(summaries.map(\.objectID) == ["192.0.2.7", "192.0.2.8"])
        #expect(summaries.first?.reason.hasSuffix(": 6 × 401") == true)
    }

    /// A header or body the caller chose cannot make its refusal unauditable: control characters
    /// become spaces and long multi-byte text is cut on a character within the entry's limits.
    @Test func refusalsWithAnyTextAreAudited() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let size = fixture.log.size
        let status = try await app.test(.router) { client in
            try await fixture.request(
                client,
                fixture.members["participant"]!,
                .post,
                "/v1/federations/alpha/evaluations",
                Array("{}".utf8),
                contentType: "text/plain\tx"
            ).status
        }
        #expect(status == 415)
        #expect(fixture.log.size == size + 1)
        #expect(
            try fixture.log.entry(size).reason
                == "415 unsupportedMediaType: this endpoint takes a sealed body (application/vnd.cairn.sealed), not text/plain x"
        )
        let long = Exchange.fit(String(repeating: "é\u{1}", count: 1000), 900)
        #expect(long.utf8.count == 900 && long.hasPrefix("é é ") && !long.unicodeScalars.contains { $0.value < 0x20 })
        #expect(Exchange.fit("", 10) == "-")
    }

    /// A body that is not the one the signature's declared digest covers is refused (401) after
    /// the headers authenticated, and nothing is stored.
    @Test func aBodyMustMatchItsDeclaredDigest() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let before = try await fixture.state()
        let signed = Array(try JSONEncoder().encode(InviteRequest(role: .participant)))
        let sent = Array(try JSONEncoder().encode(InviteRequest(role: .licensee)))
        let status = try await app.test(.router) { client in
            let target = RequestSignature.withRequestID("/v1/admin/federations/alpha/invites")
            let signature = try RequestSignature.sign(
                method: "POST",
                target: target,
                bodyDigest: try RequestSignature.digest(signed),
                identity: fixture.operatorKey,
                broker: fixture.broker,
                time: fixture.now()
            )
            var headers = HTTPFields()
            for (name, value) in signature.headers { headers[HTTPField.Name(name)!] = value }
            headers[HTTPField.Name(RequestSignature.bodyDigestHeader)!] = Hex.encode(
                try RequestSignature.digest(signed)
            )
            headers[.contentType] = "application/json"
            return try await client.execute(
                uri: target,
                method: .post,
                headers: headers,
                body: ByteBuffer(bytes: sent)
            ) { Int($0.status.code) }
        }
        #expect(status == 401)
        #expect(try await fixture.state() == before)
    }
}

/// A TCP connection to the loopback `port`, blocking.
func connectedSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard fd >= 0, connected == 0 else { throw ExchangeError(.transport, "cannot connect to port \(port)") }
    return fd
}
