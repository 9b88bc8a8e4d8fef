import CairnAudit
import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@testable import CairnBroker

/// Request ids: a retry of a state-changing request the broker already answered gets the same
/// answer and changes nothing (`Protocol/README.md`, "Request ids").
@Suite struct IdempotencyTests {
    /// The whole exchange of ``WireCaptureTests`` (every POST endpoint of the API) through a
    /// proxy that loses the broker's first 18 answers to every POST after the broker has acted,
    /// over 1,000 lost answers in all: the clients retry with the same request id, and the broker
    /// ends with exactly the rows and audit entries of the same exchange without losses.
    @Test func lostAnswersDuplicateNothing() async throws {
        let perRequest = 18
        let drops = Mutex<[String: Int]>([:])
        let lose: RecordingProxy.Drop = { line in
            guard line.hasPrefix("POST "), let range = line.range(of: "request-id=") else { return false }
            let id = String(line[range.upperBound...].prefix(32))
            return drops.withLock { counts in
                guard counts[id, default: 0] < perRequest else { return false }
                counts[id, default: 0] += 1
                return true
            }
        }
        let clean = try await Self.census(drop: nil)
        let lossy = try await Self.census(drop: lose)
        let (requests, lost) = drops.withLock { ($0.count, $0.values.reduce(0, +)) }
        #expect(lossy == clean)
        print("request ids: \(requests) POSTs, \(lost) answers lost")
        #expect(requests >= 55 && lost == perRequest * requests && lost >= 1000, "\(requests) requests, \(lost) lost")
        // Every POST endpoint was among them.
        let paths = Set(
            clean.split(separator: "\n").filter { $0.hasPrefix("path ") }.map { String($0.dropFirst(5)) }
        )
        #expect(
            paths == [
                "/v1/admin/federations", "/v1/admin/federations/*/invites", "/v1/enrol",
                "/v1/admin/federations/*/training", "/v1/federations/*/rounds/*/advertise",
                "/v1/federations/*/rounds/*/share", "/v1/federations/*/rounds/*/input",
                "/v1/federations/*/rounds/*/check", "/v1/federations/*/rounds/*/unmask",
                "/v1/federations/*/evaluations", "/v1/federations/*/cosignatures",
                "/v1/admin/federations/*/publish", "/v1/federations/*/licences", "/v1/admin/licences/*",
                "/v1/admin/federations/*/participants/*/suspend",
            ]
        )
    }

    /// Runs the exchange through a proxy that loses the answers `drop` chooses, and describes
    /// what the broker holds after it: rows per table, audit entries per action, and the
    /// endpoints (with ids as `*`) whose answers were stored for retries.
    static func census(drop: RecordingProxy.Drop?) async throws -> String {
        let fixture = try await WireCaptureTests.fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        _ = try await WireCaptureTests.exchangeThroughProxy(fixture, drop: drop, backoff: (0.001, 0.002))
        var lines = try await fixture.exchange.store.read { db in
            try [
                "members", "federations", "models", "invites", "rounds", "answers", "versions", "licences",
                "evaluations", "outcomes",
            ].map { "\($0) \(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0)")!)" }
                + Set(try String.fetchAll(db, sql: "SELECT path FROM outcomes")).map { path in
                    "path /"
                        + path.split(separator: "/").map {
                            $0.count >= 20 || $0.allSatisfy(\.isNumber) || $0 == "gamma" ? "*" : String($0)
                        }.joined(separator: "/")
                }
        }
        var actions: [String: Int] = [:]
        for sequence in 0..<fixture.log.size { actions[try fixture.log.entry(sequence).action, default: 0] += 1 }
        lines += actions.map { "action \($0.key) \($0.value)" }
        return lines.sorted().joined(separator: "\n")
    }

    /// The same request id again: the first answer, marked as a replay, and nothing done twice;
    /// the id on another request is refused, a POST without one is refused, and a refusal is kept
    /// as the answer too.
    @Test func aRepeatedRequestIDGetsItsFirstAnswer() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        try await app.test(.router) { client in
            func post(
                _ key: Ed25519.PrivateKey,
                _ path: String,
                _ body: [UInt8]
            ) async throws -> (
                status: Int, body: [UInt8]
            ) {
                try await fixture.request(client, key, .post, path, body, contentType: "application/json")
            }
            let path = RequestSignature.withRequestID("/v1/admin/federations/alpha/invites")
            let body = Array(try JSONEncoder().encode(InviteRequest(role: .licensee)))
            let invites = {
                try await fixture.exchange.store.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM invites")! }
            }
            let before = try await invites()
            let first = try await post(fixture.operatorKey, path, body)
            let again = try await post(fixture.operatorKey, path, body)
            #expect(first.status == 201 && again.status == 201)
            #expect(again.body == first.body)
            #expect(try JSONDecoder().decode(Invite.self, from: Data(first.body)).code.count > 32)
            #expect(try await invites() == before + 1)
            // The id on a different body, or a different path, is another request: refused.
            let other = Array(try JSONEncoder().encode(InviteRequest(role: .participant)))
            let reused = try await post(fixture.operatorKey, path, other)
            #expect(reused.status == 409)
            #expect(String(decoding: reused.body, as: UTF8.self).contains("was used for another request"))
            let id = String(path.split(separator: "=").last!)
            let elsewhere = try await post(
                fixture.operatorKey,
                "/v1/admin/federations/alpha/publish?request-id=\(id)",
                body
            )
            #expect(elsewhere.status == 409)
            #expect(try await invites() == before + 1)
            // A refusal is the request's answer too: a participant may not invite.
            let refusedPath = RequestSignature.withRequestID("/v1/admin/federations/alpha/invites")
            let participant = fixture.members["participant"]!
            let refused = try await post(participant, refusedPath, body)
            let size = fixture.log.size
            let refusedAgain = try await post(participant, refusedPath, body)
            #expect(refused.status == 403 && refusedAgain.status == 403 && refusedAgain.body == refused.body)
            #expect(fixture.log.size == size, "a replayed refusal is not audited again")
            // Ids are per key: another key's request with the same id is its own.
            let outsider = try await post(participant, path, body)
            #expect(outsider.status == 403)
        }
    }

    /// A POST without a request id, or with a malformed one, is refused before it acts.
    @Test func aPostWithoutARequestIDIsRefused() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        try await app.test(.router) { client in
            let before = try await fixture.state()
            let body = Array(try JSONEncoder().encode(InviteRequest(role: .licensee)))
            for (path, message) in [
                ("/v1/admin/federations/alpha/invites?request-id=", "must be 32 lowercase hex digits"),
                (
                    "/v1/admin/federations/alpha/invites?request-id=0123456789ABCDEF0123456789ABCDEF",
                    "must be 32 lowercase hex digits"
                ),
                ("/v1/admin/federations/alpha/invites?x=1", "a POST carries a request id"),
            ] {
                let reply = try await fixture.request(
                    client,
                    fixture.operatorKey,
                    .post,
                    path,
                    body,
                    contentType: "application/json",
                    requestID: false
                )
                #expect(reply.status == 400, "\(path)")
                #expect(String(decoding: reply.body, as: UTF8.self).contains(message), "\(path)")
            }
            #expect(try await fixture.state() == before)
        }
    }
}

/// Where seen nonces are kept: a POST's on disk, so that it cannot be replayed after a restart;
/// a GET's in memory only (a poll costs no write).
@Suite struct NonceTests {
    @Test func aPostsNonceOutlivesARestartAndAGetsDoesNot() async throws {
        let clock = TestClock()
        let fixture = try await Fixture(settings: clock.settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let post = RequestSignature.withRequestID("/v1/admin/federations/alpha/invites")
        let body = Array(try JSONEncoder().encode(InviteRequest(role: .licensee)))
        func sign(_ method: String, _ target: String, _ body: [UInt8]) throws -> RequestSignature {
            try RequestSignature.sign(
                method: method,
                target: target,
                bodyDigest: try RequestSignature.digest(body),
                identity: fixture.operatorKey,
                broker: fixture.broker,
                time: fixture.now()
            )
        }
        let (postSignature, getSignature) = (try sign("POST", post, body), try sign("GET", "/v1/me", []))
        func send(_ exchange: Exchange) async throws -> (post: Int, get: Int) {
            let app = Application(router: BrokerServer.router(exchange, logger: quiet))
            return try await app.test(.router) { client in
                (
                    try await CairnExchangeTests.send(client, .post, post, body, "application/json", postSignature),
                    try await CairnExchangeTests.send(client, .get, "/v1/me", [], nil, getSignature)
                )
            }
        }
        #expect(try await send(fixture.exchange) == (201, 200))
        #expect(try await send(fixture.exchange) == (401, 401))
        // The broker restarted: the same folder and keys, a new process.
        let restarted = try Exchange(
            folder: fixture.folder,
            log: fixture.log,
            keys: fixture.exchange.keys,
            origin: "cairn.test/exchange",
            settings: clock.settings,
            metrics: ExchangeMetrics(),
            logger: quiet
        )
        #expect(try await send(restarted) == (401, 200))
        #expect(try await send(restarted) == (401, 401))
    }
}
