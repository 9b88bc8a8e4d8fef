import CairnExchange
import CairnModels
import Foundation
import Testing

/// Privacy in practice (#22): the participant-level membership attack of ``MembershipAttack``
/// over 200 evaluation trials of each world. Without DP it tells IN from OUT far beyond what
/// ε = 1 allows; with the distributed discrete Gaussian at ε = 1 (δ = 10⁻⁵ over its 5 rounds,
/// the noise multiplier from the accountant) its advantage is within `tanh(1/2) + δ`, the
/// guarantee's bound, even at the top of its 99.9 % confidence interval. Seeds are fixed, so the
/// figures are the same on every run.
@Suite struct MembershipAttackTests {
    @Test func theAttackIsBoundedByTheGuarantee() throws {
        let (_, _, architecture) = try MembershipAttack.setup()
        let d = architecture.parameterCount
        let z = try #require(
            PrivacyAccountant.noiseMultiplier(epsilon: 1, delta: 1e-5, rounds: 5) { z in
                .simulated(MembershipAttack.privacy(noiseMultiplier: z), participants: 3, dimension: d)
            }
        )
        let bound = tanh(0.5) + 1e-5
        let open = try MembershipAttack.run(trials: 200, rounds: 5, privacy: nil, seed: 1)
        let guarded = try MembershipAttack.run(
            trials: 200,
            rounds: 5,
            privacy: MembershipAttack.privacy(noiseMultiplier: z),
            seed: 1
        )
        #expect(guarded.advantage + 3.29 * guarded.standardError <= bound, "\(guarded), bound \(bound)")
        #expect(open.advantage - 3.29 * open.standardError > bound, "\(open), bound \(bound)")
    }
}
