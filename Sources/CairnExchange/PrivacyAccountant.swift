public import CairnModels
import Foundation

/// Differential-privacy accounting of rounds of the distributed discrete Gaussian (DDG) mechanism
/// (Kairouz, Liu and Steinke, ICML 2021) in Rényi DP (Mironov 2017), composed over rounds by
/// adding RDP, converted to `(ε, δ)` with the bound of Canonne, Kamath and Steinke 2020
/// (Proposition 12 of arXiv:2004.00010v4) minimised over the order α.
///
/// One round: `m` participants each add N_Z(0, v) to every one of `d` coordinates of an integer
/// update whose L2 sensitivity (one participant present or absent) is at most `Δ`. With
/// `s = Δ / √(m·v)` and `τ = 10 · Σ_{k=1}^{m−1} exp(−2π²·v·k/(k+1))` (how far a sum of discrete
/// Gaussians is from one), the round is `(α, ρ(α))`-RDP for every α > 1 with
/// `ρ(α) = min(α·s²/2 + τ·d, α/2 · (s + τ·√d)²)` (their Theorem 1 with Proposition 14). With
/// τ = 0 this is the Gaussian mechanism's `α/(2z²)` at noise multiplier `z = 1/s`.
public enum PrivacyAccountant {
    /// One round of the DDG mechanism.
    public struct Round: Sendable, Hashable, Codable {
        /// `Δ / √(m·v)`: the L2 sensitivity over the standard deviation of the summed noise.
        public var sensitivityOverNoise: Double
        /// τ·d and τ·√d's τ (0 for the continuous Gaussian).
        public var tau: Double
        /// `d`, the coordinates noised.
        public var dimension: Double

        /// The Gaussian mechanism with noise multiplier `z` (no discreteness term).
        public static func gaussian(noiseMultiplier z: Double) -> Round {
            Round(sensitivityOverNoise: 1 / z, tau: 0, dimension: 0)
        }

        /// A DDG round: `contributors` shares of variance `variance` (quantised units) on
        /// `dimension` coordinates of sensitivity `sensitivity` (quantised units).
        public static func distributedDiscreteGaussian(
            sensitivity: Double,
            variance: Double,
            contributors: Int,
            dimension: Int
        ) -> Round {
            var tau = 0.0
            for k in stride(from: 1, to: contributors, by: 1) {
                tau += exp(-2 * Double.pi * Double.pi * variance * Double(k) / Double(k + 1))
            }
            return Round(
                sensitivityOverNoise: sensitivity / (Double(contributors) * variance).squareRoot(),
                tau: 10 * tau,
                dimension: Double(dimension)
            )
        }

        /// A round of the simulation's mechanism (``FederatedSimulation/Privacy``) over `participants`
        /// participants and `dimension` parameters, its noise shared by its contributors (the
        /// participants when it names none).
        public static func simulated(
            _ privacy: FederatedSimulation.Privacy,
            participants: Int,
            dimension: Int
        ) -> Round {
            let m = privacy.contributors ?? participants
            return distributedDiscreteGaussian(
                sensitivity: privacy.sensitivity(dimension: dimension),
                variance: Double(privacy.variance(participants: m)),
                contributors: m,
                dimension: dimension
            )
        }

        /// ρ(α) of one round.
        public func rdp(order alpha: Double) -> Double {
            let s = sensitivityOverNoise
            return min(alpha * s * s / 2 + tau * dimension, alpha / 2 * pow(s + tau * dimension.squareRoot(), 2))
        }
    }

    /// The smallest ε of `(ε, δ)`-DP that `rounds` rounds like `round` give, and the order that
    /// gives it: `min_α T·ρ(α) + log(1 − 1/α) − log(δ·α)/(α − 1)` over α in (1.01, 10^5].
    public static func epsilon(of round: Round, rounds: Int, delta: Double) -> (epsilon: Double, order: Double) {
        precondition(rounds >= 0 && delta > 0 && delta < 1)
        func bound(_ alpha: Double) -> Double {
            let r = Double(rounds) * round.rdp(order: alpha)
            // With the divergence this small, the KL bound already gives ε = 0 (as dp-accounting).
            if delta * delta + expm1(-r) > 0 { return 0 }
            return r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
        }
        // A log-spaced grid of α − 1 from 0.01 to 10^5, then golden-section search around the best.
        var best = (epsilon: Double.infinity, order: 2.0)
        for k in 0...900 {
            let alpha = 1 + pow(10, -2 + Double(k) / 128)
            let e = bound(alpha)
            if e < best.epsilon { best = (e, alpha) }
        }
        var (lo, hi) = (1 + (best.order - 1) / pow(10, 1.0 / 128), 1 + (best.order - 1) * pow(10, 1.0 / 128))
        lo = max(lo, 1.01)
        let phi = (5.0.squareRoot() - 1) / 2
        for _ in 0..<80 {
            let a = hi - phi * (hi - lo)
            let b = lo + phi * (hi - lo)
            if bound(a) < bound(b) { hi = b } else { lo = a }
        }
        let alpha = (lo + hi) / 2
        if bound(alpha) < best.epsilon { best = (bound(alpha), alpha) }
        return (max(0, best.epsilon), best.order)
    }

    /// The smallest noise multiplier `z` (to 3 significant digits, rounded up) at which `rounds`
    /// rounds of the Gaussian mechanism stay within `(epsilon, delta)`; `make` turns `z` into the
    /// round to account (``Round/gaussian(noiseMultiplier:)`` by default).
    public static func noiseMultiplier(
        epsilon target: Double,
        delta: Double,
        rounds: Int,
        make: (Double) -> Round = Round.gaussian(noiseMultiplier:)
    ) -> Double? {
        precondition(target > 0)
        func spent(_ z: Double) -> Double { epsilon(of: make(z), rounds: rounds, delta: delta).epsilon }
        var (lo, hi) = (1e-3, 1e-3)
        while spent(hi) > target {
            lo = hi
            hi *= 2
            if hi > 1e6 { return nil }
        }
        for _ in 0..<100 {
            let mid = (lo + hi) / 2
            if spent(mid) > target { lo = mid } else { hi = mid }
        }
        // Rounded up to 3 significant digits: never less noise than the target needs.
        let magnitude = pow(10, floor(log10(hi)) - 2)
        return (hi / magnitude).rounded(.up) * magnitude
    }
}
