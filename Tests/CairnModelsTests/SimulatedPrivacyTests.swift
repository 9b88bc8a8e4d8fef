import CairnWire
import Foundation
import Testing

@testable import CairnModels

/// The simulation's distributed discrete Gaussian: clipping, the noise it adds to the mean, and
/// its refusals.
@Suite struct SimulatedPrivacyTests {
    /// Three updates, one beyond the bound: the released mean is the mean of the clipped updates,
    /// to within the noise (z = 10^-4: σ of the mean is 2·10^-4/3) and the quantisation.
    @Test func theMeanIsOfClippedUpdates() throws {
        let privacy = FederatedSimulation.Privacy(clip: 2, noiseMultiplier: 1e-4)
        let deltas: [[Float]] = [[3, 4, 0, 0], [0.5, -0.5, 1, 0], [0, 0, 0, -1]]
        // [3, 4] has norm 5: clipped to [1.2, 1.6].
        let expected: [Float] = [(1.2 + 0.5) / 3, (1.6 - 0.5) / 3, 1.0 / 3, -1.0 / 3]
        let mean = try FederatedSimulation.noisyMean(of: deltas, privacy, 1, 7)
        for i in 0..<4 { #expect(abs(mean[i] - expected[i]) < 1e-3, "\(mean) vs \(expected)") }
        #expect(privacy.variance(participants: 3) == 58)  // ⌈(10^-4 · 2 · 65536)² / 3⌉ = ⌈57.27⌉
    }

    /// All-zero updates of 100,000 coordinates from 4 participants: the released mean is pure
    /// noise whose variance is the declared `4·v / (s·4)²` (within 3.29 standard errors), with
    /// mean 0.
    @Test func theNoiseHasTheDeclaredVariance() throws {
        let privacy = FederatedSimulation.Privacy(clip: 1, noiseMultiplier: 0.5)
        let d = 100_000
        let mean = try FederatedSimulation.noisyMean(
            of: [[Float]](repeating: [Float](repeating: 0, count: d), count: 4),
            privacy,
            3,
            11
        )
        let v = Double(privacy.variance(participants: 4))
        #expect(v == (0.5 * 65536 * 0.5 * 65536 / 4).rounded(.up))
        let declared = 4 * v / pow(65536 * 4, 2)
        let observed = mean.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(d)
        #expect(
            abs(observed - declared) <= 3.29 * declared * (2 / Double(d)).squareRoot(),
            "\(observed) vs \(declared)"
        )
        #expect(abs(mean.reduce(0.0) { $0 + Double($1) } / Double(d)) <= 3.29 * (declared / Double(d)).squareRoot())
    }

    /// 300 participants of clip 100 at scale 2^16 could wrap the 32-bit sum: refused, named.
    @Test func aSumThatCouldWrapIsRefused() throws {
        let privacy = FederatedSimulation.Privacy(clip: 100, noiseMultiplier: 1)
        #expect(throws: Never.self) { try privacy.checkRange(participants: 300) }
        let error = #expect(throws: DataError.self) { try privacy.checkRange(participants: 400) }
        #expect(
            error?.message
                == "400 participants' updates (clip 100.0) and noise could pass ±2^31 and wrap: use fewer participants, a smaller clip or less noise"
        )
    }

    @Test func unusableSettingsAreNamed() {
        #expect(
            FederatedSimulation.Privacy(clip: 0, noiseMultiplier: 1).problem
                == "the clipping bound must be above 0 and at most 100"
        )
        #expect(
            FederatedSimulation.Privacy(clip: 1, noiseMultiplier: 0).problem
                == "the noise multiplier must be above 0 and at most 1000"
        )
        #expect(
            FederatedSimulation.Privacy(clip: 100, noiseMultiplier: 1000).problem
                == "the noise (z · C · 2^16) is beyond what the sampler draws"
        )
        #expect(FederatedSimulation.Privacy(clip: 1, noiseMultiplier: 1).problem == nil)
    }
}
