public import CairnCrypto
public import CairnSIMD
import CairnWire

/// The five phases of a round, named for where a participant can drop out.
public enum RoundPhase: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// AdvertiseKeys: it never advertises.
    case advertiseKeys
    /// ShareKeys: it advertised, then sends no shares.
    case shareKeys
    /// MaskedInput: it shared, then sends no masked input.
    case maskedInput
    /// ConsistencyCheck: its input is in, then it does not sign.
    case consistencyCheck
    /// Unmasking: it signed, then does not answer.
    case unmasking

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        ["AdvertiseKeys", "ShareKeys", "MaskedInput", "ConsistencyCheck", "Unmasking"][rawValue]
    }
}

/// Whole rounds in one process: real clients and a real server exchanging encoded messages, with
/// participants dropping out at chosen phases. Tests and `cairn-bench secagg` run it.
public struct SecAggSimulation {
    /// The round.
    public let config: RoundConfig
    /// One identity per roster entry.
    public let identities: [Ed25519.PrivateKey]
    /// Threads for masking and unmasking.
    public var parallelism: Parallelism = .allCores

    /// A simulation of `config` whose roster holds `identities`' public keys, in order.
    public init(config: RoundConfig, identities: [Ed25519.PrivateKey]) throws {
        guard identities.map(\.publicKey) == config.roster else {
            throw SecAggError(.malformed, "the identities do not match the roster")
        }
        self.config = config
        self.identities = identities
    }

    /// What a round produced, and what it cost.
    public struct Outcome: Sendable {
        /// The unmasked sum.
        public let result: AggregateResult
        /// Bytes each participant uploaded, by roster index (every message it sent, encoded).
        public let uploadBytes: [Int]
        /// Keystream expansions the server made to unmask.
        public let unmaskingExpansions: Int
    }

    /// Runs a round. Participant `i` sends everything until `dropouts[i]`, the phase in which it
    /// stops answering; `inputs[i]` is its quantised input (`D` words).
    ///
    /// - Throws: ``SecAggError/Code/aborted`` when the dropouts exceed what the round tolerates;
    ///   any error a client raises (a client never raises one against this honest server).
    public func run(inputs: [[UInt32]], sampleCounts: [UInt32], dropouts: [Int: RoundPhase] = [:]) throws -> Outcome {
        let n = config.participantCount
        func stays(_ i: Int, _ phase: RoundPhase) -> Bool { dropouts[i].map { phase < $0 } ?? true }
        var server = SecAggServer(config: config)
        server.parallelism = parallelism
        var clients = try identities.map { try SecAggClient(config: config, identity: $0) }
        var uploaded = [Int](repeating: 0, count: n)

        for i in 0..<n where stays(i, .advertiseKeys) {
            let bytes = try clients[i].advertise().encoded
            uploaded[i] += bytes.count
            try server.receive(AdvertiseKeys(decoding: bytes))
        }
        let keyList = try server.closeAdvertising().encoded
        for i in 0..<n where stays(i, .shareKeys) {
            let bytes = try clients[i].shareKeys(KeyList(decoding: keyList)).encoded
            uploaded[i] += bytes.count
            try server.receive(ShareKeys(decoding: bytes))
        }
        var deliveries: [UInt16: [UInt8]] = [:]
        for delivery in try server.closeSharing() { deliveries[delivery.recipient] = delivery.encoded }
        for i in 0..<n where stays(i, .maskedInput) {
            guard let delivery = deliveries[UInt16(i)] else { continue }
            let bytes = try clients[i].maskInput(
                ShareDelivery(decoding: delivery),
                input: inputs[i],
                sampleCount: sampleCounts[i],
                parallelism: parallelism
            ).encoded
            uploaded[i] += bytes.count
            try server.receive(MaskedInput(decoding: bytes))
        }
        let consistency = try server.closeMasking().encoded
        for i in 0..<n where stays(i, .consistencyCheck) && clients[i].phase == .maskedInput {
            let bytes = try clients[i].signSurvivors(ConsistencyRequest(decoding: consistency)).encoded
            uploaded[i] += bytes.count
            try server.receive(ConsistencySignature(decoding: bytes))
        }
        let unmask = try server.closeChecking().encoded
        for i in 0..<n where stays(i, .unmasking) && clients[i].phase == .signedSurvivors {
            let bytes = try clients[i].unmask(UnmaskRequest(decoding: unmask)).encoded
            uploaded[i] += bytes.count
            try server.receive(UnmaskResponse(decoding: bytes))
        }
        let expansions = server.unmaskingExpansions
        return Outcome(result: try server.finish(), uploadBytes: uploaded, unmaskingExpansions: expansions)
    }
}
