import CairnAudit
import CairnCrypto
import CairnExchange
import CairnModels
import CairnWire
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

@testable import CairnBroker

/// A broker in a temporary folder with an operator, two federations and one member of each role.
struct Fixture {
    var folder: String
    var exchange: Exchange
    var log: AuditLog
    let operatorKey: Ed25519.PrivateKey
    let broker: Ed25519.PublicKey
    var members: [String: Ed25519.PrivateKey] = [:]
    /// The exchange's clock.
    let now: @Sendable () -> Int64

    static let schema = DataSchema(
        task: .multiclass,
        label: .init(name: "y", classes: ["a", "b", "c"]),
        features: [
            DataSchema.Feature(name: "x1", type: .float, min: 0, max: 1),
            DataSchema.Feature(name: "x2", type: .float, min: 0, max: 1),
        ]
    )

    static func spec(_ id: String, policy: RoundPolicy = RoundPolicy()) -> FederationSpec {
        FederationSpec(
            id: id,
            description: "test",
            schema: schema,
            model: ModelChoice(kind: .softmax),
            policy: policy
        )
    }

    /// The fixture; `participants` more active participants of alpha are named `p1`, `p2`, ….
    init(
        policy: RoundPolicy = RoundPolicy(),
        participants: Int = 0,
        settings: Exchange.Settings = Exchange.Settings()
    ) async throws {
        folder = String(cString: mkdtemp(strdup("/tmp/cairn-exchange-test-XXXXXX")))
        log = try AuditLog(path: folder + "/audit.sqlite")
        operatorKey = try Ed25519.PrivateKey()
        let identity = try Ed25519.PrivateKey()
        broker = identity.publicKey
        exchange = try Exchange(
            folder: folder,
            log: log,
            keys: Exchange.Keys(
                identity: identity,
                transport: try X25519.PrivateKey(),
                checkpoint: try NoteSigner(name: "cairn.test/exchange", key: try Ed25519.PrivateKey()),
                licence: try Ed25519.PrivateKey(),
                operatorKey: operatorKey.publicKey
            ),
            origin: "cairn.test/exchange",
            settings: settings,
            metrics: ExchangeMetrics(),
            logger: quiet
        )
        now = settings.now
        let op = try await caller(operatorKey)
        for federation in ["alpha", "beta"] {
            try await exchange.createFederation(op, Self.spec(federation, policy: policy))
        }
        let others = (0..<participants).map { ("p\($0 + 1)", "alpha", Role.participant) }
        for (name, federation, role) in [
            ("participant", "alpha", Role.participant), ("licensee", "alpha", .licensee),
            ("auditor", "alpha", .auditor),
            ("suspended", "alpha", .participant), ("outsider", "beta", .participant),
        ] + others {
            let key = try Ed25519.PrivateKey()
            let invite = try await exchange.invite(op, federation: federation, InviteRequest(role: role))
            _ = try await exchange.enrol(
                try await caller(key, enrolling: true),
                EnrolRequest(invite: String(invite.code.prefix(32)), deliveryKey: String(repeating: "ab", count: 32))
            )
            members[name] = key
        }
        _ = try await exchange.setStanding(
            op,
            federation: "alpha",
            member: members["suspended"]!.publicKey.fingerprint,
            suspended: true
        )
        members["operator"] = operatorKey
    }

    /// An enrolment body naming an invite that does not exist.
    static let unknownInviteEnrolment = Array(
        try! JSONEncoder().encode(
            EnrolRequest(invite: String(repeating: "00", count: 16), deliveryKey: String(repeating: "ab", count: 32))
        )
    )

    /// `key` as the exchange sees it after a signed request, for calling the exchange directly.
    func caller(_ key: Ed25519.PrivateKey, enrolling: Bool = false) async throws -> Exchange.Caller {
        try await exchange.authenticate(
            method: "POST",
            target: "/setup",
            signature: try RequestSignature.sign(
                method: "POST",
                target: "/setup",
                bodyDigest: try RequestSignature.digest([]),
                identity: key,
                broker: broker,
                time: now()
            ),
            bodyDigest: try RequestSignature.digest([]),
            enrolling: enrolling
        )
    }

    /// One request through the router, signed by `key` at the exchange's time; on a sealed route
    /// (``SealedBody``) a body of the endpoint's type (JSON or octet-stream) is sealed and a
    /// successful answer opened, as a node does; a body of another type is sent as it is.
    func request(
        _ client: some TestClientProtocol,
        _ key: Ed25519.PrivateKey,
        _ method: HTTPRequest.Method,
        _ path: String,
        _ body: [UInt8] = [],
        contentType: String? = nil,
        requestID: Bool = true
    ) async throws -> (status: Int, body: [UInt8]) {
        // A POST carries a request id, as every client sends it (`BrokerClient.send`), unless
        // the path has one or the test sends none.
        let path =
            requestID && method == .post && !path.contains("request-id=") ? RequestSignature.withRequestID(path) : path
        var sealing = SealedBody.routes(method: method.rawValue, path: path)
        sealing.request =
            sealing.request && ["application/json", "application/octet-stream"].contains(contentType ?? "")
        let (time, nonce) = (now(), SecureRandom.bytes(RequestSignature.nonceByteCount))
        let seal = try SealedBody.member(
            identity: key,
            broker: broker,
            transport: exchange.keys.transport.publicKey,
            method: method.rawValue,
            target: path,
            time: time,
            nonce: nonce
        )
        let sent = sealing.request ? try seal.seal(body, .request) : body
        let signature = try RequestSignature.sign(
            method: method.rawValue,
            target: path,
            bodyDigest: try signedDigest(path, sent),
            identity: key,
            broker: broker,
            time: time,
            nonce: nonce
        )
        let reply = try await CairnExchangeTests.exchange(
            client,
            method,
            path,
            sent,
            sealing.request ? SealedBody.contentType : contentType,
            signature
        )
        guard sealing.response, (200..<300).contains(reply.status) else { return reply }
        return (reply.status, try seal.open(reply.body, .response))
    }

    /// Everything stored except seen nonces, as one string: a refusal must leave it unchanged.
    func state() async throws -> String {
        try await exchange.store.read { db in
            try [
                "members", "federations", "models", "invites", "rounds", "outbox", "answers", "versions", "listings",
                "licences", "evaluations",
            ].map { table in
                try Row.fetchAll(db, sql: "SELECT * FROM \(table) ORDER BY 1, 2").map(\.description).joined(
                    separator: "\n"
                )
            }.joined(separator: "\n--\n")
        }
    }
}

/// One route of the API with a body that would be accepted from the right caller.
struct Endpoint: Sendable, CustomStringConvertible {
    let method: HTTPRequest.Method
    var path: String
    let body: [UInt8]
    let contentType: String?
    /// Who may call it: a role name from the fixture, or "anyone enrolled" (`me`).
    let allowed: Set<String>

    var description: String { "\(method) \(path)" }

    static func all(participantKey: String, licence: String, modelDigest: String) -> [Endpoint] {
        let json = "application/json"
        let binary = "application/octet-stream"
        func encode(_ value: some Encodable) -> [UInt8] { Array(try! JSONEncoder().encode(value)) }
        let op: Set<String> = ["operator"]
        let part: Set<String> = ["participant"]
        return [
            Endpoint(
                method: .get,
                path: "/v1/audit/bundle?action=licence.issue",
                body: [],
                contentType: nil,
                allowed: ["operator", "auditor"]
            ),
            Endpoint(
                method: .get,
                path: "/v1/audit/report?format=html",
                body: [],
                contentType: nil,
                allowed: ["operator", "auditor"]
            ),
            Endpoint(
                method: .get,
                path: "/v1/me",
                body: [],
                contentType: nil,
                allowed: ["operator", "participant", "licensee", "auditor", "outsider"]
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations",
                body: encode(Fixture.spec("gamma")),
                contentType: json,
                allowed: op
            ),
            Endpoint(method: .get, path: "/v1/admin/federations", body: [], contentType: nil, allowed: op),
            Endpoint(method: .get, path: "/v1/admin/federations/alpha", body: [], contentType: nil, allowed: op),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations/alpha/invites",
                body: encode(InviteRequest(role: .participant)),
                contentType: json,
                allowed: op
            ),
            Endpoint(
                method: .get,
                path: "/v1/admin/federations/alpha/participants",
                body: [],
                contentType: nil,
                allowed: op
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations/alpha/participants/\(participantKey)/suspend",
                body: [],
                contentType: nil,
                allowed: op
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations/alpha/participants/\(participantKey)/resume",
                body: [],
                contentType: nil,
                allowed: op
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations/alpha/training",
                body: encode(TrainingRequest(action: "stop")),
                contentType: json,
                allowed: op
            ),
            Endpoint(method: .get, path: "/v1/federations/alpha", body: [], contentType: nil, allowed: part),
            Endpoint(method: .get, path: "/v1/federations/alpha/model", body: [], contentType: nil, allowed: part),
            Endpoint(method: .get, path: "/v1/federations/alpha/round", body: [], contentType: nil, allowed: part),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/rounds/1/advertise",
                body: [1, 2, 3],
                contentType: binary,
                allowed: part
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/rounds/1/share",
                body: [1, 2, 3],
                contentType: binary,
                allowed: part
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/rounds/1/input",
                body: [1, 2, 3],
                contentType: binary,
                allowed: part
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/rounds/1/check",
                body: [1, 2, 3],
                contentType: binary,
                allowed: part
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/rounds/1/unmask",
                body: [1, 2, 3],
                contentType: binary,
                allowed: part
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/federations/alpha/publish",
                body: encode(PublishRequest(description: "m", offer: LicenceOffer())),
                contentType: json,
                allowed: op
            ),
            Endpoint(
                method: .get,
                path: "/v1/admin/federations/alpha/licences",
                body: [],
                contentType: nil,
                allowed: op
            ),
            Endpoint(
                method: .post,
                path: "/v1/admin/licences/\(licence)",
                body: encode(LicenceDecision(action: "revoke")),
                contentType: json,
                allowed: op
            ),
            Endpoint(
                method: .get,
                path: "/v1/federations/alpha/listing",
                body: [],
                contentType: nil,
                allowed: ["participant", "licensee", "operator"]
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/licences",
                body: encode(LicenceRequest(entitlements: ["inference"])),
                contentType: json,
                allowed: ["participant", "licensee"]
            ),
            Endpoint(
                method: .post,
                path: "/v1/federations/alpha/evaluations",
                body: encode(
                    EvaluationReport(round: 0, parametersDigest: modelDigest, samples: 10, accuracy: 0.5, logLoss: 1)
                ),
                contentType: json,
                allowed: part
            ),
            Endpoint(
                method: .get,
                path: "/v1/licences",
                body: [],
                contentType: nil,
                allowed: ["operator", "participant", "licensee", "auditor", "outsider"]
            ),
            Endpoint(
                method: .get,
                path: "/v1/licences/\(licence)",
                body: [],
                contentType: nil,
                allowed: ["licensee", "operator"]
            ),
            Endpoint(
                method: .get,
                path: "/v1/licences/\(licence)/versions/1/container",
                body: [],
                contentType: nil,
                allowed: ["licensee"]
            ),
        ]
    }
}

@Suite(.serialized) struct AccessControlTests {
    enum Attack: String, CaseIterable {
        case noSignature, badSignature, staleTime, replayedNonce, unknownKey, suspendedKey
        case participant, licensee, auditor, `operator`, otherFederation
    }

    /// Every signed endpoint × every attack: the exact status, a `request.refused` audit entry for
    /// each refusal, and stored state unchanged.
    @Test func everyEndpointRefusesEveryAttack() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let participantKey = Hex.encode(fixture.members["participant"]!.publicKey.rawRepresentation)
        // A published model and the licensee's granted licence, for the licensing routes.
        let op = try await fixture.caller(fixture.operatorKey)
        _ = try await fixture.exchange.publish(
            op,
            federation: "alpha",
            PublishRequest(description: "m", offer: LicenceOffer())
        )
        let licence = try await fixture.exchange.requestLicence(
            try await fixture.caller(fixture.members["licensee"]!),
            federation: "alpha",
            LicenceRequest(entitlements: ["inference"])
        ).id
        _ = try await fixture.exchange.decide(op, id: licence, LicenceDecision(action: "grant"))
        let modelDigest = Hex.encode(
            try await fixture.exchange.model(
                try await fixture.caller(fixture.members["participant"]!),
                federation: "alpha"
            )
            .digest
        )
        let (cases, anonymous) = try await app.test(.router) { client -> (Int, Int) in
            var cases = 0
            var anonymous = 0
            for endpoint in Endpoint.all(participantKey: participantKey, licence: licence, modelDigest: modelDigest) {
                for attack in Attack.allCases {
                    let role: String? =
                        switch attack {
                        case .participant, .licensee, .auditor, .operator: attack.rawValue
                        case .otherFederation: "outsider"
                        case .suspendedKey: "suspended"
                        default: nil
                        }
                    if let role, endpoint.allowed.contains(role) { continue }
                    cases += 1
                    let key =
                        try attack == .unknownKey
                        ? Ed25519.PrivateKey() : fixture.members[role ?? endpoint.allowed.sorted().first!]!
                    // A POST carries its request id, as clients send it.
                    var endpoint = endpoint
                    if endpoint.method == .post { endpoint.path = RequestSignature.withRequestID(endpoint.path) }
                    var (time, nonce) = (
                        unixTime() - (attack == .staleTime ? 61 : 0),
                        SecureRandom.bytes(RequestSignature.nonceByteCount)
                    )
                    if attack == .replayedNonce {
                        // A request the broker answered (or refused) once, its nonce sent again.
                        let first = try RequestSignature.sign(
                            method: "GET",
                            target: "/v1/me",
                            bodyDigest: try RequestSignature.digest([]),
                            identity: key,
                            broker: fixture.broker
                        )
                        _ = try await send(client, .get, "/v1/me", [], nil, first)
                        (time, nonce) = (first.time, first.nonce)
                    }
                    // A sealed route gets a sealed body, as a client following the protocol sends.
                    let sealed = SealedBody.routes(method: endpoint.method.rawValue, path: endpoint.path).request
                    let body =
                        sealed
                        ? try SealedBody.member(
                            identity: key,
                            broker: fixture.broker,
                            transport: fixture.exchange.keys.transport.publicKey,
                            method: endpoint.method.rawValue,
                            target: endpoint.path,
                            time: time,
                            nonce: nonce
                        ).seal(endpoint.body, .request) : endpoint.body
                    let signature = try RequestSignature.sign(
                        method: endpoint.method.rawValue,
                        target: endpoint.path,
                        bodyDigest: try signedDigest(endpoint.path, attack == .badSignature ? body + [0] : body),
                        identity: key,
                        broker: fixture.broker,
                        time: time,
                        nonce: nonce
                    )
                    let before = try await fixture.state()
                    let size = fixture.log.size
                    let status = try await send(
                        client,
                        endpoint.method,
                        endpoint.path,
                        body,
                        sealed ? SealedBody.contentType : endpoint.contentType,
                        attack == .noSignature ? nil : signature
                    )
                    let expected =
                        switch attack {
                        case .noSignature, .badSignature, .staleTime, .replayedNonce, .unknownKey: 401
                        default: 403
                        }
                    #expect(status == expected, "\(endpoint) with \(attack)")
                    if expected == 401 {
                        // Anyone could send it: counted for the minute's summary, not logged alone.
                        #expect(fixture.log.size == size, "\(endpoint) with \(attack): no entry of its own")
                        anonymous += 1
                    } else {
                        #expect(fixture.log.size == size + 1, "\(endpoint) with \(attack): one audit entry")
                        let entry = try fixture.log.entry(fixture.log.size - 1)
                        #expect(
                            entry.action == "request.refused" && entry.outcome == .refused,
                            "\(endpoint) with \(attack)"
                        )
                        #expect(entry.reason.hasPrefix("\(expected) "), "\(endpoint) with \(attack): \(entry.reason)")
                    }
                    let after = try await fixture.state()
                    #expect(after == before, "\(endpoint) with \(attack): state changed")
                }
            }
            return (cases, anonymous)
        }
        // 28 endpoints × 11 attacks, less the callers that are allowed: 5 on /v1/me, the operator
        // and the auditor on the 2 audit routes, the operator on the 11 admin routes, the participant on the 9 participant routes (evaluations among
        // them), and on the licensing routes 3 on the listing, 2 on requests, 5 on one's own
        // licences, 2 on a licence and 1 on its container.
        #expect(cases == 28 * 11 - 5 - 4 - 11 - 9 - 3 - 2 - 5 - 2 - 1)
        // The replay attack's first sending succeeded; every other 401 is in one summary entry
        // (router tests have no peer address: the source is "unknown").
        #expect(anonymous == 28 * 5)
        let size = fixture.log.size
        await fixture.exchange.flushRefusals(force: true)
        #expect(fixture.log.size == size + 1)
        let summary = try fixture.log.entry(size)
        #expect(summary.action == "request.refused" && summary.actor == "anonymous" && summary.objectID == "unknown")
        #expect(
            summary.reason.hasPrefix(
                "\(anonymous) unauthenticated or rate-limited requests refused in the minute from "
            )
        )
        #expect(summary.reason.hasSuffix(": \(anonymous) × 401"))
    }

    /// Enrolment admits an unknown key but nothing else that is wrong.
    @Test func enrolmentRefusals() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        let body = Fixture.unknownInviteEnrolment
        try await app.test(.router) { client in
            func attempt(_ key: Ed25519.PrivateKey, time: Int64 = unixTime(), signed: Bool = true) async throws -> Int {
                let nonce = SecureRandom.bytes(RequestSignature.nonceByteCount)
                let target = RequestSignature.withRequestID("/v1/enrol")
                let sealed = try SealedBody.member(
                    identity: key,
                    broker: fixture.broker,
                    transport: fixture.exchange.keys.transport.publicKey,
                    method: "POST",
                    target: target,
                    time: time,
                    nonce: nonce
                ).seal(body, .request)
                let signature = try RequestSignature.sign(
                    method: "POST",
                    target: target,
                    bodyDigest: try RequestSignature.digest(sealed),
                    identity: key,
                    broker: fixture.broker,
                    time: time,
                    nonce: nonce
                )
                return try await send(
                    client,
                    .post,
                    target,
                    sealed,
                    SealedBody.contentType,
                    signed ? signature : nil
                )
            }
            let unsigned = try await attempt(try Ed25519.PrivateKey(), signed: false)
            let stale = try await attempt(try Ed25519.PrivateKey(), time: unixTime() - 3600)
            let noInvite = try await attempt(try Ed25519.PrivateKey())
            let enrolled = try await attempt(fixture.members["participant"]!)
            let suspended = try await attempt(fixture.members["suspended"]!)
            let statuses: [Int] = [unsigned, stale, noInvite, enrolled, suspended]
            // An enrolled key may join another federation, so its unknown invite is refused as such.
            #expect(statuses == [401, 401, 403, 403, 403])
        }
    }
}

/// Sends one request and returns its status.
func send(
    _ client: some TestClientProtocol,
    _ method: HTTPRequest.Method,
    _ path: String,
    _ body: [UInt8],
    _ contentType: String?,
    _ signature: RequestSignature?
) async throws -> Int {
    try await exchange(client, method, path, body, contentType, signature).status
}

/// Sends one request and returns its status and body.
func exchange(
    _ client: some TestClientProtocol,
    _ method: HTTPRequest.Method,
    _ path: String,
    _ body: [UInt8],
    _ contentType: String?,
    _ signature: RequestSignature?
) async throws -> (status: Int, body: [UInt8]) {
    var headers = HTTPFields()
    for (name, value) in signature?.headers ?? [] { headers[HTTPField.Name(name)!] = value }
    if signature != nil {
        headers[HTTPField.Name(RequestSignature.bodyDigestHeader)!] = Hex.encode(try signedDigest(path, body))
    }
    if let contentType { headers[.contentType] = contentType }
    return try await client.execute(uri: path, method: method, headers: headers, body: ByteBuffer(bytes: body)) {
        (Int($0.status.code), Array($0.body.readableBytesView))
    }
}

/// The digest a request to `path` signs: a masked-input upload's commitment, else the body's digest.
func signedDigest(_ path: String, _ body: [UInt8]) throws -> [UInt8] {
    path.split(separator: "?")[0].hasSuffix("/input")
        ? try MaskedUpload.commitment(ofBody: body) : try RequestSignature.digest(body)
}

/// A logger that drops everything: the refusals the tests provoke by the thousand are asserted,
/// not printed.
let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

@Suite struct RequestTargetTests {
    /// A target longer than the entries that would carry it can hold is refused before its
    /// signature is checked; one at the limit is verified and carried whole.
    @Test func longTargetsAreRefused() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let digest = try RequestSignature.digest([])
        for (length, refused) in [(1024, false), (1025, true)] {
            let target = "/v1/me?" + String(repeating: "a", count: length - 7)
            let signature = try RequestSignature.sign(
                method: "GET",
                target: target,
                bodyDigest: digest,
                identity: fixture.operatorKey,
                broker: fixture.broker,
                time: fixture.now()
            )
            let result = Result {
                try fixture.exchange.verify(method: "GET", target: target, signature: signature, bodyDigest: digest)
            }
            switch result {
            case .success(let request):
                #expect(!refused && request.target == target)
            case .failure(let error):
                #expect(
                    refused
                        && (error as? ExchangeError)
                            == ExchangeError(.malformed, "the request target is longer than 1024 bytes")
                )
            }
        }
    }
}

@Suite struct ServerErrorTests {
    /// A log handler that keeps every message with its metadata, one line each.
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
    }

    struct Capture: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            lines.all.withLock { $0.append(([event.message.description] + fields).joined(separator: " ")) }
        }
    }

    /// A failure inside the broker is answered 500 with an error id and no detail; the broker's
    /// log has the same id with the cause.
    @Test func aServerErrorCarriesAnIDThatIsInTheLog() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let lines = Lines()
        let logger = Logger(label: "test") { _ in Capture(lines: lines) }
        try await fixture.exchange.store.write { db in try db.execute(sql: "DROP TABLE listings") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: logger))
        try await app.test(.router) { client in
            let reply = try await fixture.request(
                client,
                fixture.members["licensee"]!,
                .get,
                "/v1/federations/alpha/listing"
            )
            #expect(reply.status == 500)
            let problem = try JSONDecoder().decode(Problem.self, from: Data(reply.body))
            let id = try #require(problem.message.firstMatch(of: /error id ([0-9a-f]{12});/)?.1)
            #expect(problem.message == "the broker failed to answer (error id \(id); its log has the cause)")
            let logged = lines.all.withLock { $0 }.filter { $0.contains("error-id=\(id)") }
            #expect(logged.count == 1)
            #expect(logged.first?.contains("no such table: listings") == true, "\(logged)")
            #expect(logged.first?.contains("path=/v1/federations/alpha/listing") == true)
        }
    }
}

@Suite struct StandingTests {
    /// The operator names a member by its fingerprint (or key) to suspend it and to resume it;
    /// each change is one audit entry, and a repeat changes nothing.
    @Test func suspendAndResumeByFingerprint() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let app = Application(router: BrokerServer.router(fixture.exchange, logger: quiet))
        try await app.test(.router) { client in
            let member = fixture.members["participant"]!
            let base = "/v1/admin/federations/alpha/participants/"
            func standing(_ name: String, _ action: String) async throws -> (status: Int, body: [UInt8]) {
                try await fixture.request(client, fixture.operatorKey, .post, base + name + "/" + action)
            }
            func me() async throws -> Int { try await fixture.request(client, member, .get, "/v1/me").status }
            let size = fixture.log.size
            let suspended = try await standing(member.publicKey.fingerprint, "suspend")
            #expect(suspended.status == 200)
            #expect(try JSONDecoder().decode(MemberRecord.self, from: Data(suspended.body)).status == "suspended")
            #expect(try await me() == 403)
            #expect(try await standing(member.publicKey.fingerprint, "suspend").status == 200)
            let resumed = try await standing(Hex.encode(member.publicKey.rawRepresentation), "resume")
            #expect(try JSONDecoder().decode(MemberRecord.self, from: Data(resumed.body)).status == "active")
            #expect(try await me() == 200)
            let actions = try (size..<fixture.log.size).map { try fixture.log.entry($0) }
                .filter { $0.action.hasPrefix("member.") }.map { "\($0.action) \($0.objectID)" }
            let fingerprint = member.publicKey.fingerprint
            #expect(actions == ["member.suspend \(fingerprint)", "member.resume \(fingerprint)"])
            #expect(try await standing("ed25519:" + String(repeating: "0", count: 32), "suspend").status == 404)
            #expect(try await standing("someone", "suspend").status == 400)
            // A member of another federation is not this one's to suspend.
            let outsider = fixture.members["outsider"]!.publicKey.fingerprint
            #expect(try await standing(outsider, "suspend").status == 404)
        }
    }

    /// A display name recorded for a member's fingerprint is in the operator's lists of members
    /// and licences, and in nothing a member reads.
    @Test func displayNamesAreTheOperatorsOnly() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let (member, licensee) = (fixture.members["participant"]!, fixture.members["licensee"]!)
        for (key, name) in [(member, "Ada <Example>"), (licensee, "Lin Licensee")] {
            _ = try fixture.log.recordPerson(
                .init(id: key.publicKey.fingerprint, displayName: name, contact: "x@example.org"),
                actor: "operator",
                time: "2026-12-01T00:00:00Z"
            )
        }
        let op = try await fixture.caller(fixture.operatorKey)
        let names = try await fixture.exchange.members(op, federation: "alpha").map {
            "\($0.fingerprint) \($0.name ?? "-")"
        }
        #expect(names.contains("\(member.publicKey.fingerprint) Ada <Example>"))
        #expect(names.filter { $0.hasSuffix(" -") }.count == names.count - 2)
        _ = try await fixture.exchange.publish(
            op,
            federation: "alpha",
            PublishRequest(description: "m", offer: LicenceOffer())
        )
        let asked = try await fixture.exchange.requestLicence(
            try await fixture.caller(licensee),
            federation: "alpha",
            LicenceRequest(entitlements: ["inference"])
        )
        #expect(asked.licenseeName == nil)
        #expect(try await fixture.exchange.licences(op, federation: "alpha").map(\.licenseeName) == ["Lin Licensee"])
        let own = try await fixture.exchange.me(try await fixture.caller(member), federation: nil)
        #expect(own.name == nil && own.fingerprint == member.publicKey.fingerprint)
    }
}

/// One key, several federations: a membership is a key in a federation, with its own role and
/// standing.
/// The exchange's blocking work runs on its own thread, not on Swift's cooperative pool.
@Suite struct ExchangeThreadTests {
    @Test func theExchangeRunsOnItsOwnThread() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        #expect(await fixture.exchange.onOwnThread())
        #expect(!fixture.exchange.executor.isCurrent)
        // Its work goes on there: a state change and a read from it.
        let op = try await fixture.caller(fixture.operatorKey)
        let invite = try await fixture.exchange.invite(op, federation: "alpha", InviteRequest(role: .licensee))
        #expect(invite.federation == "alpha")
    }
}

extension Exchange {
    /// Whether the actor runs this on its own thread.
    func onOwnThread() -> Bool { executor.isCurrent }
}

@Suite struct MembershipTests {
    static let delivery = String(repeating: "ab", count: 32)

    /// A participant of alpha joins beta with the same key: it reads and is listed in both; a
    /// second invite to alpha is refused and left unused; suspended in alpha it still works in
    /// beta, and suspended in both it is refused at the door.
    @Test func oneKeyInSeveralFederations() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let exchange = fixture.exchange
        let op = try await fixture.caller(fixture.operatorKey)
        let key = fixture.members["participant"]!
        let fingerprint = key.publicKey.fingerprint
        func enrol(_ invite: Invite, as key: Ed25519.PrivateKey, enrolling: Bool = false) async throws -> MemberRecord {
            try await exchange.enrol(
                try await fixture.caller(key, enrolling: enrolling),
                EnrolRequest(invite: String(invite.code.prefix(32)), deliveryKey: Self.delivery)
            )
        }
        let again = try await exchange.invite(op, federation: "alpha", InviteRequest(role: .licensee))
        let twice = await #expect(throws: ExchangeError.self) { try await enrol(again, as: key) }
        #expect(twice?.code == .conflict)
        #expect(
            twice?.message
                == "key \(fingerprint) is already a participant of federation alpha; the invite is left unused"
        )
        let beta = try await enrol(
            try await exchange.invite(op, federation: "beta", InviteRequest(role: .licensee)),
            as: key
        )
        #expect(beta.federation == "beta" && beta.role == .licensee && beta.fingerprint == fingerprint)
        // The refused invite still works for another key.
        #expect(try await enrol(again, as: try Ed25519.PrivateKey(), enrolling: true).federation == "alpha")

        _ = try await exchange.publish(op, federation: "beta", PublishRequest(description: "m", offer: LicenceOffer()))
        var caller = try await fixture.caller(key)
        #expect(caller.name == "licensee+participant:\(fingerprint)")
        #expect(try await exchange.federationInfo(caller, federation: "alpha").spec.id == "alpha")
        #expect(try await exchange.listing(caller, federation: "beta").model == "beta")
        #expect(try await exchange.me(caller, federation: "beta").role == .licensee)
        let ambiguous = await #expect(throws: ExchangeError.self) { try await exchange.me(caller, federation: nil) }
        #expect(ambiguous?.code == .malformed)
        #expect(ambiguous?.message.hasSuffix("federations alpha, beta: name one with ?federation=") == true)
        for federation in ["alpha", "beta"] {
            let listed = try await exchange.members(op, federation: federation).filter { $0.fingerprint == fingerprint }
            #expect(listed.map(\.federation) == [federation])
        }

        _ = try await exchange.setStanding(op, federation: "alpha", member: fingerprint, suspended: true)
        caller = try await fixture.caller(key)
        let suspended = await #expect(throws: ExchangeError.self) {
            try await exchange.federationInfo(caller, federation: "alpha")
        }
        #expect(suspended?.code == .forbidden)
        #expect(suspended?.message == "key \(fingerprint) is suspended in federation alpha")
        #expect(try await exchange.listing(caller, federation: "beta").model == "beta")
        #expect(try await exchange.me(caller, federation: "alpha").status == "suspended")
        #expect(try await exchange.me(caller, federation: "beta").status == "active")

        _ = try await exchange.setStanding(op, federation: "beta", member: fingerprint, suspended: true)
        let door = await #expect(throws: ExchangeError.self) { try await fixture.caller(key) }
        #expect(door?.code == .forbidden)
    }

    /// A node that crashed after the broker accepted its enrolment but before it wrote its record
    /// enrols again with the same invite and gets the same record, and nothing is logged or
    /// stored twice; with another delivery key, or from another key, the used invite is refused.
    @Test func theSameEnrolmentAskedAgainGetsItsRecord() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let exchange = fixture.exchange
        let op = try await fixture.caller(fixture.operatorKey)
        let invite = try await exchange.invite(op, federation: "beta", InviteRequest(role: .participant))
        let secret = String(invite.code.prefix(32))
        let key = try Ed25519.PrivateKey()
        let first = try await exchange.enrol(
            try await fixture.caller(key, enrolling: true),
            EnrolRequest(invite: secret, deliveryKey: Self.delivery)
        )
        let size = fixture.log.size
        let again = try await exchange.enrol(
            try await fixture.caller(key),
            EnrolRequest(invite: secret, deliveryKey: Self.delivery)
        )
        #expect(again == first)
        #expect(fixture.log.size == size)
        let otherDelivery = await #expect(throws: ExchangeError.self) {
            try await exchange.enrol(
                try await fixture.caller(key),
                EnrolRequest(invite: secret, deliveryKey: String(repeating: "cd", count: 32))
            )
        }
        #expect(otherDelivery?.message == "this invite was already used")
        let otherKey = await #expect(throws: ExchangeError.self) {
            try await exchange.enrol(
                try await fixture.caller(try Ed25519.PrivateKey(), enrolling: true),
                EnrolRequest(invite: secret, deliveryKey: Self.delivery)
            )
        }
        #expect(otherKey?.message == "this invite was already used")
    }

    /// A participant of alpha that audits beta reads the log while its auditor membership stands;
    /// suspended as beta's auditor it is refused the log, though alpha still admits it.
    @Test func aSuspendedAuditorMembershipDoesNotOpenTheLog() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let exchange = fixture.exchange
        let op = try await fixture.caller(fixture.operatorKey)
        let key = fixture.members["participant"]!
        let fingerprint = key.publicKey.fingerprint
        let invite = try await exchange.invite(op, federation: "beta", InviteRequest(role: .auditor))
        _ = try await exchange.enrol(
            try await fixture.caller(key),
            EnrolRequest(invite: String(invite.code.prefix(32)), deliveryKey: Self.delivery)
        )
        let files = try await exchange.auditBundle(try await fixture.caller(key), filter: AuditBundle.Filter())
        #expect(files.files.isEmpty == false)
        _ = try await exchange.setStanding(op, federation: "beta", member: fingerprint, suspended: true)
        let caller = try await fixture.caller(key)
        #expect(try await exchange.federationInfo(caller, federation: "alpha").spec.id == "alpha")
        let refused = await #expect(throws: ExchangeError.self) {
            try await exchange.complianceReport(caller, format: .markdown)
        }
        #expect(refused?.code == .forbidden)
        #expect(refused?.message == "key \(fingerprint) is suspended in federation beta")
        let bundle = await #expect(throws: ExchangeError.self) {
            try await exchange.auditBundle(caller, filter: AuditBundle.Filter())
        }
        #expect(bundle?.message == "key \(fingerprint) is suspended in federation beta")
        let participant = await #expect(throws: ExchangeError.self) {
            try await exchange.complianceReport(
                try await fixture.caller(fixture.members["outsider"]!),
                format: .markdown
            )
        }
        #expect(participant?.code == .forbidden)
    }

    /// A broker database from before memberships (members keyed by key alone) keeps every
    /// member, with its standing and attendance, when the migration rebuilds the table.
    @Test func migrationKeepsMembers() async throws {
        let fixture = try await Fixture(settings: TestClock().settings)
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let path = fixture.folder + "/old.sqlite"
        let rows: [[any DatabaseValueConvertible & Sendable]] = [
            [Data(repeating: 1, count: 32), "operator", "*", "active", 10, Data?.none, 0],
            [Data(repeating: 2, count: 32), "participant", "alpha", "inactive", 11, Data(repeating: 9, count: 32), 3],
            [Data(repeating: 3, count: 32), "licensee", "beta", "suspended", 12, Data(repeating: 8, count: 32), 0],
        ]
        do {
            let store = try BrokerStore(path: path)
            // Back to the shape of v1–v7, with rows, as an older broker left it.
            try store.write { db in
                try db.execute(
                    sql: """
                        DROP TABLE members;
                        CREATE TABLE members (
                            key BLOB PRIMARY KEY CHECK (length(key) = 32), role TEXT NOT NULL,
                            federation TEXT NOT NULL, status TEXT NOT NULL, enrolled INTEGER NOT NULL,
                            delivery_key BLOB, missed INTEGER NOT NULL DEFAULT 0);
                        DELETE FROM grdb_migrations WHERE identifier LIKE 'v8:%';
                        """
                )
                for row in rows {
                    try db.execute(
                        sql:
                            "INSERT INTO members (key, role, federation, status, enrolled, delivery_key, missed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        arguments: StatementArguments(row)
                    )
                }
            }
        }
        let store = try BrokerStore(path: path)
        let kept = try store.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM members ORDER BY key").map { row in
                "\((row["key"] as Data)[0]) \(row["role"] as String) \(row["federation"] as String) \(row["status"] as String) \(row["enrolled"] as Int) \((row["delivery_key"] as Data?)?.first ?? 0) \(row["missed"] as Int)"
            }
        }
        #expect(
            kept == [
                "1 operator * active 10 0 0", "2 participant alpha inactive 11 9 3", "3 licensee beta suspended 12 8 0",
            ]
        )
        // The same key now joins a second federation.
        try store.write { db in
            try db.execute(
                sql:
                    "INSERT INTO members (key, role, federation, status, enrolled) VALUES (?, 'participant', 'beta', 'active', 13)",
                arguments: [Data(repeating: 2, count: 32)]
            )
        }
        #expect(
            try store.read { db in try Member.fetchAll(db, key: Array(repeating: 2, count: 32)).map(\.federation) } == [
                "alpha", "beta",
            ]
        )
    }
}
