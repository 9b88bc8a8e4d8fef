import CairnBroker
import CairnCrypto
import CairnExchange
import CairnNode
import CairnWire
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@Suite struct TLSPinTests {
    /// A broker that closes connections during the TLS handshake (killed, restarting) is a
    /// network failure, retried like a refused connection; only a server that completes a
    /// handshake without the pinned certificate is refused for good. (A node once exited when
    /// its broker was killed mid-handshake: `scripts/broker-crash` caught it.)
    @Test func aConnectionClosedDuringTheHandshakeIsRetried() async throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-tls-test-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        try BrokerTLS.create(in: folder)
        let pin = try TLSPin(certificate: try BrokerTLS.certificate(in: folder))
        let closer = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.pipeline.addHandler(CloseOnAccept()) }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { closer.close(promise: nil) }
        let url = "https://127.0.0.1:\(closer.localAddress!.port!)"
        let checked = await #expect(throws: ExchangeError.self) { try await pin.check(url: url) }
        #expect(checked?.code == .transport, "\(checked?.message ?? "")")
        let key = try Ed25519.PrivateKey()
        var client = try BrokerClient(url: url, identity: key, broker: key.publicKey, tls: pin.configuration)
        client.patience = 0
        let sent = await #expect(throws: ExchangeError.self) {
            try await client.send("GET", "/v1/broker", signed: false)
        }
        #expect(sent?.code == .transport, "\(sent?.message ?? "")")
        #expect(sent?.isRetryable == true)

        // A server that completes the handshake with another certificate is refused, not retried.
        let other = folder + "/other"
        _ = mkdir(other, 0o700)
        try BrokerTLS.create(in: other)
        let context = try NIOSSLContext(configuration: try BrokerTLS.serverConfiguration(folder: other))
        let impostor = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { impostor.close(promise: nil) }
        let refused = await #expect(throws: ExchangeError.self) {
            try await pin.check(url: "https://127.0.0.1:\(impostor.localAddress!.port!)")
        }
        #expect(refused?.code == .forbidden, "\(refused?.message ?? "")")
        #expect(refused?.message.contains("does not present the pinned certificate") == true)
    }
}

/// Closes every connection as soon as it is accepted.
private final class CloseOnAccept: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelActive(context: ChannelHandlerContext) { context.close(promise: nil) }
}
