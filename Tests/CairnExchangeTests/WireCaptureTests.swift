import CairnAudit
import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnSecAgg
import CairnWire
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import CairnBroker

/// A TCP proxy on loopback that forwards every connection to `port` and records every byte it
/// carries, both ways: what a passive observer of plain HTTP would see. With `drop`, it also
/// loses answers: when the broker's answer to a request whose request line `drop` chooses
/// arrives, the proxy closes both connections instead of passing it on, so the broker has acted
/// and the client never hears of it. With `alter`, it passes on, in place of the first bytes of
/// an answer, whatever `alter` makes of them: an answer changed on the way.
final class RecordingProxy: Sendable {
    private let captured = Mutex<[UInt8]>([])
    private let server = Mutex<(any Channel)?>(nil)
    /// Chooses, from a request line (`POST /v1/… HTTP/1.1`), whether to lose its answer.
    typealias Drop = @Sendable (_ requestLine: String) -> Bool
    /// From a request line and the first bytes of its answer, the bytes to pass on instead (nil:
    /// pass them on as they are).
    typealias Alter = @Sendable (_ requestLine: String, _ answer: [UInt8]) -> [UInt8]?

    /// Everything recorded so far.
    var capture: [UInt8] { captured.withLock { $0 } }

    /// The port it listens on.
    var port: Int { server.withLock { $0?.localAddress?.port ?? 0 } }

    /// Starts listening on 127.0.0.1 at a free port.
    static func start(to upstream: Int, drop: Drop? = nil, alter: Alter? = nil) async throws -> RecordingProxy {
        let proxy = RecordingProxy()
        let record: @Sendable (ByteBuffer) -> Void = { buffer in
            proxy.captured.withLock { $0 += buffer.readableBytesView }
        }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelInitializer { inbound in
                let turn = Turn()
                let toClient = Relay(record, turn: turn, side: .request)
                return inbound.pipeline.addHandler(toClient).flatMap {
                    ClientBootstrap(group: inbound.eventLoop)
                        .channelInitializer { outbound in
                            outbound.pipeline.addHandler(
                                Relay(record, peer: inbound, turn: turn, side: .answer(drop, alter))
                            )
                        }
                        .connect(host: "127.0.0.1", port: upstream)
                        .flatMap { outbound in
                            toClient.peer = outbound
                            return inbound.setOption(ChannelOptions.autoRead, value: true)
                        }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        proxy.server.withLock { $0 = channel }
        return proxy
    }

    func stop() async throws { try await server.withLock { $0 }?.close() }

    /// The request line of the request a connection is carrying, until its answer begins.
    ///
    /// `@unchecked Sendable`: both channels of a connection live on one event loop.
    private final class Turn: @unchecked Sendable {
        var line: String?
    }

    /// Copies bytes from one side to the other, recording them.
    ///
    /// `@unchecked Sendable`: both channels of a connection live on one event loop, where `peer`
    /// is set and read.
    private final class Relay: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        enum Side {
            case request
            case answer(Drop?, Alter?)
        }
        var peer: (any Channel)?
        let record: @Sendable (ByteBuffer) -> Void
        let turn: Turn
        let side: Side

        init(
            _ record: @escaping @Sendable (ByteBuffer) -> Void,
            peer: (any Channel)? = nil,
            turn: Turn,
            side: Side
        ) {
            self.record = record
            self.peer = peer
            self.turn = turn
            self.side = side
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            record(buffer)
            switch side {
            case .request:
                // One request at a time on a connection: the first bytes after an answer begin
                // the next request.
                if turn.line == nil {
                    turn.line =
                        String(decoding: buffer.readableBytesView.prefix(2048), as: UTF8.self)
                        .split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
                }
            case .answer(let drop, let alter):
                if let line = turn.line {
                    turn.line = nil
                    if let drop, drop(line) {
                        context.close(promise: nil)
                        peer?.close(promise: nil)
                        return
                    }
                    if let altered = alter?(line, Array(buffer.readableBytesView)) {
                        buffer = ByteBuffer(bytes: altered)
                    }
                }
            }
            peer?.writeAndFlush(buffer, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer?.close(promise: nil)
            context.fireChannelInactive()
        }
    }
}

@Suite struct WireCaptureTests {
    /// A whole exchange over plain HTTP through a recording proxy: the operator creates a
    /// federation and issues invites, six participants enrol, run a SecAgg+ round, fetch the new
    /// model and report scores, the operator publishes it and a licensee enrols, is granted a
    /// licence and fetches the model. The capture holds none of the invite secrets, no 16-byte
    /// piece of the model's parameters, none of the scores and no 32-byte piece of any unmask
    /// answer (the shares), although every one of them crossed it.
    @Test func aPassiveObserverOfPlainHTTPSeesNoSecret() async throws {
        let fixture = try await Self.fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let secrets = try await Self.exchangeThroughProxy(fixture)
        let capture = secrets.capture
        // The capture is of the whole exchange, both ways: each step's request and an answer
        // header that is sent in the clear are in it.
        for marker in [
            "POST /v1/enrol?request-id=", "POST /v1/admin/federations/gamma/invites?request-id=",
            "POST /v1/federations/gamma/rounds/1/unmask?request-id=",
            "GET /v1/federations/gamma/model ", "POST /v1/federations/gamma/evaluations?request-id=",
            "/versions/1/container ", secrets.modelDigest,
        ] {
            #expect(capture.firstRange(of: Array(marker.utf8)) != nil, "\(marker) is not in the capture")
        }
        #expect(secrets.invites.count == 7 && secrets.scores.count == 12 && secrets.unmask.count == 6)
        for invite in secrets.invites {
            #expect(capture.firstRange(of: Array(invite.utf8)) == nil, "an invite secret is in the capture")
        }
        for score in secrets.scores {
            #expect(capture.firstRange(of: Array(score.utf8)) == nil, "the score \(score) is in the capture")
        }
        #expect(secrets.parameters.count == 4 * 9)
        for offset in stride(from: 0, through: secrets.parameters.count - 16, by: 4) {
            let piece = Array(secrets.parameters[offset..<(offset + 16)])
            #expect(capture.firstRange(of: piece) == nil, "model parameters \(offset / 4)… are in the capture")
        }
        for answer in secrets.unmask {
            // After the 35-byte header and sender and count: (peer, kind, 64-byte value) per share.
            for offset in stride(from: 41, through: answer.count - 32, by: 32) {
                let piece = Array(answer[offset..<(offset + 32)])
                #expect(capture.firstRange(of: piece) == nil, "an unmask answer is in the capture")
            }
        }
    }

    /// The round policy of ``fixture()``: no round clock runs, so phases close only when
    /// everyone answered, and the deadlines are a day regardless.
    static let policy = {
        var policy = RoundDriver.policy
        policy.deadlines = PhaseDeadlines(advertise: 86_400, share: 86_400, mask: 86_400, check: 86_400, unmask: 86_400)
        return policy
    }()

    /// A broker for ``exchange(url:_:_:backoff:)``: the clients sign with the real clock, so the
    /// exchange keeps it too (a frozen test clock would refuse their requests once the test has
    /// run a minute).
    static func fixture() async throws -> Fixture {
        var settings = TestClock().settings
        settings.now = { unixTime() }
        return try await Fixture(policy: policy, settings: settings)
    }

    /// The exchange, served over loopback and run through a ``RecordingProxy`` that loses the
    /// answers `drop` chooses; what crossed it is in the result's `capture`.
    static func exchangeThroughProxy(
        _ fixture: Fixture,
        drop: RecordingProxy.Drop? = nil,
        backoff: (first: Double, longest: Double) = (0.1, 5)
    ) async throws -> Secrets {
        let app = Application(
            router: BrokerServer.router(fixture.exchange, logger: quiet),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        return try await app.test(.live) { client -> Secrets in
            let proxy = try await RecordingProxy.start(to: client.port!, drop: drop)
            do {
                let url = "http://127.0.0.1:\(proxy.port)"
                var secrets = try await exchange(url: url, fixture, policy, backoff: backoff)
                secrets.capture = proxy.capture
                try await proxy.stop()
                return secrets
            } catch {
                try? await proxy.stop()
                throw error
            }
        }
    }

    /// What crossed the proxy in plaintext at the ends, to look for in the capture.
    struct Secrets: Sendable {
        var invites: [String] = []
        var scores: [String] = []
        var unmask: [[UInt8]] = []
        var parameters: [UInt8] = []
        var modelDigest = ""
        var capture: [UInt8] = []
    }

    /// The exchange, through `url`: every POST endpoint of the API at least once. Clients retry
    /// after `backoff`.
    static func exchange(
        url: String,
        _ fixture: Fixture,
        _ policy: RoundPolicy,
        backoff: (first: Double, longest: Double) = (0.1, 5)
    ) async throws -> Secrets {
        var secrets = Secrets()
        func connect(_ key: Ed25519.PrivateKey) async throws -> BrokerClient {
            var client = try await BrokerClient.connect(url: url, identity: key, broker: fixture.broker).client
            client.backoff = backoff
            return client
        }
        let admin = try await connect(fixture.operatorKey)
        let _: FederationStatus = try await admin.json(
            "POST",
            "/v1/admin/federations",
            Fixture.spec("gamma", policy: policy)
        )
        var members: [(key: Ed25519.PrivateKey, client: BrokerClient)] = []
        for role in Array(repeating: Role.participant, count: 6) + [.licensee] {
            let invite: Invite = try await admin.json(
                "POST",
                "/v1/admin/federations/gamma/invites",
                InviteRequest(role: role)
            )
            let secret = String(invite.code.prefix(32))
            secrets.invites.append(secret)
            let key = try Ed25519.PrivateKey()
            let client = try await connect(key)
            let _: MemberRecord = try await client.json(
                "POST",
                "/v1/enrol",
                EnrolRequest(
                    invite: secret,
                    deliveryKey: Hex.encode(try X25519.PrivateKey().publicKey.rawRepresentation)
                )
            )
            members.append((key, client))
        }
        let participants = members.prefix(6)
        let _: FederationStatus = try await admin.json(
            "POST",
            "/v1/admin/federations/gamma/training",
            TrainingRequest(action: "start", rounds: 1)
        )
        await fixture.exchange.tick()
        var clients: [Int: SecAggClient] = [:]
        for phase in ExchangePhase.answering {
            for (i, member) in participants.enumerated() {
                let view: RoundView = try await member.client.json("GET", "/v1/federations/gamma/round")
                guard view.phase == phase.rawValue, view.index >= 0, !view.answered else { continue }
                let message = try Hex.decode(view.message)
                let base = "/v1/federations/gamma/rounds/\(view.round)/"
                let (path, body): (String, [UInt8])
                switch phase {
                case .advertise:
                    clients[i] = try SecAggClient(
                        config: try RoundConfig(decoding: try Hex.decode(view.config)),
                        identity: member.key
                    )
                    (path, body) = (base + "advertise", try clients[i]!.advertise().encoded)
                case .share:
                    (path, body) = (base + "share", try clients[i]!.shareKeys(try KeyList(decoding: message)).encoded)
                case .mask:
                    let masked = try clients[i]!.maskInput(
                        try ShareDelivery(decoding: message),
                        input: (0..<9).map { UInt32(($0 + 1) * (i + 1)) },
                        sampleCount: 10
                    )
                    let layout = MaskedUpload(
                        wordCount: masked.words.count,
                        session: masked.session,
                        sender: masked.sender
                    )
                    var upload: [UInt8] = []
                    let commitment = try layout.encrypt(
                        masked.words,
                        key: try clients[i]!.uploadKey(brokerKey: member.client.transport!)
                    ) { upload += $0 }
                    let reply = try await member.client.send(
                        "POST",
                        base + "input",
                        body: upload,
                        bodyDigest: commitment,
                        contentType: "application/octet-stream"
                    )
                    #expect(reply.status == 202)
                    continue
                case .check:
                    (path, body) = (
                        base + "check", try clients[i]!.signSurvivors(try ConsistencyRequest(decoding: message)).encoded
                    )
                case .unmask:
                    (path, body) = (
                        base + "unmask", try clients[i]!.unmask(try UnmaskRequest(decoding: message)).encoded
                    )
                    secrets.unmask.append(body)
                default:
                    continue
                }
                let reply = try await member.client.send(
                    "POST",
                    path,
                    body: body,
                    contentType: "application/octet-stream"
                )
                #expect(reply.status == 202)
            }
        }
        // Each participant fetches the new model and reports a score of its own.
        for (i, member) in participants.enumerated() {
            let reply = try await member.client.send("GET", "/v1/federations/gamma/model")
            let file = try ModelFile.decode(reply.body, name: "the model")
            secrets.modelDigest = reply.headers["cairn-model-digest"] ?? ""
            secrets.parameters = file.model.parameters.withUnsafeBytes { Array($0) }
            let (accuracy, logLoss) = (0.7109375 + Double(i) / 64, 0.4208984375 + Double(i) / 1024)
            secrets.scores += [String(accuracy), String(logLoss)]
            let _: EvaluationReport = try await member.client.json(
                "POST",
                "/v1/federations/gamma/evaluations",
                EvaluationReport(
                    round: 1,
                    parametersDigest: secrets.modelDigest,
                    samples: 10 + i,
                    accuracy: accuracy,
                    logLoss: logLoss
                )
            )
            // And witnesses the audit checkpoint signed when the round's model was stored.
            let home = fixture.folder + "/witness-\(i)"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            let witness = Witness(
                home: home,
                checkpointKey: fixture.exchange.keys.checkpoint.verifier,
                identity: member.key
            )
            let view: WitnessView = try await member.client.json("GET", "/v1/federations/gamma/checkpoint?from=0")
            let (checkpoint, cosignature) = try witness.observe(view, time: unixTime())
            let _: CosignatureReceipt = try await member.client.json(
                "POST",
                "/v1/federations/gamma/cosignatures",
                CosignatureReport(
                    size: checkpoint.size,
                    time: cosignature.time,
                    signature: Hex.encode(cosignature.signature)
                )
            )
        }
        let _: ModelVersion = try await admin.json(
            "POST",
            "/v1/admin/federations/gamma/publish",
            PublishRequest(description: "captured", offer: LicenceOffer(entitlements: ["inference"]))
        )
        let licensee = members[6].client
        let record: LicenceRecord = try await licensee.json(
            "POST",
            "/v1/federations/gamma/licences",
            LicenceRequest(entitlements: ["inference"])
        )
        let _: LicenceRecord = try await admin.json(
            "POST",
            "/v1/admin/licences/\(record.id)",
            LicenceDecision(action: "grant")
        )
        let container = try await licensee.send("GET", "/v1/licences/\(record.id)/versions/1/container")
        #expect(container.status == 200 && container.body.count > secrets.parameters.count)
        let _: MemberRecord = try await admin.json(
            "POST",
            "/v1/admin/federations/gamma/participants/\(Hex.encode(members[5].key.publicKey.rawRepresentation))/suspend"
        )
        return secrets
    }
}

@Suite struct SealedBodyTests {
    /// A sealed body opens only for the request it was made for, in its direction, under the
    /// two keys that made it; the broker's side agrees with the member's.
    @Test func aSealedBodyIsBoundToItsRequest() throws {
        let member = try Ed25519.PrivateKey()
        let (broker, transport) = (try Ed25519.PrivateKey(), try X25519.PrivateKey())
        let signature = try RequestSignature.sign(
            method: "POST",
            target: "/v1/enrol",
            bodyDigest: [UInt8](repeating: 0, count: 32),
            identity: member,
            broker: broker.publicKey
        )
        func side(
            _ identity: Ed25519.PrivateKey = member,
            target: String = "/v1/enrol",
            time: Int64? = nil,
            nonce: [UInt8]? = nil,
            transport key: X25519.PublicKey? = nil
        ) throws -> SealedBody {
            try SealedBody.member(
                identity: identity,
                broker: broker.publicKey,
                transport: key ?? transport.publicKey,
                method: "POST",
                target: target,
                time: time ?? signature.time,
                nonce: nonce ?? signature.nonce
            )
        }
        let plaintext = Array(#"{"invite":"x"}"#.utf8)
        let sealed = try side().seal(plaintext, .request)
        #expect(sealed.count == plaintext.count + SealedBody.overhead)
        let brokerSide = try SealedBody.broker(
            transport: transport,
            identity: broker.publicKey,
            signature: signature,
            method: "POST",
            target: "/v1/enrol"
        )
        #expect(try brokerSide.open(sealed, .request) == plaintext)
        #expect(try side().open(try brokerSide.seal(plaintext, .response), .response) == plaintext)
        var flipped = sealed
        flipped[30] ^= 1
        var version = sealed
        version[0] = 2
        let others: [(String, [UInt8], SealedBody, SealedBody.Direction)] = [
            ("another direction", sealed, brokerSide, .response),
            ("a flipped bit", flipped, brokerSide, .request),
            ("another target", sealed, try side(target: "/v1/me"), .request),
            ("another time", sealed, try side(time: signature.time + 1), .request),
            ("another nonce", sealed, try side(nonce: [UInt8](repeating: 7, count: 16)), .request),
            ("another member", sealed, try side(try Ed25519.PrivateKey()), .request),
            ("another transport key", sealed, try side(transport: try X25519.PrivateKey().publicKey), .request),
            ("version 2", version, brokerSide, .request),
            ("too short", Array(sealed.prefix(SealedBody.overhead - 1)), brokerSide, .request),
        ]
        for (what, body, opener, direction) in others {
            #expect(throws: ExchangeError.self, "\(what)") { try opener.open(body, direction) }
        }
    }

    /// Only the routes that carry secrets are sealed, and their queries do not change that.
    @Test func theSealedRoutes() {
        let cases: [(String, String, Bool, Bool)] = [
            ("POST", "/v1/enrol", true, true), ("GET", "/v1/enrol", false, false),
            ("POST", "/v1/admin/federations/a/invites", false, true), ("GET", "/v1/federations/a/model", false, true),
            ("GET", "/v1/federations/a/model?x=1", false, true), ("POST", "/v1/federations/a/evaluations", true, true),
            ("POST", "/v1/federations/a/rounds/3/advertise", true, false),
            ("POST", "/v1/federations/a/rounds/3/share", true, false),
            ("POST", "/v1/federations/a/rounds/3/check", true, false),
            ("POST", "/v1/federations/a/rounds/3/unmask", true, false),
            ("POST", "/v1/federations/a/rounds/3/input", false, false),
            ("GET", "/v1/federations/a/round", false, false),
            ("GET", "/v1/broker", false, false),
        ]
        for (method, path, request, response) in cases {
            let sealing = SealedBody.routes(method: method, path: path)
            #expect(sealing.request == request && sealing.response == response, "\(method) \(path)")
        }
    }
}

@Suite struct UploadTests {
    /// The commitment an upload signs is the same whether computed by the sender, from the body
    /// or by the reader that decrypted it, at every chunk count (a last chunk that is full
    /// included); a changed tag, header or length changes it.
    @Test(arguments: [1, 16_383, 16_384, 16_385, 40_000])
    func theCommitmentIsTheHeaderAndTheTags(words: Int) throws {
        let layout = MaskedUpload(wordCount: words, session: SecureRandom.bytes(32), sender: 3)
        let key = SymmetricKey()
        let input = (0..<words).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) }
        var body: [UInt8] = []
        let sent = try layout.encrypt(input, key: key) { body += $0 }
        #expect(body.count == layout.bodyByteCount)
        #expect(layout.chunkCount == (4 * words + 65_535) / 65_536)
        #expect(try MaskedUpload.commitment(ofBody: body) == sent)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * words, alignment: 64)
        defer { buffer.deallocate() }
        let reader = try MaskedUpload.Reader(layout: layout, key: key, into: buffer)
        try body.withUnsafeBytes { try reader.feed($0) }
        #expect(try reader.finish() == sent)
        #expect(Array(buffer.bindMemory(to: UInt32.self)) == input)
        for offset in [0, body.count - 1, body.count - 16] {
            var changed = body
            changed[offset] ^= 1
            #expect(try MaskedUpload.commitment(ofBody: changed) != sent, "byte \(offset)")
        }
    }

    /// A masked input sent again byte for byte (its acknowledgement lost) is accepted again
    /// without being added twice; another upload from the same participant is refused (409); the
    /// round's sum is exactly the inputs'.
    @Test func anIdenticalUploadIsAcceptedOnceAndAnotherRefused() async throws {
        let start = try await RoundDriver()
        defer { _ = system("rm -rf '\(start.fixture.folder)'") }
        let app = Application(router: BrokerServer.router(start.fixture.exchange, logger: quiet))
        let (outcome, driver, statuses) = try await app.test(.router) { client in
            var driver = start
            var statuses: [Int] = []
            let outcome = try await driver.run(client) { name, path, body in
                guard path.hasSuffix("/input"), name == "p1" else { return }
                var other = body
                other[body.count - 1] ^= 1
                for sent in [body, body, other] {
                    let reply = try await start.call(
                        client,
                        name,
                        .post,
                        path,
                        sent,
                        contentType: "application/octet-stream"
                    )
                    statuses.append(reply.status)
                }
            }
            return (outcome, driver, statuses)
        }
        #expect(outcome == "finished")
        #expect(statuses == [202, 202, 409])
        try await driver.expectExactSum()
    }
}
