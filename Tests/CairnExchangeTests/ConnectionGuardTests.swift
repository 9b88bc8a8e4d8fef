import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import CairnBroker

/// The connection limits on an embedded channel whose clock the test moves: an idle connection
/// closes after the idle limit, a body the broker waits for must arrive at the minimum rate
/// (time it is not read does not count), and a response saying `Connection: close` closes it.
@Suite struct ConnectionGuardTests {
    static let limits = ConnectionGuard.Limits(
        idle: .seconds(30),
        minimumRate: 2048,
        window: .seconds(10),
        check: .seconds(1)
    )

    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: ConnectionGuard(limits))
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 7400)).wait()
        return channel
    }

    static let upload = HTTPRequestPart.head(
        HTTPRequest(method: .post, scheme: "http", authority: "broker", path: "/v1/federations/a/rounds/1/input")
    )

    /// A body arriving while the broker reads: each second it asks for bytes, gets `bytesPerSecond`,
    /// and asks again.
    static func feed(_ channel: EmbeddedChannel, bytesPerSecond: Int, seconds: Int) throws {
        for _ in 0..<seconds {
            channel.read()
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 1, count: bytesPerSecond)))
            channel.read()
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        }
    }

    /// Open 29 s from now, closed 2 s later: the 30 s idle limit.
    static func expectIdleClose(_ channel: EmbeddedChannel) {
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func anIdleConnectionCloses() throws {
        Self.expectIdleClose(try Self.channel())
    }

    @Test func aRequestInProgressIsNotIdle() throws {
        let channel = try Self.channel()
        try channel.writeInbound(
            HTTPRequestPart.head(HTTPRequest(method: .get, scheme: "http", authority: "b", path: "/"))
        )
        try channel.writeInbound(HTTPRequestPart.end(nil))
        // The broker takes its time to answer: not idle.
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        Self.expectIdleClose(channel)
    }

    @Test func aStalledBodyCloses() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.upload)
        // 10 bytes a second while the broker reads: below 2 KiB/s over the 10 s window.
        try Self.feed(channel, bytesPerSecond: 10, seconds: 11)
        #expect(!channel.isActive)
    }

    @Test func aBodyAtTheRateStaysOpen() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.upload)
        try Self.feed(channel, bytesPerSecond: 4096, seconds: 40)
        #expect(channel.isActive)
    }

    @Test func aBodyNotBeingReadIsNotStalled() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.upload)
        // Queued for an upload slot: the broker asks for no bytes, so none are owed.
        channel.embeddedEventLoop.advanceTime(by: .seconds(600))
        #expect(channel.isActive)
    }

    @Test func aRefusalClosesTheConnection() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.upload)
        try channel.writeOutbound(
            HTTPResponsePart.head(HTTPResponse(status: .unauthorized, headerFields: [.connection: "close"]))
        )
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }
}
