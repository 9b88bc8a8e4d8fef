import AsyncHTTPClient
import CairnAudit
import CairnBroker
import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnSIMD
import CairnSecAgg
import CairnWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `cairn-bench broker`: one secure round of `n` = 100 participants over loopback HTTP with a
/// model of D = 10^6 parameters (an MLP of 251 inputs, 3937 hidden units and 2 classes). The
/// broker is a child process (`cairn-bench broker-serve`), the real daemon's routes and round
/// clock over its own folder, so its memory is measured alone; the participants are tasks of
/// this process, each with its own identity, enrolled with its own invite, signing every request.
///
/// - round: wall time from the operator's start to every participant seeing the new model
///   (polling every 250 ms), with the new model's digest checked against the plain sum of the
///   inputs (a wrong sum fails the benchmark). No floor: the figure is for the record.
/// - peak-rss: the broker's peak resident memory during the round above its idle resident
///   memory just before it (`VmHWM` reset through `/proc/<pid>/clear_refs`); floor = the issue's
///   budget `4·(4·D) + 64 KiB·n`, so a ratio ≤ 1 is within budget.
/// - ingest: the masked inputs (all prepared and hashed for their signatures first) uploaded
///   at once, as MB/s from the first upload's start to the last one's 202; floor = the same
///   bodies uploaded the same way to a null endpoint in the same broker process that reads and
///   discards them, right after the round.
///
/// The whole measurement (a fresh broker, enrolment, the round, the floor) runs three times;
/// this machine's speed drifts between runs by up to 2×. The report gives the median round
/// time, the worst peak memory, and the run whose ingest ratio is the median, with that run's
/// floor.
struct BrokerBench {
    let quick: Bool
    var participants: Int?
    var repeats = 3

    /// One run's figures.
    struct Run {
        var round: Double
        var idle: Int
        var peak: Int
        var ingest: Double
        var floor: Double
        var decrypt: Double
    }

    func run() async throws -> BenchReport {
        let n = participants ?? (quick ? 20 : 100)
        let spec = BrokerBenchServer.spec(participants: n, quick: quick)
        let d = try FederatedModel.architecture(of: spec).parameterCount
        var runs: [Run] = []
        var bodyBytes = 0
        for _ in 0..<repeats {
            let (run, body) = try await once(n: n, spec: spec, d: d)
            runs.append(run)
            bodyBytes = body
        }
        let round = runs.map(\.round).sorted()[runs.count / 2]
        let worst = runs.max { $0.peak < $1.peak }!
        let median = runs.sorted { $0.ingest / $0.floor < $1.ingest / $1.floor }[runs.count / 2]
        let medianDecrypt = runs.sorted { $0.ingest / $0.decrypt < $1.ingest / $1.decrypt }[runs.count / 2]

        var report = BenchReport(area: "broker")
        let params = [("n", "\(n)"), ("D", "\(d)"), ("runs", "\(runs.count)")]
        report.cases.append(
            BenchCase(
                name: "round",
                params: params + [("poll", "250 ms"), ("of runs", "median")],
                value: round,
                unit: "s",
                floor: nil
            )
        )
        let budget = Double(4 * (4 * d) + 65_536 * n)
        report.cases.append(
            BenchCase(
                name: "peak-rss",
                params: params + [
                    ("idle", "\(worst.idle >> 20) MiB"), ("budget", "4*(4*D)+64KiB*n"), ("of runs", "worst"),
                ],
                value: Double(worst.peak),
                unit: "B",
                floor: budget
            )
        )
        report.cases.append(
            BenchCase(
                name: "ingest",
                params: params + [
                    ("body", "\(bodyBytes) B"), ("uploads", "at once"),
                    ("floor", "decrypting the same bodies on \(Self.decryptThreads) threads"),
                    ("of runs", "median ratio"),
                ],
                value: medianDecrypt.ingest,
                unit: "MB/s",
                floor: medianDecrypt.decrypt
            )
        )
        report.cases.append(
            BenchCase(
                name: "ingest-vs-null",
                params: params + [
                    ("body", "\(bodyBytes) B"), ("uploads", "at once"), ("floor", "null endpoint"),
                    ("of runs", "median ratio"),
                ],
                value: median.ingest,
                unit: "MB/s",
                floor: median.floor
            )
        )
        return report
    }

    /// One measurement against a fresh broker: its figures and the size of one masked input.
    private func once(n: Int, spec: FederationSpec, d: Int) async throws -> (Run, Int) {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-bench-broker-XXXXXX")))
        defer { _ = try? FileManager.default.removeItem(atPath: folder) }
        let broker = try BrokerChild(folder: folder, participants: n, quick: quick)
        defer { broker.stop() }

        let http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: n + 8)
            )
        )
        let codes = try String(contentsOfFile: folder + "/invites", encoding: .utf8).split(separator: "\n")
        let brokerKey = try Ed25519.PublicKey(
            rawRepresentation: try Hex.decode(String(codes[0].split(separator: ".")[1]))
        )
        let (_, transport) = try await BrokerClient.brokerInfo(url: broker.url, expected: brokerKey, http: http)
        var clients: [BenchParticipant] = []
        for code in codes {
            let client = try await broker.enrol(code: code, brokerKey: brokerKey, http: http)
            clients.append(try BenchParticipant(client: client, transport: transport, dimension: d))
        }

        try await Task.sleep(for: .seconds(1))
        let idle = try broker.memory().rss
        try broker.resetPeak()
        let barrier = Barrier(count: n)
        let start = ContinuousClock.now
        try broker.send("start")
        let results = try await withThrowingTaskGroup(of: BenchParticipant.Result.self) { group in
            for participant in clients {
                group.addTask { try await participant.run(barrier: barrier) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let round = ContinuousClock.now - start
        let peak = try broker.memory().peak - idle

        // The new model must be the initial model plus the plain sum of the inputs.
        var sum = [UInt32](repeating: 0, count: d)
        var samples: UInt32 = 0
        for participant in clients {
            for i in sum.indices { sum[i] &+= participant.input[i] }
            samples += participant.samples
        }
        let expected = try FederatedModel.applying(
            sum: sum,
            sampleCount: samples,
            to: try FederatedModel.initialModel(of: spec),
            policy: spec.policy
        )
        let info: FederationInfo = try await clients[0].client.json("GET", "/v1/federations/bench")
        guard info.modelRound == 1, info.modelDigest == Hex.encode(try FederatedModel.digest(expected)) else {
            throw ExchangeError(.internal, "the round's model is not the initial model plus the sum of the inputs")
        }

        let bodies = results.map(\.body)
        let bytes = Double(bodies.map(\.count).reduce(0, +))
        let first = results.map(\.uploadStart).min()!
        let last = results.map(\.uploadEnd).max()!
        let ingest = bytes / (last - first).seconds / 1e6
        let floorStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for body in bodies {
                group.addTask {
                    var request = HTTPClientRequest(url: broker.nullURL)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/octet-stream")
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response = try await http.execute(request, timeout: .seconds(600))
                    guard response.status == .accepted else {
                        throw ExchangeError(.transport, "the null endpoint failed")
                    }
                }
            }
            try await group.waitForAll()
        }
        let floor = bytes / (ContinuousClock.now - floorStart).seconds / 1e6
        let decrypt = bytes / (try await Self.decrypt(results, threads: Self.decryptThreads)) / 1e6

        try await http.shutdown()
        return (
            Run(round: round.seconds, idle: idle, peak: peak, ingest: ingest, floor: floor, decrypt: decrypt),
            bodies[0].count
        )
    }

    /// The broker's upload slots (`--concurrent-uploads`, default 2: this machine's cores).
    static let decryptThreads = 2

    /// The decryption floor: the seconds `threads` threads take to decrypt every body (stream
    /// header, then each chunk straight from the body into one buffer per thread, tags checked),
    /// the bodies dealt out in turn. The same work as the broker's ingest, with no network, no
    /// copy and nothing else running.
    static func decrypt(_ results: [BenchParticipant.Result], threads: Int) async throws -> Double {
        let groups = (0..<threads).map { t in stride(from: t, to: results.count, by: threads).map { results[$0] } }
        let failed = Mutex(false)
        let start = ContinuousClock.now
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let left = Mutex(groups.count)
            for group in groups {
                Thread.detachNewThread {
                    let bytes = group.first.map { $0.layout.plaintextByteCount } ?? 0
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
                    defer { buffer.deallocate() }
                    do {
                        for result in group { try Self.decrypt(result, into: buffer) }
                    } catch {
                        failed.withLock { $0 = true }
                    }
                    if left.withLock({
                        $0 -= 1
                        return $0
                    }) == 0 {
                        done.resume()
                    }
                }
            }
        }
        let seconds = (ContinuousClock.now - start).seconds
        if failed.withLock({ $0 }) { throw ExchangeError(.internal, "a body did not decrypt in the floor") }
        return seconds
    }

    private static func decrypt(_ result: BenchParticipant.Result, into buffer: UnsafeMutableRawBufferPointer) throws {
        let layout = result.layout
        let header = Array(result.body.prefix(SecretStream.headerByteCount))
        let stream = try SecretStream.Decryptor(key: result.key, header: header)
        try result.body.withUnsafeBytes { body in
            var offset = SecretStream.headerByteCount
            for i in 0..<layout.chunkCount {
                let n = layout.plaintextBytes(ofChunk: i)
                let start = i * MaskedUpload.chunkByteCount
                _ = try stream.pull(
                    UnsafeRawBufferPointer(rebasing: body[offset..<(offset + n + SecretStream.chunkOverheadByteCount)]),
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[start..<(start + n)]),
                    authenticating: layout.associatedData(ofChunk: i)
                )
                offset += n + SecretStream.chunkOverheadByteCount
            }
        }
    }

}

/// Waits until `count` tasks arrived.
actor Barrier {
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private let count: Int

    init(count: Int) { self.count = count }

    func arrive() async {
        if waiting.count + 1 == count {
            for c in waiting { c.resume() }
            waiting = []
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }
}

/// One participant of the benchmark round: answers each phase over HTTP from its own SecAgg+
/// client, with a random input.
struct BenchParticipant: Sendable {
    struct Result: Sendable {
        let body: [UInt8]
        let layout: MaskedUpload
        let key: SymmetricKey
        let uploadStart: ContinuousClock.Instant
        let uploadEnd: ContinuousClock.Instant
    }

    let client: BrokerClient
    let transport: X25519.PublicKey
    let input: [UInt32]
    let samples: UInt32

    init(client: BrokerClient, transport: X25519.PublicKey, dimension: Int) throws {
        self.client = client
        self.transport = transport
        // Random 16-bit words: the sum of 100 stays far from wrapping.
        let random = SecureRandom.bytes(2 * dimension)
        input = (0..<dimension).map { UInt32(random[2 * $0]) | UInt32(random[2 * $0 + 1]) << 8 }
        samples = 1 + SecureRandom.uniform(1000)
    }

    /// Waits for `phase` and returns the round view.
    private func waitFor(_ phase: String) async throws -> RoundView {
        while true {
            let view: RoundView = try await client.json("GET", "/v1/federations/bench/round")
            if view.phase == phase, view.index >= 0, !view.answered { return view }
            if view.phase == "aborted" { throw ExchangeError(.internal, "the round aborted") }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    private func post(_ view: RoundView, _ path: String, _ body: [UInt8], digest: [UInt8]? = nil) async throws {
        _ = try await client.send(
            "POST",
            "/v1/federations/bench/rounds/\(view.round)/" + path,
            body: body,
            bodyDigest: digest,
            contentType: "application/octet-stream"
        )
    }

    func run(barrier: Barrier) async throws -> Result {
        var view = try await waitFor("advertise")
        var secagg = try SecAggClient(
            config: try RoundConfig(decoding: try Hex.decode(view.config)),
            identity: client.identity
        )
        try await post(view, "advertise", try secagg.advertise().encoded)
        view = try await waitFor("share")
        try await post(view, "share", try secagg.shareKeys(try KeyList(decoding: try Hex.decode(view.message))).encoded)
        view = try await waitFor("mask")
        let masked = try secagg.maskInput(
            try ShareDelivery(decoding: try Hex.decode(view.message)),
            input: input,
            sampleCount: samples,
            parallelism: .serial
        )
        let layout = MaskedUpload(wordCount: masked.words.count, session: masked.session, sender: masked.sender)
        var body: [UInt8] = []
        body.reserveCapacity(layout.bodyByteCount)
        let key = try secagg.uploadKey(brokerKey: transport)
        // The commitment the request signs comes with the encryption, before the clock starts:
        // the ingest figure times the broker, not the participants' preparation.
        let digest = try layout.encrypt(masked.words, key: key) { body += $0 }
        await barrier.arrive()
        let uploadStart = ContinuousClock.now
        try await post(view, "input", body, digest: digest)
        let uploadEnd = ContinuousClock.now
        view = try await waitFor("check")
        try await post(
            view,
            "check",
            try secagg.signSurvivors(try ConsistencyRequest(decoding: try Hex.decode(view.message))).encoded
        )
        view = try await waitFor("unmask")
        try await post(
            view,
            "unmask",
            try secagg.unmask(try UnmaskRequest(decoding: try Hex.decode(view.message))).encoded
        )
        while true {
            let view: RoundView = try await client.json("GET", "/v1/federations/bench/round")
            if view.modelRound >= 1 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        return Result(body: body, layout: layout, key: key, uploadStart: uploadStart, uploadEnd: uploadEnd)
    }
}

/// The broker process of the benchmark, started from this executable.
final class BrokerChild: Sendable {
    let process: Process
    let input: FileHandle
    let output: FileHandle
    let url: String
    let nullURL: String

    init(folder: String, participants: Int, quick: Bool) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments =
            ["broker-serve", "--database", folder, "--participants", "\(participants)"]
            + (quick ? ["--quick"] : [])
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        self.process = process
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        // The child prints "ports <broker> <null>" once both listen.
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n") {
            let byte = stdout.fileHandleForReading.readData(ofLength: 1)
            guard let b = byte.first else { throw ExchangeError(.internal, "the broker process exited") }
            line.append(b)
        }
        let parts = String(decoding: line.dropLast(), as: UTF8.self).split(separator: " ")
        guard parts.count == 3, parts[0] == "ports" else {
            throw ExchangeError(.internal, "the broker process did not start")
        }
        url = "http://127.0.0.1:\(parts[1])"
        nullURL = "http://127.0.0.1:\(parts[2])/null"
    }

    /// A new identity enrolled with invite `code`, as a client of this broker.
    func enrol(code: Substring, brokerKey: Ed25519.PublicKey, http: HTTPClient) async throws -> BrokerClient {
        let (client, _) = try await BrokerClient.connect(
            url: url,
            identity: try Ed25519.PrivateKey(),
            broker: brokerKey,
            http: http
        )
        let _: MemberRecord = try await client.json(
            "POST",
            "/v1/enrol",
            EnrolRequest(
                invite: String(code.prefix(32)),
                deliveryKey: Hex.encode(try X25519.PrivateKey().publicKey.rawRepresentation)
            )
        )
        return client
    }

    func send(_ command: String) throws { try input.write(contentsOf: Data((command + "\n").utf8)) }

    /// The broker's audit-log size; with `flush`, after the refusal summaries so far are written.
    func auditSize(flush: Bool = false) throws -> Int {
        try send(flush ? "flush" : "size")
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n") {
            guard let b = output.readData(ofLength: 1).first else {
                throw ExchangeError(.internal, "the broker process exited")
            }
            line.append(b)
        }
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        guard text.hasPrefix("size "), let size = Int(text.dropFirst(5)) else {
            throw ExchangeError(.internal, "the broker process answered \(text)")
        }
        return size
    }

    /// `VmRSS` and `VmHWM` in bytes.
    func memory() throws -> (rss: Int, peak: Int) {
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// Resets `VmHWM` to the current resident size.
    func resetPeak() throws {
        try "5".write(toFile: "/proc/\(process.processIdentifier)/clear_refs", atomically: false, encoding: .utf8)
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

/// `cairn-bench broker-serve`: the broker half of `cairn-bench broker`.
enum BrokerBenchServer {
    /// The benchmark's federation: an MLP with 251 inputs and 3937 hidden units over 2 classes
    /// (D = 10^6 exactly; `quick`: 393 units, D = 99,824), every deadline 10 minutes.
    static func spec(participants: Int, quick: Bool) -> FederationSpec {
        FederationSpec(
            id: "bench",
            description: "cairn-bench broker",
            schema: DataSchema(
                task: .binary,
                label: .init(name: "y", classes: ["no", "yes"]),
                features: (1...251).map { DataSchema.Feature(name: "x\($0)", type: .float, min: 0, max: 1) }
            ),
            model: ModelChoice(kind: .mlp, hidden: quick ? 393 : 3937),
            policy: RoundPolicy(
                minimumParticipants: participants,
                deadlines: PhaseDeadlines(advertise: 600, share: 600, mask: 600, check: 600, unmask: 600)
            )
        )
    }

    /// Sets up the exchange in `folder` (federation, one invite per participant in
    /// `folder/invites`), serves it and a null endpoint on loopback, prints
    /// `ports <broker> <null>`, and starts one round when `start` arrives on standard input.
    static func serve(folder: String, participants: Int, quick: Bool) async throws {
        let logger = Logger(label: "cairn-bench.broker") { _ in SwiftLogNoOpLogHandler() }
        let identity = try Ed25519.PrivateKey()
        let operatorKey = try Ed25519.PrivateKey()
        let exchange = try Exchange(
            folder: folder,
            log: try AuditLog(path: folder + "/audit.sqlite"),
            keys: Exchange.Keys(
                identity: identity,
                transport: try X25519.PrivateKey(),
                checkpoint: try NoteSigner(name: "cairn.bench/broker", key: try Ed25519.PrivateKey()),
                licence: try Ed25519.PrivateKey(),
                operatorKey: operatorKey.publicKey
            ),
            origin: "cairn.bench/broker",
            metrics: ExchangeMetrics(),
            logger: logger
        )
        let op = try await exchange.authenticate(
            method: "POST",
            target: "/bench",
            signature: try RequestSignature.sign(
                method: "POST",
                target: "/bench",
                bodyDigest: try RequestSignature.digest([]),
                identity: operatorKey,
                broker: identity.publicKey
            ),
            bodyDigest: try RequestSignature.digest([])
        )
        try await exchange.createFederation(op, spec(participants: participants, quick: quick))
        var codes: [String] = []
        for _ in 0..<participants {
            codes.append(try await exchange.invite(op, federation: "bench", InviteRequest(role: .participant)).code)
        }
        try codes.joined(separator: "\n").write(toFile: folder + "/invites", atomically: true, encoding: .utf8)

        let ports = Mutex<(Int?, Int?)>((nil, nil))
        @Sendable func announce(broker: Int? = nil, null: Int? = nil) {
            let both = ports.withLock { p -> (Int, Int)? in
                p = (broker ?? p.0, null ?? p.1)
                guard let b = p.0, let n = p.1 else { return nil }
                return (b, n)
            }
            if let both { FileHandle.standardOutput.write(Data("ports \(both.0) \(both.1)\n".utf8)) }
        }
        let router = Router()
        router.post("/null") { request, _ -> Response in
            for try await _ in request.body {}
            return Response(status: .accepted)
        }
        let null = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { announce(null: $0.localAddress?.port) },
            logger: logger
        )
        let app = try BrokerServer.application(exchange, host: "127.0.0.1", port: 0, logger: logger) {
            announce(broker: $0)
        }
        Thread.detachNewThread {
            while let line = readLine() {
                if line == "size" || line == "flush" {
                    // The attack benchmark's questions: the audit log's size, after the refusal
                    // summaries of the minute so far are written (`flush`).
                    Task {
                        if line == "flush" { await exchange.flushRefusals(force: true) }
                        FileHandle.standardOutput.write(Data("size \(exchange.auditSize)\n".utf8))
                    }
                    continue
                }
                guard line == "start" else { continue }
                Task {
                    _ = try await exchange.training(
                        op,
                        federation: "bench",
                        TrainingRequest(action: "start", rounds: 1)
                    )
                }
            }
        }
        try await ServiceGroup(
            services: [app, null],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ).run()
    }
}
