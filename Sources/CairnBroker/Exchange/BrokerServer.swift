import CMalloc
import CairnAudit
import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import HTTPTypes
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
import NIOHTTPTypes
public import NIOSSL
import Prometheus
import ServiceLifecycle

/// The broker's HTTP API over an ``Exchange`` (`Protocol/openapi.yaml` lists every route).
///
/// Each handler reads and checks the request, calls the exchange and encodes the answer; every
/// refusal is answered with a ``Problem`` body and audited, in one place (``respond(_:_:_:)``).
public enum BrokerServer {
    /// The largest SecAgg+ message body accepted (4 MiB).
    public static let maximumBody = 4 << 20
    /// The largest JSON body accepted (a federation's description with its schema: 1 MiB).
    public static let maximumSpecBody = 1 << 20
    /// The largest of the other JSON bodies (64 KiB).
    public static let maximumJSONBody = 64 << 10

    /// The router with every route.
    public static func router(_ exchange: Exchange, logger: Logger) -> Router<BrokerRequestContext> {
        let router = Router(context: BrokerRequestContext.self)
        router.get("/healthz") { _, _ in
            // Through the exchange and its database, as a signed request goes: a broker whose
            // actor or store is stuck is not healthy.
            let ready = await exchange.ready()
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                body: .init(byteBuffer: ByteBuffer(string: ready ? "ok\n" : "unavailable\n"))
            )
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: exchange.metrics.registry.emitToBuffer()))
            )
        }
        router.get("/v1/broker") { request, context in
            await respond(exchange, request, context, logger) { _ in try json(await exchange.info()) }
        }
        router.post("/v1/enrol") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody, enrolling: true)
                return try call.json(
                    await exchange.enrol(call.caller!, try decode(EnrolRequest.self, body)),
                    status: .created
                )
            }
        }
        router.get("/v1/me") { request, context in
            await respond(exchange, request, context, logger) { call in
                let federation = request.uri.queryParameters.get("federation").map { String($0) }
                return try json(await exchange.me(try await call.caller(), federation: federation))
            }
        }
        router.get("/v1/admin/federations") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(await exchange.federations(try await call.caller()))
            }
        }
        router.post("/v1/admin/federations") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumSpecBody)
                let spec = try decode(FederationSpec.self, body)
                try await exchange.createFederation(call.caller!, spec)
                return try call.json(await exchange.status(call.caller!, federation: spec.id), status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.status(try await call.caller(), federation: try parameter(context, "federation"))
                )
            }
        }
        router.post("/v1/admin/federations/{federation}/invites") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                let invite = try await exchange.invite(
                    call.caller!,
                    federation: try parameter(context, "federation"),
                    try decode(InviteRequest.self, body)
                )
                return try call.json(invite, status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}/participants") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.members(try await call.caller(), federation: try parameter(context, "federation"))
                )
            }
        }
        for (action, suspended) in [("suspend", true), ("resume", false)] {
            router.post("/v1/admin/federations/{federation}/participants/{key}/\(action)") { request, context in
                await respond(exchange, request, context, logger) { call in
                    _ = try await call.body(json: false, limit: 0)
                    return try call.json(
                        await exchange.setStanding(
                            call.caller!,
                            federation: try parameter(context, "federation"),
                            member: try parameter(context, "key"),
                            suspended: suspended
                        )
                    )
                }
            }
        }
        router.post("/v1/admin/federations/{federation}/training") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                return try call.json(
                    await exchange.training(
                        call.caller!,
                        federation: try parameter(context, "federation"),
                        try decode(TrainingRequest.self, body)
                    )
                )
            }
        }
        router.get("/v1/federations/{federation}") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.federationInfo(
                        try await call.caller(),
                        federation: try parameter(context, "federation")
                    )
                )
            }
        }
        router.get("/v1/federations/{federation}/model") { request, context in
            await respond(exchange, request, context, logger) { call in
                let (file, round, digest) = try await exchange.model(
                    try await call.caller(),
                    federation: try parameter(context, "federation")
                )
                return try call.reply(
                    file,
                    contentType: "application/octet-stream",
                    headers: [
                        HTTPField.Name("Cairn-Model-Round")!: String(round),
                        HTTPField.Name("Cairn-Model-Digest")!: Hex.encode(digest),
                    ]
                )
            }
        }
        router.post("/v1/admin/federations/{federation}/publish") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                let version = try await exchange.publish(
                    call.caller!,
                    federation: try parameter(context, "federation"),
                    try decode(PublishRequest.self, body)
                )
                return try call.json(version, status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}/licences") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.licences(try await call.caller(), federation: try parameter(context, "federation"))
                )
            }
        }
        router.post("/v1/admin/licences/{licence}") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                return try call.json(
                    await exchange.decide(
                        call.caller!,
                        id: try parameter(context, "licence"),
                        try decode(LicenceDecision.self, body)
                    )
                )
            }
        }
        router.get("/v1/federations/{federation}/listing") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.listing(try await call.caller(), federation: try parameter(context, "federation"))
                )
            }
        }
        router.post("/v1/federations/{federation}/licences") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                let record = try await exchange.requestLicence(
                    call.caller!,
                    federation: try parameter(context, "federation"),
                    try decode(LicenceRequest.self, body)
                )
                return try call.json(record, status: .created)
            }
        }
        router.post("/v1/federations/{federation}/evaluations") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                let report = try await exchange.reportEvaluation(
                    call.caller!,
                    federation: try parameter(context, "federation"),
                    try decode(EvaluationReport.self, body)
                )
                return try call.json(report, status: .created)
            }
        }
        router.get("/v1/audit/bundle") { request, context in
            await respond(exchange, request, context, logger) { call in
                let query = request.uri.queryParameters
                func value(_ name: String) throws -> String? {
                    guard let found = query.get(name) else { return nil }
                    let value = String(found)
                    guard value.utf8.count <= 200 else { throw ExchangeError(.malformed, "\(name) is too long") }
                    return value
                }
                if let action = try value("action"), !AuditEntry.actions.contains(action) {
                    throw ExchangeError(
                        .malformed,
                        "no entry has the action \(action); the actions are \(AuditEntry.actions.joined(separator: ", "))"
                    )
                }
                let filter = AuditBundle.Filter(
                    from: try value("from"),
                    to: try value("to"),
                    actor: try value("actor"),
                    action: try value("action")
                )
                return try call.json(await exchange.auditBundle(try await call.caller(), filter: filter))
            }
        }
        router.get("/v1/audit/report") { request, context in
            await respond(exchange, request, context, logger) { call in
                let name = request.uri.queryParameters.get("format").map { String($0) } ?? "markdown"
                guard let format = ComplianceReport.Format(rawValue: name) else {
                    throw ExchangeError(.malformed, "format is markdown or html, not \(name.prefix(40))")
                }
                let text = try await exchange.complianceReport(try await call.caller(), format: format)
                return try call.reply(
                    Array(text.utf8),
                    contentType: format == .html ? "text/html; charset=utf-8" : "text/markdown; charset=utf-8"
                )
            }
        }
        router.get("/v1/federations/{federation}/checkpoint") { request, context in
            await respond(exchange, request, context, logger) { call in
                let from = request.uri.queryParameters.get("from").map { String($0) } ?? "0"
                guard from.utf8.count <= 18, let size = Int(from), size >= 0 else {
                    throw ExchangeError(.malformed, "from must be a tree size (a whole number ≥ 0)")
                }
                return try json(
                    await exchange.witnessView(
                        try await call.caller(),
                        federation: try parameter(context, "federation"),
                        from: size
                    )
                )
            }
        }
        router.post("/v1/federations/{federation}/cosignatures") { request, context in
            await respond(exchange, request, context, logger) { call in
                let body = try await call.body(json: true, limit: maximumJSONBody)
                let receipt = try await exchange.cosign(
                    call.caller!,
                    federation: try parameter(context, "federation"),
                    try decode(CosignatureReport.self, body)
                )
                return try call.json(receipt, status: .created)
            }
        }
        router.get("/v1/licences") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(await exchange.ownLicences(try await call.caller()))
            }
        }
        router.get("/v1/licences/{licence}") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(await exchange.licence(try await call.caller(), id: try parameter(context, "licence")))
            }
        }
        router.get("/v1/licences/{licence}/versions/{version}/container") { request, context in
            await respond(exchange, request, context, logger) { call in
                let caller = try await call.caller()
                guard let text = context.parameters.get("version"), text.utf8.count <= 9, let version = Int(text) else {
                    throw ExchangeError(.malformed, "a version is a number from 1")
                }
                let container = try await exchange.deliver(
                    caller,
                    id: try parameter(context, "licence"),
                    version: version
                )
                return Response(
                    status: .ok,
                    headers: [.contentType: "application/octet-stream"],
                    body: .init(byteBuffer: ByteBuffer(bytes: container))
                )
            }
        }
        router.get("/v1/federations/{federation}/round") { request, context in
            await respond(exchange, request, context, logger) { call in
                try json(
                    await exchange.roundView(try await call.caller(), federation: try parameter(context, "federation"))
                )
            }
        }
        for phase in [ExchangePhase.advertise, .share, .check, .unmask] {
            router.post("/v1/federations/{federation}/rounds/{round}/\(phase.rawValue)") { request, context in
                await respond(exchange, request, context, logger) { call in
                    let body = try await call.body(json: false, limit: maximumBody)
                    try await exchange.submit(
                        call.caller!,
                        federation: try parameter(context, "federation"),
                        round: try roundNumber(context),
                        phase: phase,
                        body: body
                    )
                    return call.accepted()
                }
            }
        }
        router.post("/v1/federations/{federation}/rounds/{round}/input") { request, context in
            await respond(exchange, request, context, logger) { call in
                try await upload(exchange, call, context)
            }
        }
        return router
    }

    /// Connections served at once; more wait in the listen backlog until one closes. Each idle
    /// connection holds a few KiB, and a connection without a request in progress closes after
    /// ``ConnectionGuard/Limits/idle``.
    public static let maximumConnections = 1024

    /// The application: the router on `address` with the round clock beside it, both under
    /// one service group by the caller (``service(_:address:logger:)``).
    public static func application(
        _ exchange: Exchange,
        host: String,
        port: Int,
        tls: TLSConfiguration? = nil,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        _ = returnLargeBlocks
        let http = HTTPServerBuilder.http1(
            configuration: .init(additionalChannelHandlers: [ReadSizes(), ConnectionGuard(.init())])
        )
        return Application(
            router: router(exchange, logger: logger),
            server: try tls.map { try .tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(
                address: .hostname(host, port: port),
                serverName: "cairn-broker",
                availableConnectionsDelegate: MaximumAvailableConnections(maximumConnections, logger: logger)
            ),
            services: [RoundClock(exchange: exchange)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (requests in flight finish,
    /// the round clock signs a last checkpoint); over TLS when `tls` is given.
    public static func run(
        _ exchange: Exchange,
        host: String,
        port: Int,
        tls: TLSConfiguration? = nil,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try await application(
            exchange,
            host: host,
            port: port,
            tls: tls,
            logger: logger,
            onServerRunning: onServerRunning
        )
        .runService()
    }

    /// Fixes glibc's allocator thresholds, once per process. By default glibc raises its mmap
    /// threshold to the size of the largest block freed (up to 32 MiB), after which every
    /// `4 · D`-byte buffer of a round (the sum, upload buffers, models) comes from the heap and
    /// its pages stay with the broker after it is freed. Fixed, a block of 256 KiB or more is
    /// mapped and unmapped on its own, and free heap over 1 MiB is given back.
    private static let returnLargeBlocks: Void = {
        if mallopt(M_MMAP_THRESHOLD, 256 << 10) != 1 || mallopt(M_TRIM_THRESHOLD, 1 << 20) != 1 {
            Logger(label: "cairn.broker").warning("the allocator thresholds could not be set")
        }
    }()

    // MARK: Helpers

    /// One request being answered: authenticates it from its headers before any of its body is
    /// read, then reads the body up to the endpoint's cap and checks it against the digest the
    /// signature covers. Remembers the caller once its signature, time, nonce and key checked
    /// out, so that a refusal after that is audited under its name; a refusal before it is only
    /// counted (``Exchange/countRefusal(source:status:)``).
    final class Call {
        let exchange: Exchange
        let request: Request
        /// The authenticated caller, once known.
        private(set) var caller: Exchange.Caller?
        /// The checked signature, once known (a sealed body's keys come from its nonce and time).
        private var signature: RequestSignature?
        /// Whether this route's request and response bodies are sealed (``SealedBody``).
        let sealing: (request: Bool, response: Bool)
        /// A state-changing request let through as new: its signer, id, path and body digest
        /// (its answer is stored under them, ``Exchange/finish(key:request:path:digest:outcome:)``).
        private(set) var retryable: (key: [UInt8], id: String, path: String, digest: [UInt8])?
        /// The answer made, as stored for retries (the plaintext, before sealing).
        private(set) var answer: Outcome?

        init(_ exchange: Exchange, _ request: Request) {
            self.exchange = exchange
            self.request = request
            sealing = SealedBody.routes(method: request.method.rawValue, path: request.uri.path)
        }

        /// The keys of this request's sealed bodies, made once (the request and its answer share them).
        private var sealKeys: SealedBody?
        private func seal() throws -> SealedBody {
            if let sealKeys { return sealKeys }
            let keys = try SealedBody.broker(
                transport: exchange.keys.transport,
                identity: exchange.keys.identity.publicKey,
                signature: signature!,
                method: request.method.rawValue,
                target: request.uri.description
            )
            sealKeys = keys
            return keys
        }

        /// A successful answer: `body` as it is, or sealed to the caller on a sealed route.
        func reply(
            _ body: [UInt8],
            contentType: String,
            status: HTTPResponse.Status = .ok,
            headers: HTTPFields = [:]
        ) throws -> Response {
            var headers = headers
            headers[.contentType] = sealing.response ? SealedBody.contentType : contentType
            answer = Outcome(status: Int(status.code), contentType: contentType, body: body)
            return Response(
                status: status,
                headers: headers,
                body: .init(byteBuffer: ByteBuffer(bytes: sealing.response ? try seal().seal(body, .response) : body))
            )
        }

        /// A successful answer without a body.
        func accepted(headers: HTTPFields = [:]) -> Response {
            answer = Outcome(status: 202, contentType: nil, body: [])
            return Response(status: .accepted, headers: headers)
        }

        /// A successful JSON answer, sealed on a sealed route.
        func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
            try reply(Array(try JSONEncoder.sorted.encode(value)), contentType: "application/json", status: status)
        }

        /// Authenticates a request without a body (a GET, or a POST whose body is empty).
        func caller() async throws -> Exchange.Caller {
            _ = try await body(json: false, limit: 0)
            return caller!
        }

        /// Authenticates from the headers (the body digest declared in `Cairn-Body-Digest`, or
        /// that of an empty body when absent), then reads at most `limit` bytes of body and
        /// checks them against it.
        func body(json: Bool, limit: Int, enrolling: Bool = false) async throws -> [UInt8] {
            let declared = try declaredDigest()
            _ = try await authenticate(declared, enrolling: enrolling)
            let contentType = request.headers[.contentType]?.split(separator: ";").first.map(String.init) ?? ""
            if sealing.request, limit > 0, contentType != SealedBody.contentType {
                throw ExchangeError(
                    .unsupportedMediaType,
                    "this endpoint takes a sealed body (\(SealedBody.contentType)), not \(contentType.isEmpty ? "no content type" : contentType)"
                )
            }
            if sealing.request {
                // Checked against the sealed type above; the plaintext's type is the endpoint's.
            } else if json, contentType != "application/json" {
                throw ExchangeError(
                    .unsupportedMediaType,
                    "this endpoint takes application/json, not \(contentType.isEmpty ? "no content type" : contentType)"
                )
            }
            if !sealing.request, !json, !contentType.isEmpty, contentType != "application/octet-stream" {
                throw ExchangeError(
                    .unsupportedMediaType,
                    "this endpoint takes application/octet-stream, not \(contentType)"
                )
            }
            // A sealed body is the plaintext and a fixed overhead.
            let cap = sealing.request && limit > 0 ? limit + SealedBody.overhead : limit
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > cap {
                throw ExchangeError(.tooLarge, "the body of \(length) bytes exceeds the \(cap) this endpoint takes")
            }
            let buffer = try await request.body.collect(upTo: cap)
            let body = Array(buffer.readableBytesView)
            guard ConstantTime.equals(try RequestSignature.digest(body), declared) else {
                throw ExchangeError(
                    .unauthenticated,
                    "the body does not match the digest the signature covers (\(RequestSignature.bodyDigestHeader))"
                )
            }
            guard sealing.request else { return body }
            let plaintext = limit > 0 ? try seal().open(body, .request) : body
            if request.method == .post {
                try await begin(
                    try Exchange.requiredRequestID(inTarget: request.uri.description),
                    digest: try RequestSignature.digest(plaintext)
                )
            }
            return plaintext
        }

        /// The body digest the request declares: `Cairn-Body-Digest`, or an empty body's.
        func declaredDigest() throws -> [UInt8] {
            guard let text = request.headers[HTTPField.Name(RequestSignature.bodyDigestHeader)!] else {
                return try RequestSignature.digest([])
            }
            guard text.utf8.count == 64, let digest = try? Hex.decode(text) else {
                throw ExchangeError(
                    .unauthenticated,
                    "the \(RequestSignature.bodyDigestHeader) header must be 64 hex digits"
                )
            }
            return digest
        }

        /// Checks the signed headers against `digest`; the caller is remembered once its
        /// signature, time and nonce hold, before its standing and rate are checked.
        func authenticate(_ digest: [UInt8], enrolling: Bool = false) async throws -> Exchange.Caller {
            let headers = try RequestSignature(header: { self.request.headers[HTTPField.Name($0)!] })
            let signature = try exchange.verify(
                method: request.method.rawValue,
                target: request.uri.description,
                signature: headers,
                bodyDigest: digest
            )
            let caller = try await exchange.identify(verified: signature, enrolling: enrolling)
            self.caller = caller
            self.signature = headers
            let admitted = try await exchange.admit(caller)
            // A sealed body is sealed afresh for each attempt: its retries are told apart by
            // their plaintext, once opened (``body(json:limit:enrolling:)``).
            if request.method == .post {
                let id = try Exchange.requiredRequestID(inTarget: request.uri.description)
                if !sealing.request { try await begin(id, digest: digest) }
            }
            return admitted
        }

        /// Lets a POST through as new, or throws ``Replay`` with the answer to its first attempt.
        private func begin(_ id: String, digest: [UInt8]) async throws {
            let key = caller!.key.rawRepresentation
            if let outcome = try await exchange.begin(key: key, request: id, path: request.uri.path, digest: digest) {
                throw Replay(outcome: outcome)
            }
            retryable = (key, id, request.uri.path, digest)
        }

        /// The answer to a retry, as first made: sealed afresh for the retry on a sealed route.
        /// The body is not read: the connection closes after it.
        func replay(_ outcome: Outcome) throws -> Response {
            var headers: HTTPFields = [.connection: "close", HTTPField.Name("Cairn-Replayed")!: "true"]
            guard (200..<300).contains(outcome.status) else {
                if let type = outcome.contentType { headers[.contentType] = type }
                return Response(
                    status: HTTPResponse.Status(code: outcome.status),
                    headers: headers,
                    body: .init(byteBuffer: ByteBuffer(bytes: outcome.body))
                )
            }
            guard let type = outcome.contentType else {
                return Response(status: HTTPResponse.Status(code: outcome.status), headers: headers)
            }
            return try reply(
                outcome.body,
                contentType: type,
                status: HTTPResponse.Status(code: outcome.status),
                headers: headers
            )
        }

        /// Stores the answer for retries, or forgets the request when its answer is not kept.
        func settle(_ outcome: Outcome?) async {
            guard let (key, id, path, digest) = retryable else { return }
            retryable = nil
            // A refusal is kept for a member only: anyone can make keys and fail to enrol, and
            // such a flood must not become writes.
            let member = caller?.enrolled == true
            if let outcome,
                (200..<300).contains(outcome.status) || (member && Outcome.keeps(refusal: outcome.status))
            {
                await exchange.finish(key: key, request: id, path: path, digest: digest, outcome: outcome)
            } else {
                await exchange.abandon(key: key, request: id)
            }
        }
    }

    /// Thrown once a request is known to repeat one already answered (``Call/replay(_:)``).
    struct Replay: Error {
        let outcome: Outcome
    }

    private static func respond(
        _ exchange: Exchange,
        _ request: Request,
        _ context: BrokerRequestContext,
        _ logger: Logger,
        _ body: (Call) async throws -> Response
    ) async -> Response {
        let call = Call(exchange, request)
        let response: Response
        do {
            response = try await body(call)
            await call.settle(call.answer ?? Outcome(status: Int(response.status.code), contentType: nil, body: []))
        } catch let replay as Replay {
            do {
                response = try call.replay(replay.outcome)
            } catch {
                return Response(status: .internalServerError, headers: [.connection: "close"])
            }
        } catch {
            var refusal = asExchangeError(error)
            if refusal.code == .internal {
                // The caller sees an id; the broker's log has it with the cause.
                let id = Hex.encode(SecureRandom.bytes(6))
                logger.error(
                    "request failed",
                    metadata: [
                        "error-id": "\(id)", "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                        "cause": "\(error)",
                    ]
                )
                refusal = ExchangeError(
                    .internal,
                    "the broker failed to answer (error id \(id); its log has the cause)"
                )
            }
            // A member's refusal is its own entry. A key that is not enrolled (a failed enrolment:
            // anyone can make fresh keys) and a member's rate-limited flood are counted instead.
            if let caller = call.caller, caller.enrolled, refusal.code != .rateLimited {
                await exchange.auditRefusal(
                    caller: caller,
                    method: request.method.rawValue,
                    path: request.uri.path,
                    error: refusal
                )
            } else {
                // Not attributable to a key (anyone can send these) or a flood of one key: counted,
                // and summarised in the log once a minute per source.
                let flooding = exchange.countRefusal(
                    source: call.caller.flatMap { !$0.enrolled ? nil : "key:" + $0.key.fingerprint }
                        ?? context.remoteAddress?.ipAddress ?? "unknown",
                    status: refusal.status
                )
                if flooding { try? await Task.sleep(for: exchange.settings.refusalDelay) }
            }
            logger.debug(
                "request refused",
                metadata: [
                    "method": "\(request.method.rawValue)", "status": "\(refusal.status)", "code": "\(refusal.code)",
                ]
            )
            // The body is not read after a refusal: the connection closes once it is answered.
            var headers: HTTPFields = [.contentType: "application/json", .connection: "close"]
            if refusal.code == .rateLimited || refusal.code == .unavailable { headers[.retryAfter] = "1" }
            let problem =
                (try? JSONEncoder.sorted.encode(Problem(error: "\(refusal.code)", message: refusal.message))) ?? Data()
            await call.settle(Outcome(status: refusal.status, contentType: "application/json", body: Array(problem)))
            exchange.metrics.count(status: refusal.status)
            return Response(
                status: HTTPResponse.Status(code: refusal.status),
                headers: headers,
                body: .init(byteBuffer: ByteBuffer(bytes: problem))
            )
        }
        exchange.metrics.count(status: response.status.code)
        return response
    }

    private static func asExchangeError(_ error: any Error) -> ExchangeError {
        switch error {
        case let error as ExchangeError: error
        case let error as any HTTPResponseError where error.status == .contentTooLarge:
            ExchangeError(.tooLarge, "the body exceeds what this endpoint takes")
        case let error as HTTPError: ExchangeError(.malformed, error.body ?? "bad request")
        case let error as DecodingError: ExchangeError(.malformed, "the JSON body does not fit: \(describe(error))")
        default: ExchangeError(.internal, "the broker failed to answer")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "missing field \(key.stringValue)"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        @unknown default: "invalid JSON"
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(body))
    }

    private static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder.sorted.encode(value)))
        )
    }

    private static func parameter(_ context: BrokerRequestContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name), value.utf8.count <= 128 else {
            throw ExchangeError(.malformed, "the path parameter \(name) is missing or too long")
        }
        return value
    }

    private static func roundNumber(_ context: BrokerRequestContext) throws -> Int {
        guard let text = context.parameters.get("round"), text.utf8.count <= 9, let n = Int(text), n >= 1 else {
            throw ExchangeError(.malformed, "the round is a positive number")
        }
        return n
    }

    /// `POST …/input`: authenticates from the headers, waits for an upload slot, decrypts the
    /// stream chunk by chunk into one `4 · (D + 1)`-byte buffer (each upload on its own task, so
    /// uploads decrypt on as many cores as there are slots), then checks the body's commitment
    /// (its header and chunk tags, ``MaskedUpload/commitment(ofBody:)``) against the signed one
    /// and adds the words to the round's sum. The same upload again is accepted unread. A participant uploads one input
    /// at a time, and the mask phase's closing ends an upload still streaming (the sender's
    /// input is lost; the round goes on without it).
    private static func upload(
        _ exchange: Exchange,
        _ call: Call,
        _ context: BrokerRequestContext
    ) async throws
        -> Response
    {
        let request = call.request
        guard request.headers[HTTPField.Name(RequestSignature.bodyDigestHeader)!] != nil else {
            if request.headers[HTTPField.Name(RequestSignature.signatureHeader)!] == nil {
                _ = try await call.authenticate([])  // refused as unsigned
            }
            throw ExchangeError(
                .malformed,
                "an upload declares its signed body digest in \(RequestSignature.bodyDigestHeader) (64 hex digits)"
            )
        }
        let declared = try call.declaredDigest()
        let caller = try await call.authenticate(declared)
        guard request.headers[.contentType] == "application/octet-stream" else {
            throw ExchangeError(.unsupportedMediaType, "a masked input is application/octet-stream")
        }
        guard
            let ticket = try await exchange.beginUpload(
                caller,
                federation: try parameter(context, "federation"),
                round: try roundNumber(context),
                commitment: declared
            )
        else {
            // The same upload again (its acknowledgement was lost): accepted, the body unread.
            return call.accepted(headers: [.connection: "close"])
        }
        do {
            let reader = try MaskedUpload.Reader(layout: ticket.layout, key: ticket.key, into: ticket.buffer.bytes)
            let channel = context.channel
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The watch: once the mask phase closes, the connection is closed under a sender
                // still streaming, so a stalled upload cannot hold its slot past the deadline.
                group.addTask {
                    while await exchange.uploadIsOpen(ticket) { try await Task.sleep(for: .milliseconds(250)) }
                    channel.close(promise: nil)
                }
                for try await piece in request.body {
                    try piece.withUnsafeReadableBytes { bytes throws(ExchangeError) in try reader.feed(bytes) }
                }
                group.cancelAll()
            }
            let received = try reader.finish()
            guard ConstantTime.equals(received, declared) else {
                throw ExchangeError(.unauthenticated, "the body does not match the commitment its signature covers")
            }
            try await exchange.commitUpload(caller, ticket: ticket, bodyDigest: received)
        } catch {
            await exchange.releaseUpload(ticket)
            throw error
        }
        await exchange.releaseUpload(ticket)
        return call.accepted()
    }
}

/// The request context of the broker's routes: Hummingbird's core context and the peer's
/// address, which names the source of refusals that no key can be held to.
public struct BrokerRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The client's address (nil in router tests).
    public let remoteAddress: SocketAddress?
    /// The connection (an upload's watch closes it when the mask phase closes).
    let channel: any Channel

    /// A context for a request arriving on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        remoteAddress = source.channel.remoteAddress
    }
}

/// The decrypted masked input of one upload: an upload slot's buffer, zeroed after each upload
/// and when freed.
///
/// `@unchecked Sendable`: one request at a time owns it (the slot's); it crosses into the exchange
/// actor only once the request has finished writing to it, and the request waits for that call
/// to return.
public final class UploadBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(byteCount: Int) {
        bytes = .allocate(byteCount: byteCount, alignment: 64)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        bytes.deallocate()
    }

    var words: UnsafeBufferPointer<UInt32> { UnsafeBufferPointer(bytes.bindMemory(to: UInt32.self)) }
}

/// Sizes each connection's socket reads so that a request body waits in the socket, not in the
/// broker's memory, until its handler takes it, and then moves fast.
///
/// The HTTP server buffers about ten reads per connection ahead of the handler. A request starts
/// with 2 KiB reads; once the handler has asked for more reads than that buffer holds, it is
/// consuming the body, and reads grow to 16 KiB. A masked-input upload queued for a slot so holds
/// about 32 KiB of broker memory (at 64 KiB reads it would hold over 600 KiB). NIO keeps each
/// connection's read buffer at the largest size it reached, so the large size is kept at 16 KiB:
/// 64 KiB reads cost 4.8 MB more across 100 connections and did not upload faster here.
final class ReadSizes: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart

    private static let small = 2048
    private static let large = 16_384
    /// Reads asked for since the request's head: more than the server buffers means a consumer.
    private static let consuming = 16
    private var reads = 0

    func handlerAdded(context: ChannelHandlerContext) {
        try? context.channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: 1)
        size(context, Self.small)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            reads = 0
            size(context, Self.small)
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        reads += 1
        if reads == Self.consuming { size(context, Self.large) }
        context.read()
    }

    private func size(_ context: ChannelHandlerContext, _ bytes: Int) {
        try? context.channel.syncOptions?.setOption(
            ChannelOptions.recvAllocator,
            value: FixedSizeRecvByteBufferAllocator(capacity: bytes)
        )
    }
}

/// Ends connections that hold the broker without using it: one with no request in progress for
/// ``Limits/idle`` (a keep-alive connection left open, or a request whose head never completes),
/// and one whose body stalls: while the broker waits for body bytes, they must come at
/// ``Limits/minimumRate`` on average over each ``Limits/window`` of waiting. Time a body spends
/// queued (the broker not reading it, e.g. an upload waiting for a slot) does not count. After a
/// response that says `Connection: close` (every refusal), the connection closes.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart

    /// The limits.
    struct Limits {
        /// A connection with no request in progress for this long is closed.
        var idle: TimeAmount = .seconds(30)
        /// The least body rate while the broker waits for it, bytes per second.
        var minimumRate = 2048
        /// The waiting time over which the rate is measured.
        var window: TimeAmount = .seconds(10)
        /// How often the connection is checked.
        var check: TimeAmount = .seconds(1)
    }

    private let limits: Limits
    /// Requests whose head arrived and whose response has not been written to its end.
    private var inProgress = 0
    private var idleSince = NIODeadline.uptimeNanoseconds(0)
    /// Whether a read is outstanding (the broker waits for bytes) during a request's body.
    private var bodyOpen = false
    private var waiting = false
    private var waited: TimeAmount = .zero
    private var bytes = 0
    private var lastCheck = NIODeadline.uptimeNanoseconds(0)
    private var closeAfterResponse = false
    private var timer: RepeatedTask?

    init(_ limits: Limits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        (idleSince, lastCheck) = (context.eventLoop.now, context.eventLoop.now)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: limits.check, delay: limits.check) { _ in
            let (handler, context) = loopBound.value
            handler.check(context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inProgress += 1
            bodyOpen = true
            (waited, bytes) = (.zero, 0)
        case .body(let buffer):
            bytes += buffer.readableBytes
        case .end:
            bodyOpen = false
        }
        waiting = false
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        waiting = true
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.headerFields[.connection] == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            inProgress = max(0, inProgress - 1)
            idleSince = context.eventLoop.now
            if closeAfterResponse {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(data).whenComplete { _ in loopBound.value.close(promise: nil) }
                promise?.succeed()
            } else {
                context.write(data, promise: promise)
            }
        }
    }

    private func check(_ context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        defer { lastCheck = now }
        if inProgress == 0 {
            if now - idleSince > limits.idle { context.close(promise: nil) }
            return
        }
        guard bodyOpen, waiting else { return }
        waited = waited + (now - lastCheck)
        guard waited >= limits.window else { return }
        let needed = Int64(limits.minimumRate) * waited.nanoseconds / 1_000_000_000
        if Int64(bytes) < needed {
            context.close(promise: nil)
        } else {
            (waited, bytes) = (.zero, 0)
        }
    }
}

/// The service that moves rounds on: every quarter second it lets the exchange open rounds and
/// close phases whose deadline passed. Stops on graceful shutdown.
struct RoundClock: Service {
    let exchange: Exchange

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    await exchange.tick()
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        } catch is CancellationError {}
        await exchange.flushRefusals(force: true)
        await exchange.checkpoint()
    }
}
