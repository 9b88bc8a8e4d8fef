import CairnCrypto
import CairnSIMD
import CairnWire
import Testing

@testable import CairnSecAgg

/// Reproducible pseudorandom words: the ChaCha20 keystream (the project's PRG) of a seed made
/// from `seed`, so every random round in these tests can be replayed from its seed.
func words(_ count: Int, seed: UInt64) -> [UInt32] {
    var out = [UInt32](repeating: 0, count: count)
    var bytes = [UInt8](repeating: 0, count: 32)
    withUnsafeBytes(of: seed.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    let stream = try! ChaCha20Keystream(seed: SecretBytes(copying: bytes))
    out.withUnsafeMutableBufferPointer { try! MaskExpansion.add(stream, to: $0, parallelism: .serial) }
    return out
}

/// Identities whose seeds are fixed bytes, so a test's roster is the same on every run.
func identities(_ n: Int, salt: UInt8 = 0) -> [Ed25519.PrivateKey] {
    (0..<n).map { i in
        var seed = [UInt8](repeating: salt, count: 32)
        seed[0] = UInt8(i & 0xff)
        seed[1] = UInt8(i >> 8)
        return try! Ed25519.PrivateKey(seed: SecretBytes(copying: seed))
    }
}

/// A round configuration over `keys` with explicit parameters.
func config(
    _ keys: [Ed25519.PrivateKey],
    _ parameters: RoundParameters,
    dimension: Int = 37,
    federation: String = "hospitals",
    round: UInt64 = 7,
    maximumSampleCount: UInt32 = 100_000
) throws -> RoundConfig {
    try RoundConfig(
        federation: federation,
        round: round,
        baseModelDigest: [UInt8](repeating: 0xab, count: 32),
        dimension: dimension,
        quantisation: QuantisationParameters(scale: 1024, clipBound: 4),
        maximumSampleCount: maximumSampleCount,
        roster: keys.map(\.publicKey),
        parameters: parameters
    )
}

/// `Σ inputs[i]` and `Σ counts[i]` in Z_2^32 over `members`: the answer a round must give.
func expectedSum(_ inputs: [[UInt32]], _ counts: [UInt32], _ members: [Int]) -> ([UInt32], UInt32) {
    var sum = [UInt32](repeating: 0, count: inputs[0].count)
    var total: UInt32 = 0
    for i in members {
        for j in sum.indices { sum[j] &+= inputs[i][j] }
        total &+= counts[i]
    }
    return (sum, total)
}

/// Expects `body` to throw a ``SecAggError`` with `code` and exactly `message`.
func expectRefusal(
    _ code: SecAggError.Code,
    _ message: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected \(code): \(message)", sourceLocation: sourceLocation)
    } catch let error as SecAggError {
        #expect(error.code == code, sourceLocation: sourceLocation)
        #expect(error.message == message, sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

/// A round driven by hand up to each phase, so a test can play a dishonest broker.
struct Harness {
    let keys: [Ed25519.PrivateKey]
    let config: RoundConfig
    var server: SecAggServer
    var clients: [SecAggClient]
    let inputs: [[UInt32]]
    var keyList: KeyList?
    var deliveries: [UInt16: ShareDelivery] = [:]
    var consistency: ConsistencyRequest?
    var signatures: [ConsistencySignature] = []
    var unmask: UnmaskRequest?

    init(n: Int, parameters: RoundParameters, round: UInt64 = 7, federation: String = "hospitals") throws {
        let keys = identities(n)
        let config = try CairnSecAggTests.config(keys, parameters, federation: federation, round: round)
        self.keys = keys
        self.config = config
        server = SecAggServer(config: config)
        clients = try keys.map { try SecAggClient(config: config, identity: $0) }
        inputs = (0..<n).map { words(37, seed: UInt64($0) + 1000 * round) }
    }

    /// Everyone but `absent` advertises; the key list is made.
    mutating func advertise(absent: Set<Int> = []) throws {
        for i in clients.indices where !absent.contains(i) { try server.receive(clients[i].advertise()) }
        keyList = try server.closeAdvertising()
    }

    mutating func share(absent: Set<Int> = []) throws {
        for i in clients.indices where clients[i].phase == .advertised && !absent.contains(i) {
            try server.receive(clients[i].shareKeys(keyList!))
        }
        for d in try server.closeSharing() { deliveries[d.recipient] = d }
    }

    mutating func mask(absent: Set<Int> = []) throws {
        for i in clients.indices where clients[i].phase == .sharedKeys && !absent.contains(i) {
            try server.receive(
                clients[i].maskInput(deliveries[UInt16(i)]!, input: inputs[i], sampleCount: UInt32(i + 1))
            )
        }
        consistency = try server.closeMasking()
    }

    mutating func check(absent: Set<Int> = []) throws {
        for i in clients.indices where clients[i].phase == .maskedInput && !absent.contains(i) {
            let signature = try clients[i].signSurvivors(consistency!)
            signatures.append(signature)
            try server.receive(signature)
        }
        unmask = try server.closeChecking()
    }

    /// All four steps before unmasking.
    mutating func toUnmasking() throws {
        try advertise()
        try share()
        try mask()
        try check()
    }
}
