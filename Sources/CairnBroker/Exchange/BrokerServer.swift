import CMalloc
import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import NIOHTTPTypes
import Prometheus
import ServiceLifecycle

/// The broker's HTTP API over an ``Exchange`` (`Protocol/openapi.yaml` lists every route).
///
/// Each handler reads and checks the request, calls the exchange and encodes the answer; every
/// refusal is answered with a ``Problem`` body and audited, in one place (``respond(_:_:_:)``).
public enum BrokerServer {
    /// The largest JSON or SecAgg+ message body accepted (4 MiB).
    public static let maximumBody = 4 << 20

    /// The router with every route.
    public static func router(_ exchange: Exchange, logger: Logger) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: exchange.metrics.registry.emitToBuffer()))
            )
        }
        router.get("/v1/broker") { request, _ in
            await respond(exchange, request, logger) { _ in try json(await exchange.info()) }
        }
        router.post("/v1/enrol") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body, enrolling: true)
                return try json(await exchange.enrol(caller, try decode(EnrolRequest.self, body)), status: .created)
            }
        }
        router.get("/v1/me") { request, _ in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.me(caller))
            }
        }
        router.post("/v1/admin/federations") { request, _ in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                let spec = try decode(FederationSpec.self, body)
                try await exchange.createFederation(caller, spec)
                return try json(await exchange.status(caller, federation: spec.id), status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.status(caller, federation: try parameter(context, "federation")))
            }
        }
        router.post("/v1/admin/federations/{federation}/invites") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                let invite = try await exchange.invite(
                    caller,
                    federation: try parameter(context, "federation"),
                    try decode(InviteRequest.self, body)
                )
                return try json(invite, status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}/participants") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.members(caller, federation: try parameter(context, "federation")))
            }
        }
        router.post("/v1/admin/federations/{federation}/participants/{key}/suspend") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: false)
                let caller = try await authenticate(exchange, request, signature, body)
                return try json(
                    await exchange.suspend(
                        caller,
                        federation: try parameter(context, "federation"),
                        key: try parameter(context, "key")
                    )
                )
            }
        }
        router.post("/v1/admin/federations/{federation}/training") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                return try json(
                    await exchange.training(
                        caller,
                        federation: try parameter(context, "federation"),
                        try decode(TrainingRequest.self, body)
                    )
                )
            }
        }
        router.get("/v1/federations/{federation}") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.federationInfo(caller, federation: try parameter(context, "federation")))
            }
        }
        router.get("/v1/federations/{federation}/model") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                let (file, round, digest) = try await exchange.model(
                    caller,
                    federation: try parameter(context, "federation")
                )
                return Response(
                    status: .ok,
                    headers: [
                        .contentType: "application/octet-stream",
                        HTTPField.Name("Cairn-Model-Round")!: String(round),
                        HTTPField.Name("Cairn-Model-Digest")!: Hex.encode(digest),
                    ],
                    body: .init(byteBuffer: ByteBuffer(bytes: file))
                )
            }
        }
        router.post("/v1/admin/federations/{federation}/publish") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                let version = try await exchange.publish(
                    caller,
                    federation: try parameter(context, "federation"),
                    try decode(PublishRequest.self, body)
                )
                return try json(version, status: .created)
            }
        }
        router.get("/v1/admin/federations/{federation}/licences") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.licences(caller, federation: try parameter(context, "federation")))
            }
        }
        router.post("/v1/admin/licences/{licence}") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                return try json(
                    await exchange.decide(
                        caller,
                        id: try parameter(context, "licence"),
                        try decode(LicenceDecision.self, body)
                    )
                )
            }
        }
        router.get("/v1/federations/{federation}/listing") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.listing(caller, federation: try parameter(context, "federation")))
            }
        }
        router.post("/v1/federations/{federation}/licences") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                let record = try await exchange.requestLicence(
                    caller,
                    federation: try parameter(context, "federation"),
                    try decode(LicenceRequest.self, body)
                )
                return try json(record, status: .created)
            }
        }
        router.post("/v1/federations/{federation}/evaluations") { request, context in
            await respond(exchange, request, logger) { _ in
                let (body, signature) = try await signedBody(request, json: true)
                let caller = try await authenticate(exchange, request, signature, body)
                let report = try await exchange.reportEvaluation(
                    caller,
                    federation: try parameter(context, "federation"),
                    try decode(EvaluationReport.self, body)
                )
                return try json(report, status: .created)
            }
        }
        router.get("/v1/licences") { request, _ in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.ownLicences(caller))
            }
        }
        router.get("/v1/licences/{licence}") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.licence(caller, id: try parameter(context, "licence")))
            }
        }
        router.get("/v1/licences/{licence}/versions/{version}/container") { request, context in
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
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
            await respond(exchange, request, logger) { _ in
                let caller = try await authenticated(exchange, request)
                return try json(await exchange.roundView(caller, federation: try parameter(context, "federation")))
            }
        }
        for phase in [ExchangePhase.advertise, .share, .check, .unmask] {
            router.post("/v1/federations/{federation}/rounds/{round}/\(phase.rawValue)") { request, context in
                await respond(exchange, request, logger) { _ in
                    let (body, signature) = try await signedBody(request, json: false)
                    let caller = try await authenticate(exchange, request, signature, body)
                    try await exchange.submit(
                        caller,
                        federation: try parameter(context, "federation"),
                        round: try roundNumber(context),
                        phase: phase,
                        body: body
                    )
                    return Response(status: .accepted)
                }
            }
        }
        router.post("/v1/federations/{federation}/rounds/{round}/input") { request, context in
            await respond(exchange, request, logger) { _ in
                try await upload(exchange, request, context)
            }
        }
        return router
    }

    /// The application: the router on `address` with the round clock beside it, both under
    /// one service group by the caller (``service(_:address:logger:)``).
    public static func application(
        _ exchange: Exchange,
        host: String,
        port: Int,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        _ = returnLargeBlocks
        return Application(
            router: router(exchange, logger: logger),
            server: .http1(configuration: .init(additionalChannelHandlers: [ReadSizes()])),
            configuration: .init(address: .hostname(host, port: port), serverName: "cairn-broker"),
            services: [RoundClock(exchange: exchange)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (requests in flight finish,
    /// the round clock signs a last checkpoint).
    public static func run(
        _ exchange: Exchange,
        host: String,
        port: Int,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try await application(exchange, host: host, port: port, logger: logger, onServerRunning: onServerRunning)
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

    private static func respond(
        _ exchange: Exchange,
        _ request: Request,
        _ logger: Logger,
        _ body: (Request) async throws -> Response
    ) async -> Response {
        let response: Response
        do {
            response = try await body(request)
        } catch {
            let refusal = asExchangeError(error)
            let caller =
                request.headers[HTTPField.Name(RequestSignature.keyHeader)!].map { "key:" + $0.prefix(16) }
                ?? "anonymous"
            await exchange.auditRefusal(
                caller: caller,
                method: request.method.rawValue,
                path: request.uri.path,
                error: refusal
            )
            logger.info(
                "request refused",
                metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                    "status": "\(refusal.status)", "code": "\(refusal.code)",
                ]
            )
            var headers: HTTPFields = [.contentType: "application/json"]
            if refusal.code == .rateLimited || refusal.code == .unavailable { headers[.retryAfter] = "1" }
            let problem =
                (try? JSONEncoder.sorted.encode(Problem(error: "\(refusal.code)", message: refusal.message))) ?? Data()
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
            ExchangeError(.tooLarge, "the body exceeds the \(maximumBody >> 20) MiB this endpoint takes")
        case let error as HTTPError: ExchangeError(.malformed, error.body ?? "bad request")
        case let error as DecodingError: ExchangeError(.malformed, "the JSON body does not fit: \(describe(error))")
        default: ExchangeError(.internal, "the broker failed to answer; the failure is in its log")
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

    private static func signature(_ request: Request) throws -> RequestSignature? {
        try RequestSignature(header: { request.headers[HTTPField.Name($0)!] })
    }

    private static func signedBody(_ request: Request, json: Bool) async throws -> ([UInt8], RequestSignature?) {
        let signature = try signature(request)
        let contentType = request.headers[.contentType]?.split(separator: ";").first.map(String.init) ?? ""
        let buffer = try await request.body.collect(upTo: maximumBody)
        let body = Array(buffer.readableBytesView)
        if json {
            guard contentType == "application/json" else {
                throw ExchangeError(
                    .unsupportedMediaType,
                    "this endpoint takes application/json, not \(contentType.isEmpty ? "no content type" : contentType)"
                )
            }
        } else if !body.isEmpty, contentType != "application/octet-stream" {
            throw ExchangeError(
                .unsupportedMediaType,
                "this endpoint takes application/octet-stream, not \(contentType.isEmpty ? "no content type" : contentType)"
            )
        }
        return (body, signature)
    }

    private static func authenticate(
        _ exchange: Exchange,
        _ request: Request,
        _ signature: RequestSignature?,
        _ body: [UInt8],
        enrolling: Bool = false
    ) async throws -> Exchange.Caller {
        try await exchange.authenticate(
            method: request.method.rawValue,
            target: request.uri.description,
            signature: signature,
            bodyDigest: try RequestSignature.digest(body),
            enrolling: enrolling
        )
    }

    /// A GET: the body must be empty.
    private static func authenticated(_ exchange: Exchange, _ request: Request) async throws -> Exchange.Caller {
        let (body, signature) = try await signedBody(request, json: false)
        return try await authenticate(exchange, request, signature, body)
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

    private static func parameter(_ context: BasicRequestContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name), value.utf8.count <= 128 else {
            throw ExchangeError(.malformed, "the path parameter \(name) is missing or too long")
        }
        return value
    }

    private static func roundNumber(_ context: BasicRequestContext) throws -> Int {
        guard let text = context.parameters.get("round"), text.utf8.count <= 9, let n = Int(text), n >= 1 else {
            throw ExchangeError(.malformed, "the round is a positive number")
        }
        return n
    }

    /// `POST …/input`: authenticates from the headers, waits for an upload slot, decrypts the
    /// stream chunk by chunk into one `4 · (D + 1)`-byte buffer, then checks the signature over
    /// the body digest and adds the words to the round's sum.
    private static func upload(
        _ exchange: Exchange,
        _ request: Request,
        _ context: BasicRequestContext
    ) async throws
        -> Response
    {
        let signature = try signature(request)
        guard request.headers[.contentType] == "application/octet-stream" else {
            throw ExchangeError(.unsupportedMediaType, "a masked input is application/octet-stream")
        }
        let declared = request.headers[HTTPField.Name(RequestSignature.bodyDigestHeader)!].flatMap { text in
            text.utf8.count == 64 ? try? Hex.decode(text) : nil
        }
        if signature != nil, declared == nil {
            throw ExchangeError(
                .malformed,
                "an upload declares its signed body digest in \(RequestSignature.bodyDigestHeader) (64 hex digits)"
            )
        }
        let caller = try await exchange.authenticate(
            method: request.method.rawValue,
            target: request.uri.description,
            signature: signature,
            bodyDigest: declared ?? []
        )
        let ticket = try await exchange.beginUpload(
            caller,
            federation: try parameter(context, "federation"),
            round: try roundNumber(context)
        )
        do {
            let reader = MaskedUpload.Reader(layout: ticket.layout, key: ticket.key, into: ticket.buffer.bytes)
            let digest = try RequestSignature.BodyDigest()
            for try await piece in request.body {
                try piece.withUnsafeReadableBytes { bytes throws(ExchangeError) in
                    digest.update(bytes)
                    try reader.feed(bytes)
                }
            }
            try reader.finish()
            let received = try digest.finalize()
            guard ConstantTime.equals(received, declared!) else {
                throw ExchangeError(.unauthenticated, "the body does not match its signed digest")
            }
            try await exchange.commitUpload(caller, ticket: ticket, bodyDigest: received)
        } catch {
            await exchange.releaseUpload(ticket.buffer)
            throw error
        }
        await exchange.releaseUpload(ticket.buffer)
        return Response(status: .accepted)
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
        await exchange.checkpoint()
    }
}
