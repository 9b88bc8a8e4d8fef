public import CairnCrypto
public import CairnSIMD
import CairnWire

/// Everything a secure-aggregation round is bound to, fixed before it opens: who may take part,
/// what is summed, and the thresholds.
///
/// Its canonical encoding (`Protocol/README.md`, "Secure aggregation") is hashed into the
/// ``digest``, which every advertised key signs and the session id includes, so nothing from one
/// round, federation or configuration is accepted in another.
public struct RoundConfig: Sendable, Hashable {
    /// The most participants one round can have.
    public static let maximumParticipants = 10_000
    /// The most model coordinates one round can sum (2^28, a 1 GiB vector).
    public static let maximumDimension = 1 << 28
    /// The longest federation name in bytes.
    public static let maximumFederationByteCount = 64

    /// The federation's name.
    public let federation: String
    /// The round number within the federation.
    public let round: UInt64
    /// SHA-256 or BLAKE2b digest (32 bytes) of the model the participants start from.
    public let baseModelDigest: [UInt8]
    /// The number of model coordinates `D`. Masked vectors carry `D + 1` words: the last is the
    /// participant's sample count.
    public let dimension: Int
    /// The fixed-point encoding of the inputs.
    public let quantisation: QuantisationParameters
    /// The largest sample count one participant may report.
    public let maximumSampleCount: UInt32
    /// The identity keys of the participants invited to the round; a participant is named by its
    /// position in this list (its roster index).
    public let roster: [Ed25519.PublicKey]
    /// `k`: how many neighbours each participant shares its secrets with (`n − 1`: full SecAgg).
    public let neighbours: Int
    /// `t`: how many of a participant's neighbours must answer to reconstruct one of its secrets.
    public let threshold: Int
    /// `T`: how many signatures the survivor set needs before anyone reveals a share.
    public let signatureThreshold: Int

    /// Checks the configuration and refuses anything that cannot be made safe.
    ///
    /// - Throws: ``SecAggError/Code/unsafeConfiguration`` naming the rule broken (see
    ///   `Protocol/README.md`, "Round parameters"): `k` outside 2…n − 1 or odd below n − 1;
    ///   `t` ≤ k / 2 or above `k`; `T` ≤ n / 2 or above `n`; a fixed-point sum of `n` inputs or of
    ///   their sample counts that could overflow; duplicate roster keys; sizes out of range.
    public init(
        federation: String,
        round: UInt64,
        baseModelDigest: [UInt8],
        dimension: Int,
        quantisation: QuantisationParameters,
        maximumSampleCount: UInt32,
        roster: [Ed25519.PublicKey],
        neighbours: Int,
        threshold: Int,
        signatureThreshold: Int
    ) throws {
        func refuse(_ message: String) -> SecAggError { SecAggError(.unsafeConfiguration, message) }
        let nameBytes = federation.utf8.count
        guard nameBytes >= 1, nameBytes <= Self.maximumFederationByteCount else {
            throw refuse("a federation name has 1–\(Self.maximumFederationByteCount) bytes, not \(nameBytes)")
        }
        guard baseModelDigest.count == 32 else {
            throw refuse("the base-model digest has 32 bytes, not \(baseModelDigest.count)")
        }
        guard dimension >= 1, dimension <= Self.maximumDimension else {
            throw refuse("the dimension must be 1…\(Self.maximumDimension), not \(dimension)")
        }
        let n = roster.count
        guard n >= 3, n <= Self.maximumParticipants else {
            throw refuse("a round needs 3…\(Self.maximumParticipants) participants, not \(n)")
        }
        guard Set(roster).count == n else { throw refuse("the roster names one identity key twice") }
        guard neighbours >= 2, neighbours <= n - 1, neighbours % 2 == 0 || neighbours == n - 1 else {
            throw refuse("k = \(neighbours) neighbours: k must be even and 2…\(n - 1), or exactly n − 1 = \(n - 1)")
        }
        guard threshold > neighbours / 2, threshold <= neighbours else {
            throw refuse(
                "threshold t = \(threshold) with k = \(neighbours): t must be \(neighbours / 2 + 1)…\(neighbours); "
                    + "at k / 2 or below, a minority of a participant's neighbours and the broker could unmask it"
            )
        }
        guard signatureThreshold > n / 2, signatureThreshold <= n else {
            throw refuse(
                "T = \(signatureThreshold) survivor-set signatures for \(n) participants: T must be \(n / 2 + 1)…\(n); "
                    + "at n / 2 or below, a broker could get two different survivor sets signed"
            )
        }
        guard quantisation.isSafe(participants: n) else {
            throw refuse(
                "the fixed-point sum could overflow: \(n) × (scale × clip bound + 1) must stay below 2^31 (\(quantisation))"
            )
        }
        guard maximumSampleCount >= 1, UInt64(n) * UInt64(maximumSampleCount) < 1 << 32 else {
            throw refuse("the sample-count sum could overflow: \(n) × \(maximumSampleCount) must stay below 2^32")
        }
        self.federation = federation
        self.round = round
        self.baseModelDigest = baseModelDigest
        self.dimension = dimension
        self.quantisation = quantisation
        self.maximumSampleCount = maximumSampleCount
        self.roster = roster
        self.neighbours = neighbours
        self.threshold = threshold
        self.signatureThreshold = signatureThreshold
        // BLAKE2b with a valid output size cannot fail.
        digest = (try? BLAKE2b.hash(encoded, domain: .secAggConfig)) ?? []
    }

    /// The same round with thresholds chosen by ``RoundParameters/choose(participants:dropoutFraction:corruptFraction:)``.
    public init(
        federation: String,
        round: UInt64,
        baseModelDigest: [UInt8],
        dimension: Int,
        quantisation: QuantisationParameters,
        maximumSampleCount: UInt32,
        roster: [Ed25519.PublicKey],
        parameters: RoundParameters
    ) throws {
        try self.init(
            federation: federation,
            round: round,
            baseModelDigest: baseModelDigest,
            dimension: dimension,
            quantisation: quantisation,
            maximumSampleCount: maximumSampleCount,
            roster: roster,
            neighbours: parameters.neighbours,
            threshold: parameters.threshold,
            signatureThreshold: parameters.signatureThreshold
        )
    }

    /// BLAKE2b-256 of the encoding in the `cairn/secagg/config/v1` domain.
    public private(set) var digest: [UInt8] = []

    /// The number of participants invited (`n`).
    public var participantCount: Int { roster.count }

    /// The number of words in a masked vector: `D + 1`.
    public var wordCount: Int { dimension + 1 }

    /// The canonical encoding.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 96 + 32 * roster.count)
        w.string(federation)
        w.u64(round)
        w.raw(baseModelDigest)
        w.u32(UInt32(dimension))
        w.u32(quantisation.scale.bitPattern)
        w.u32(quantisation.clipBound.bitPattern)
        w.u32(maximumSampleCount)
        w.u16(UInt16(neighbours))
        w.u16(UInt16(threshold))
        w.u16(UInt16(signatureThreshold))
        w.u32(UInt32(roster.count))
        for key in roster { w.raw(key.rawRepresentation) }
        return w.bytes
    }

    /// Decodes and checks a canonical encoding.
    public init(decoding bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        try self.init(reading: &r)
        try r.finish()
    }

    /// Reads a configuration from a longer encoding (a saved state).
    init(reading r: inout ByteReader) throws {
        let federation = try r.string("federation", maximum: Self.maximumFederationByteCount)
        let round = try r.u64("round")
        let digest = try r.fixed(32, "base-model digest")
        let dimension = try r.u32("dimension")
        let scale = Float(bitPattern: try r.u32("scale"))
        let clip = Float(bitPattern: try r.u32("clip bound"))
        let samples = try r.u32("maximum sample count")
        let k = try r.u16("neighbours")
        let t = try r.u16("threshold")
        let signatures = try r.u16("signature threshold")
        let count = try r.u32("roster count")
        guard count <= Self.maximumParticipants else {
            throw WireError(.tooLarge, "roster count: \(count) exceeds \(Self.maximumParticipants)")
        }
        var roster: [Ed25519.PublicKey] = []
        for i in 0..<Int(count) {
            roster.append(try Ed25519.PublicKey(rawRepresentation: try r.fixed(32, "roster key \(i)")))
        }
        try self.init(
            federation: federation,
            round: round,
            baseModelDigest: digest,
            dimension: Int(dimension),
            quantisation: try QuantisationParameters(scale: scale, clipBound: clip),
            maximumSampleCount: samples,
            roster: roster,
            neighbours: Int(k),
            threshold: Int(t),
            signatureThreshold: Int(signatures)
        )
    }

}
