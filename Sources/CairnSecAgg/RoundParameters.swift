import CairnWire
internal import Glibc

/// The neighbour count `k`, the Shamir threshold `t` and the survivor-signature threshold `T` of a
/// round, chosen from the group size and what it must tolerate.
///
/// The rule (`Protocol/README.md`, "Round parameters"), with `n` participants, at most
/// `d = ⌈δ·n⌉` dropping out and at most `c = ⌊γ·n⌋` corrupt, σ = 40 bits for privacy and η = 40
/// bits for completing the round:
/// - `T = ⌊(n + c) / 2⌋ + 1`. Two survivor sets that each gathered `T` signatures share at least
///   `2T − n > c` signers, so at least one honest signer, who signs once: only one set can
///   ever be accepted. The round needs `n − d ≥ T`.
/// - For each even `k` from 2 (then `k = n − 1`, full SecAgg), with neighbours a uniformly random
///   `k`-subset of the other `n − 1` for each participant (the relabelled ring): `c_k` is the least
///   bound with `n · P[Hyp(n − 1, c, k) > c_k] ≤ 2^−σ` on corrupt neighbours, and `d_k` the least with
///   `n · P[Hyp(n − 1, d, k) > d_k] ≤ 2^−η` on dropped neighbours. Then
///   `t = max(c_k + 1, ⌊k / 2⌋ + 1)`: corrupt neighbours alone never hold `t` shares, and no minority does.
/// - `k` is accepted when `t + d_k ≤ k` (enough neighbours survive to answer) and, below `n − 1`, when
///   the ring of honest survivors stays connected: `n · C(n − h, m − h) / C(n, m) ≤ 2^−σ` for a run
///   of `h = k / 2` consecutive positions among the `m = c + d` removed ones (otherwise the broker
///   could learn the sums of the separate pieces). The smallest such `k` is chosen.
public struct RoundParameters: Sendable, Hashable, CustomStringConvertible {
    /// `k`.
    public let neighbours: Int
    /// `t`.
    public let threshold: Int
    /// `T`.
    public let signatureThreshold: Int

    /// Wraps explicit values; ``RoundConfig`` checks them against its roster.
    public init(neighbours: Int, threshold: Int, signatureThreshold: Int) {
        self.neighbours = neighbours
        self.threshold = threshold
        self.signatureThreshold = signatureThreshold
    }

    public var description: String { "k = \(neighbours), t = \(threshold), T = \(signatureThreshold)" }

    /// Bits of security against the broker and corrupt participants learning an input.
    public static let securityBits = 40.0
    /// Bits of assurance that tolerated dropouts never stop a round.
    public static let correctnessBits = 40.0

    /// Chooses `k`, `t` and `T` by the rule above.
    ///
    /// - Throws: ``SecAggError/Code/unsafeConfiguration`` when no choice is safe (for example a
    ///   dropout fraction that leaves fewer than `T` signers), saying which condition fails.
    public static func choose(participants n: Int, dropoutFraction: Double, corruptFraction: Double) throws -> Self {
        guard n >= 3, n <= RoundConfig.maximumParticipants else {
            throw SecAggError(
                .unsafeConfiguration,
                "a round needs 3…\(RoundConfig.maximumParticipants) participants, not \(n)"
            )
        }
        guard (0..<1).contains(dropoutFraction), (0..<1).contains(corruptFraction) else {
            throw SecAggError(.unsafeConfiguration, "the dropout and corrupt fractions must be in [0, 1)")
        }
        let dropped = Int((dropoutFraction * Double(n) - 1e-9).rounded(.up).clamped(0, Double(n)))
        let corrupt = Int((corruptFraction * Double(n) + 1e-9).rounded(.down))
        let signatures = (n + corrupt) / 2 + 1
        guard n - dropped >= signatures else {
            throw SecAggError(
                .unsafeConfiguration,
                "with \(dropped) of \(n) dropping out and \(corrupt) corrupt, only \(n - dropped) could sign the "
                    + "survivor set but \(signatures) signatures are needed (tolerate fewer dropouts or corrupt participants)"
            )
        }
        let privacy = -securityBits * M_LN2 - log(Double(n))
        let completion = -correctnessBits * M_LN2 - log(Double(n))
        var candidates = Array(stride(from: 2, to: n - 1, by: 2))
        candidates.append(n - 1)
        for k in candidates {
            let corruptBound = tailBound(population: n - 1, marked: corrupt, draws: k, logLimit: privacy)
            let droppedBound = tailBound(population: n - 1, marked: dropped, draws: k, logLimit: completion)
            let t = max(corruptBound + 1, k / 2 + 1)
            guard t + droppedBound <= k else { continue }
            if k < n - 1 {
                let run = k / 2
                let removed = corrupt + dropped
                if removed >= run {
                    let gap = logChoose(n - run, removed - run) - logChoose(n, removed) + log(Double(n))
                    guard gap <= -securityBits * M_LN2 else { continue }
                }
            }
            return Self(neighbours: k, threshold: t, signatureThreshold: signatures)
        }
        throw SecAggError(
            .unsafeConfiguration,
            "no neighbour count is safe for \(n) participants with \(dropped) dropping out and \(corrupt) corrupt: "
                + "even full SecAgg needs t + dropouts ≤ n − 1"
        )
    }

    /// The least `b` with `ln P[X > b] ≤ logLimit`, `X` hypergeometric (draws from a population
    /// holding `marked` marked items); `min(marked, draws)` when no smaller bound holds.
    static func tailBound(population: Int, marked: Int, draws: Int, logLimit: Double) -> Int {
        let top = min(marked, draws)
        let total = logChoose(population, draws)
        // P[X = x] for x = top, top − 1, …; the tail above b is the sum of those above b.
        var tail = 0.0
        var b = top
        while b > 0 {
            let x = b
            let p = exp(logChoose(marked, x) + logChoose(population - marked, draws - x) - total)
            if log(tail + p) > logLimit { break }
            tail += p
            b -= 1
        }
        return b
    }

    /// ln C(n, r), or −∞ outside 0 ≤ r ≤ n.
    static func logChoose(_ n: Int, _ r: Int) -> Double {
        guard r >= 0, r <= n else { return -.infinity }
        return lgamma(Double(n + 1)) - lgamma(Double(r + 1)) - lgamma(Double(n - r + 1))
    }
}

extension Double {
    fileprivate func clamped(_ low: Double, _ high: Double) -> Double { Swift.min(Swift.max(self, low), high) }
}
