import CairnExchange
import Foundation
import Testing

/// The accountant's own arithmetic (its agreement with Google's dp-accounting is checked by
/// `python/tests/test_accountant.py`, which the test command runs).
@Suite struct PrivacyAccountantTests {
    /// One DDG round's RDP is the smaller of the two bounds, with τ from the shares' variance.
    @Test func aDistributedDiscreteGaussianRound() {
        let round = PrivacyAccountant.Round.distributedDiscreteGaussian(
            sensitivity: 3,
            variance: 0.1,
            contributors: 3,
            dimension: 4
        )
        let tau = 10 * (exp(-2 * Double.pi * Double.pi * 0.1 / 2) + exp(-2 * Double.pi * Double.pi * 0.1 * 2 / 3))
        let s = 3 / (0.3 as Double).squareRoot()
        #expect(abs(round.tau - tau) < 1e-12 && abs(round.sensitivityOverNoise - s) < 1e-12)
        #expect(abs(round.rdp(order: 2) - min(2 * s * s / 2 + tau * 4, (s + tau * 2) * (s + tau * 2))) < 1e-12)
        // With shares of variance 10^6 the discreteness term vanishes: the Gaussian at z = √(m·v)/Δ.
        let large = PrivacyAccountant.Round.distributedDiscreteGaussian(
            sensitivity: 1000,
            variance: 1e6,
            contributors: 4,
            dimension: 1_000_000
        )
        #expect(large.tau == 0)
        #expect(large.rdp(order: 7) == PrivacyAccountant.Round.gaussian(noiseMultiplier: 2).rdp(order: 7))
    }

    /// ε grows with rounds and shrinks with noise; no rounds spend nothing; the noise a budget
    /// needs spends at most it, and one step less (three significant digits) spends more.
    @Test func epsilonAndTheNoiseABudgetNeeds() throws {
        let e = { (z: Double, t: Int) in
            PrivacyAccountant.epsilon(of: .gaussian(noiseMultiplier: z), rounds: t, delta: 1e-5).epsilon
        }
        #expect(e(1, 0) == 0)
        #expect(e(1, 10) < e(1, 100) && e(2, 100) < e(1, 100))
        let z = try #require(PrivacyAccountant.noiseMultiplier(epsilon: 8, delta: 1e-5, rounds: 100))
        #expect(z == 6.38)
        #expect(e(z, 100) <= 8 && e(z - 0.01, 100) > 8)
    }
}
