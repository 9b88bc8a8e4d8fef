import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import NIOCore
import NIOPosix
public import NIOSSL
import NIOTLS
import Synchronization

/// The broker's TLS certificate as a node pins it: the certificate whose SHA-256 fingerprint the
/// invite carried, trusted alone (no certificate authority, no host-name check: the fingerprint
/// names the one certificate) (`Protocol/README.md`, "TLS").
public struct TLSPin: Sendable, Hashable {
    /// The certificate, PEM.
    public let certificate: String
    /// The client configuration that trusts it alone.
    public let configuration: TLSConfiguration

    /// A pin on `certificate` (PEM).
    public init(certificate: String) throws {
        let parsed: NIOSSLCertificate
        do {
            parsed = try NIOSSLCertificate(bytes: Array(certificate.utf8), format: .pem)
        } catch {
            throw ExchangeError(.malformed, "the pinned TLS certificate does not parse: \(error)")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates([parsed])
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv12
        self.certificate = certificate
        self.configuration = configuration
    }

    public static func == (a: TLSPin, b: TLSPin) -> Bool { a.certificate == b.certificate }
    public func hash(into hasher: inout Hasher) { hasher.combine(certificate) }

    /// Shakes hands with the server at `url` under this pin and closes: a server that does not
    /// present the pinned certificate is refused here at once (the HTTP client would retry the
    /// connection until its request timed out).
    public func check(url: String) async throws {
        guard let parsed = URL(string: url), let host = parsed.host else {
            throw ExchangeError(.malformed, "\(url.prefix(80)) is not a URL")
        }
        let context = try NIOSSLContext(configuration: configuration)
        let done = Once(MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self))
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(30))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: nil)
                        )
                        try channel.pipeline.syncOperations.addHandler(Handshake(done))
                    }
                }
                .connect(host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: parsed.port ?? 443)
                .get()
        } catch {
            done.fail(error)
            throw ExchangeError(.transport, "the broker at \(url) cannot be reached: \(BrokerClient.describe(error))")
        }
        defer { channel.close(promise: nil) }
        do {
            try await done.promise.futureResult.get()
        } catch {
            throw Self.refused(url, error)
        }
    }

    /// A failed handshake under a pin: not retried, since a server that does not present the
    /// pinned certificate will not present it on the next attempt either; except a connection
    /// closed before the handshake finished (a broker stopping or restarting), which is a network
    /// failure like a refused connection, and is retried.
    static func refused(_ url: String, _ error: any Error) -> ExchangeError {
        if case NIOSSLError.uncleanShutdown = error { return closed(url, error) }
        if let channel = error as? ChannelError, channel == .ioOnClosedChannel { return closed(url, error) }
        if error is IOError { return closed(url, error) }  // reset, broken pipe: the socket, not the pin
        if "\(error)".contains("EOF during handshake") { return closed(url, error) }
        return ExchangeError(
            .forbidden,
            "the TLS handshake with \(url) failed: it does not present the pinned certificate (or speaks no TLS), so it is not the pinned broker; refusing to talk to it (\(error))"
        )
    }

    private static func closed(_ url: String, _ error: any Error) -> ExchangeError {
        ExchangeError(.transport, "the broker at \(url) closed the connection during the TLS handshake (\(error))")
    }

    /// A promise completed once, whoever comes first.
    private final class Once: Sendable {
        let promise: EventLoopPromise<Void>
        private let completed = Mutex(false)
        init(_ promise: EventLoopPromise<Void>) { self.promise = promise }
        private func first() -> Bool {
            completed.withLock { was in
                defer { was = true }
                return !was
            }
        }
        func succeed() { if first() { promise.succeed() } }
        func fail(_ error: any Error) { if first() { promise.fail(error) } }
    }

    /// Completes when the TLS handshake completes; fails on an error or a close before it.
    private final class Handshake: ChannelInboundHandler {
        typealias InboundIn = NIOAny
        let done: Once
        init(_ done: Once) { self.done = done }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted = event as? TLSUserEvent { done.succeed() }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            done.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }
    }

    /// Learns the certificate of the broker at `url` and pins it if its fingerprint is
    /// `fingerprint` (from the invite); refuses otherwise. The certificate is read from
    /// `GET /v1/broker` over a connection that checks nothing (nothing secret is sent on it):
    /// every later connection trusts that certificate alone, so a server without its key fails
    /// there.
    public static func learn(url: String, fingerprint: [UInt8]) async throws -> TLSPin {
        var unchecked = TLSConfiguration.makeClientConfiguration()
        unchecked.certificateVerification = .none
        let key = try Ed25519.PrivateKey()
        let probe = try BrokerClient(url: url, identity: key, broker: key.publicKey, tls: unchecked)
        let reply = try await probe.send("GET", "/v1/broker", signed: false)
        guard let info = try? JSONDecoder().decode(BrokerInfo.self, from: Data(reply.body)) else {
            throw ExchangeError(.transport, "\(url) does not answer like a Cairn broker")
        }
        guard let certificate = info.tlsCertificate else {
            throw ExchangeError(.transport, "the broker at \(url) names no TLS certificate")
        }
        let presented = try TLSCertificate.fingerprint(pem: certificate)
        guard presented == fingerprint else {
            throw ExchangeError(
                .forbidden,
                "the broker at \(url) has TLS certificate \(Hex.encode(presented).prefix(16))…, not the invite's \(Hex.encode(fingerprint).prefix(16))…: refusing to talk to it"
            )
        }
        return try TLSPin(certificate: certificate)
    }
}
