public import AsyncHTTPClient
public import CairnCrypto
public import CairnExchange
public import CairnWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
public import NIOSSL
import Synchronization

/// How long a client's requests wait for a broker that cannot answer, and who hears of each
/// wait: the default of every ``BrokerClient`` made after it is set. A command sets it once,
/// from its `--wait`, before it talks to a broker.
public struct Waiting: Sendable {
    /// How long to keep retrying one request, in seconds.
    public var patience: Double
    /// Hears each failure before the wait that follows it, and an attempt unanswered for 2 s
    /// (with a wait of 0).
    public var report: RetryReport?

    /// A policy.
    public init(patience: Double, report: RetryReport? = nil) {
        self.patience = patience
        self.report = report
    }

    private static let shared = Mutex(Waiting(patience: 120))
    /// The process's policy (two minutes, unreported, until a command sets one).
    public static var current: Waiting {
        get { shared.withLock { $0 } }
        set { shared.withLock { $0 = newValue } }
    }
}

/// Signed requests to a broker, with retries and backoff for what can be retried (the network,
/// a restarting broker, 429, 503, 5xx); a refusal (4xx) is thrown at once as an
/// ``ExchangeError`` with the broker's message.
public struct BrokerClient: Sendable {
    /// The broker's base URL, e.g. `http://127.0.0.1:7400`.
    public let url: String
    /// The caller's identity key.
    public let identity: Ed25519.PrivateKey
    /// The broker's identity key (requests are bound to it).
    public let broker: Ed25519.PublicKey
    /// The broker's transport key, checked against its identity (``brokerInfo(url:expected:http:)``):
    /// sealed bodies are made with it. Without it, a route whose bodies are sealed is refused here.
    public var transport: X25519.PublicKey?
    /// The TLS configuration of an `https` URL: the pinned certificate's (``TLSPin``). An
    /// `https` broker without one is refused here, before anything is sent.
    public var tls: TLSConfiguration?
    /// How long to keep retrying one request before giving up, in seconds (``Waiting/current``'s).
    public var patience: Double
    /// The wait before the first retry and the longest wait, in seconds (each wait doubles).
    public var backoff: (first: Double, longest: Double) = (0.1, 5)
    /// Hears each retryable failure and the wait, in seconds, before the next attempt (a node's
    /// progress shows that it is waiting for the broker, not stuck), and an attempt that has had
    /// no answer for 2 s, with a wait of 0 (``Waiting/current``'s).
    public var onRetry: RetryReport?
    let http: HTTPClient

    /// A client over the shared HTTP client.
    public init(
        url: String,
        identity: Ed25519.PrivateKey,
        broker: Ed25519.PublicKey,
        transport: X25519.PublicKey? = nil,
        tls: TLSConfiguration? = nil,
        http: HTTPClient = BrokerClient.http
    ) throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ExchangeError(.malformed, "the broker URL must start with http:// or https://, not \(url.prefix(40))")
        }
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.identity = identity
        self.broker = broker
        self.transport = transport
        self.tls = tls
        self.http = http
        (patience, onRetry) = (Waiting.current.patience, Waiting.current.report)
    }

    /// The HTTP client broker clients use unless given another. A connection that fails is
    /// reported at once to the retry loop (which says so and backs off) instead of being retried
    /// silently inside the connection pool until the request's deadline; a connection attempt
    /// gives up after 10 s; redirects are not followed (a signed request names its target).
    public static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(300))
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// A response: status, selected headers, body.
    public struct Reply: Sendable {
        /// The status code.
        public var status: Int
        /// The body.
        public var body: [UInt8]
        /// Response headers.
        public var headers: [String: String]
    }

    /// One request, signed afresh on every attempt, retried with exponential backoff (0.1 s
    /// doubling to 5 s) while the failure is retryable and ``patience`` lasts. The body is
    /// hashed once, not on every attempt; `bodyDigest` is its digest
    /// (``RequestSignature/digest(_:)``) when the caller already has it. On a route whose bodies
    /// are sealed (``SealedBody/routes(method:path:)``) the body is sealed for each attempt and
    /// the answer opened, so the caller sees plaintext either way. A POST carries a fresh
    /// request id (``RequestSignature/withRequestID(_:)``), the same on every attempt, so that a retry of a request
    /// the broker already acted on gets its first answer and changes nothing.
    public func send(
        _ method: String,
        _ target: String,
        body: [UInt8] = [],
        bodyDigest: [UInt8]? = nil,
        contentType: String? = nil,
        signed: Bool = true
    ) async throws -> Reply {
        let path = signed && method == "POST" ? RequestSignature.withRequestID(target) : target
        let sealing = SealedBody.routes(method: method, path: path)
        if signed, sealing.request || sealing.response {
            guard let transport else {
                throw ExchangeError(.transport, "\(method) \(path) is sealed, and this client has no transport key")
            }
            return try await patiently {
                let (time, nonce) = (unixTime(), SecureRandom.bytes(RequestSignature.nonceByteCount))
                let seal = try SealedBody.member(
                    identity: identity,
                    broker: broker,
                    transport: transport,
                    method: method,
                    target: path,
                    time: time,
                    nonce: nonce
                )
                let sealed = sealing.request ? try seal.seal(body, .request) : body
                var reply = try await attempt(
                    method,
                    path,
                    body: sealed,
                    digest: try RequestSignature.digest(sealed),
                    contentType: sealing.request ? SealedBody.contentType : contentType,
                    signed: true,
                    time: time,
                    nonce: nonce
                )
                if sealing.response {
                    guard reply.headers["content-type"] == SealedBody.contentType else {
                        throw ExchangeError(.transport, "the broker's answer to \(method) \(path) is not sealed")
                    }
                    reply.body = try seal.open(reply.body, .response)
                }
                return reply
            }
        }
        let digest = signed ? try bodyDigest ?? RequestSignature.digest(body) : []
        return try await patiently {
            try await attempt(method, path, body: body, digest: digest, contentType: contentType, signed: signed)
        }
    }

    /// ``withRetries(patience:backoff:onRetry:_:)`` with this client's policy; ``onRetry`` also
    /// hears, with a wait of 0, when the first attempt has had no answer for 2 s.
    private func patiently<T>(_ body: () async throws -> T) async throws -> T {
        let watch = onRetry.map { report in
            Task { [url] in
                try await Task.sleep(for: .seconds(2))
                report(ExchangeError(.transport, "\(url) has not answered for 2 s"), 0)
            }
        }
        defer { watch?.cancel() }
        return try await withRetries(patience: patience, backoff: backoff) { failure, wait in
            watch?.cancel()
            onRetry?(failure, wait)
        } _: {
            try await body()
        }
    }

    private func attempt(
        _ method: String,
        _ path: String,
        body: [UInt8],
        digest: [UInt8],
        contentType: String?,
        signed: Bool,
        time: Int64 = unixTime(),
        nonce: [UInt8] = SecureRandom.bytes(RequestSignature.nonceByteCount)
    ) async throws
        -> Reply
    {
        var request = HTTPClientRequest(url: url + path)
        request.method = HTTPMethod(rawValue: method)
        if url.hasPrefix("https://") {
            guard let tls else {
                throw ExchangeError(
                    .forbidden,
                    "\(url) is reached over TLS only with its certificate pinned (the fingerprint an invite carries)"
                )
            }
            request.tlsConfiguration = tls
        }
        if signed {
            let signature = try RequestSignature.sign(
                method: method,
                target: path,
                bodyDigest: digest,
                identity: identity,
                broker: broker,
                time: time,
                nonce: nonce
            )
            for (name, value) in signature.headers { request.headers.add(name: name, value: value) }
            request.headers.add(name: RequestSignature.bodyDigestHeader, value: Hex.encode(digest))
        }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if !body.isEmpty { request.body = .bytes(body) }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            // An attempt gives up with the client's patience (at least 30 s, at most 5 minutes).
            response = try await http.execute(request, timeout: .seconds(Int64(min(300, max(30, patience)))))
            bytes = try await response.body.collect(upTo: 256 << 20)
        } catch let error as NIOSSLError {
            throw TLSPin.refused(url, error)
        } catch let error as BoringSSLError {
            throw TLSPin.refused(url, error)
        } catch {
            throw ExchangeError(.transport, "the broker at \(url) cannot be reached: \(Self.describe(error))")
        }
        let status = Int(response.status.code)
        let data = Array(bytes.readableBytesView)
        guard (200..<300).contains(status) else {
            // The broker's own refusal says why; an answer without one is from something else at
            // that address (a wrong path, a proxy, not a Cairn broker).
            guard let problem = try? JSONDecoder().decode(Problem.self, from: Data(data)) else {
                throw ExchangeError(
                    status: status,
                    message:
                        "\(url) answered HTTP \(status) to \(method) \(path.split(separator: "?")[0]) without a Cairn message: is it a Cairn broker? (a broker's URL is its scheme, host and port, e.g. https://broker.example:7400)"
                )
            }
            let said =
                status >= 500 || status == 429 ? "the broker answered \(status)" : "the broker refused (\(status))"
            throw ExchangeError(status: status, message: "\(said): \(problem.message)")
        }
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Reply(status: status, body: data, headers: headers)
    }

    /// A network failure in words.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return describe(first.error) }
            return "\(error.host) was not found"
        }
        if let error = error as? IOError {
            let text = String(cString: strerror(error.errnoCode))
            return text.prefix(1).lowercased() + text.dropFirst()
        }
        switch error as? HTTPClientError {
        case .connectTimeout?: return "no connection within 10 s"
        case .readTimeout?, .deadlineExceeded?: return "no answer in time"
        case .remoteConnectionClosed?: return "the connection closed before the answer"
        default: return "\(error)"
        }
    }

    /// A JSON request and its JSON answer.
    public func json<T: Decodable>(
        _ method: String,
        _ path: String,
        _ body: (some Encodable)? = nil as Bool?
    ) async throws
        -> T
    {
        var bytes: [UInt8] = []
        if let body {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            bytes = Array(try encoder.encode(body))
        }
        let reply = try await send(method, path, body: bytes, contentType: body == nil ? nil : "application/json")
        do {
            return try JSONDecoder().decode(T.self, from: Data(reply.body))
        } catch {
            throw ExchangeError(
                .transport,
                "the broker's answer to \(method) \(path) is not the JSON expected: \(error)"
            )
        }
    }

    /// A client of the broker at `url` whose identity key is `broker`, with the transport key it
    /// signed (``brokerInfo(url:expected:http:)``), and what `GET /v1/broker` said.
    public static func connect(
        url: String,
        identity: Ed25519.PrivateKey,
        broker: Ed25519.PublicKey,
        pin: TLSPin? = nil,
        http: HTTPClient = BrokerClient.http
    ) async throws -> (client: BrokerClient, info: BrokerInfo) {
        if let pin, url.hasPrefix("https://") {
            let waiting = Waiting.current
            try await withRetries(patience: waiting.patience, onRetry: waiting.report) { try await pin.check(url: url) }
        }
        let (info, transport) = try await brokerInfo(url: url, expected: broker, pin: pin, http: http)
        return (
            try BrokerClient(
                url: url,
                identity: identity,
                broker: broker,
                transport: transport,
                tls: pin?.configuration,
                http: http
            ), info
        )
    }

    /// `GET /v1/broker`, checked against the pinned identity key: the transport key must carry
    /// the broker's signature.
    public static func brokerInfo(
        url: String,
        expected: Ed25519.PublicKey,
        pin: TLSPin? = nil,
        http: HTTPClient = BrokerClient.http
    ) async throws
        -> (info: BrokerInfo, transport: X25519.PublicKey)
    {
        let probe = try BrokerClient(
            url: url,
            identity: try Ed25519.PrivateKey(),
            broker: expected,
            tls: pin?.configuration,
            http: http
        )
        let reply = try await probe.send("GET", "/v1/broker", signed: false)
        guard let info = try? JSONDecoder().decode(BrokerInfo.self, from: Data(reply.body)) else {
            throw ExchangeError(.transport, "\(url) does not answer like a Cairn broker")
        }
        guard let key = try? Hex.decode(info.identityKey), key == expected.rawRepresentation else {
            throw ExchangeError(
                .forbidden,
                "the broker at \(url) has identity \(info.identityKey.prefix(16))…, not \(Hex.encode(expected.rawRepresentation).prefix(16))…, the one pinned (by the invite, or by the operator's data folder): refusing to talk to it"
            )
        }
        guard let transportBytes = try? Hex.decode(info.transportKey),
            let transport = try? X25519.PublicKey(rawRepresentation: transportBytes),
            let signature = try? Hex.decode(info.transportSignature),
            expected.isValidSignature(signature, for: transportBytes, domain: .brokerTransportKey)
        else {
            throw ExchangeError(.forbidden, "the broker's transport key carries no valid signature from its identity")
        }
        return (info, transport)
    }
}

/// What a retry loop reports before it waits: the failure, and the wait in seconds.
public typealias RetryReport = @Sendable (_ failure: ExchangeError, _ wait: Double) -> Void

/// Runs `body`, and again after `backoff.first` seconds (0.1 s), the wait doubling to
/// `backoff.longest` (5 s), while it fails with a retryable ``ExchangeError`` and `patience`
/// seconds have not passed since the first attempt; the last failure is thrown. `onRetry` hears
/// each failure before its wait.
func withRetries<T>(
    patience: Double = 120,
    backoff: (first: Double, longest: Double) = (0.1, 5),
    onRetry: RetryReport? = nil,
    _ body: () async throws -> T
) async throws -> T {
    let start = ContinuousClock.now
    var delay = backoff.first
    while true {
        do { return try await body() } catch let error as ExchangeError where error.isRetryable {
            // The last wait ends with patience: one more attempt then, and no later.
            let left = Duration.seconds(patience) - (ContinuousClock.now - start)
            guard left > .zero else { throw error }
            let wait = min(delay, Double(left.components.seconds) + Double(left.components.attoseconds) * 1e-18)
            onRetry?(error, wait)
            try await Task.sleep(for: .seconds(wait))
            delay = min(delay * 2, backoff.longest)
        }
    }
}
