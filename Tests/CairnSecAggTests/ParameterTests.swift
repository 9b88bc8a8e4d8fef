import CairnCrypto
import CairnSIMD
import CairnWire
import Foundation
import Testing

@testable import CairnSecAgg

/// The parameter rule and the configuration checks.
@Suite struct ParameterTests {
    /// The rule's choices for typical groups (`Protocol/README.md` lists the same table).
    @Test(arguments: [
        (100, 0.1, 0.05, 28, 15, 53), (200, 0.1, 0.05, 38, 20, 106), (1000, 0.05, 0.05, 36, 19, 526),
        (1000, 0.1, 0.1, 58, 30, 551), (10000, 0.05, 0.01, 42, 22, 5051), (20, 0.1, 0.0, 6, 4, 11),
    ])
    func choices(_ n: Int, _ dropout: Double, _ corrupt: Double, _ k: Int, _ t: Int, _ signatures: Int) throws {
        let chosen = try RoundParameters.choose(participants: n, dropoutFraction: dropout, corruptFraction: corrupt)
        #expect(chosen == RoundParameters(neighbours: k, threshold: t, signatureThreshold: signatures))
        // The choice is accepted by the configuration checks.
        _ = try config(identities(n), chosen, dimension: 1)
    }

    /// The hypergeometric tail bound against a direct sum of exact probabilities.
    @Test func tailBoundMatchesDirectSum() {
        // Population 19, 5 marked, 8 drawn: P[X = x] = C(5,x)·C(14,8−x)/C(19,8).
        let total = 75_582.0
        let counts: [Double] = [3003, 17160, 30030, 20020, 5005, 364]
        let p = counts.map { $0 / total }
        #expect(abs(p.reduce(0, +) - 1) < 1e-12)
        for limit in [0.5, 0.1, 0.01, 1e-3, 1e-5] {
            let expected = (0...5).first { b in p[(b + 1)...].reduce(0, +) <= limit } ?? 5
            #expect(
                RoundParameters.tailBound(population: 19, marked: 5, draws: 8, logLimit: Foundation.log(limit))
                    == expected
            )
        }
    }

    @Test func unsafeChoicesRefused() {
        expectRefusal(
            .unsafeConfiguration,
            "with 50 of 100 dropping out and 10 corrupt, only 50 could sign the survivor set but 56 signatures are needed "
                + "(tolerate fewer dropouts or corrupt participants)"
        ) { _ = try RoundParameters.choose(participants: 100, dropoutFraction: 0.5, corruptFraction: 0.1) }
        expectRefusal(
            .unsafeConfiguration,
            "no neighbour count is safe for 5 participants with 2 dropping out and 0 corrupt: even full SecAgg needs t + dropouts ≤ n − 1"
        ) { _ = try RoundParameters.choose(participants: 5, dropoutFraction: 0.4, corruptFraction: 0) }
        expectRefusal(.unsafeConfiguration, "a round needs 3…10000 participants, not 2") {
            _ = try RoundParameters.choose(participants: 2, dropoutFraction: 0, corruptFraction: 0)
        }
    }

    @Test func unsafeConfigurationsRefused() throws {
        let keys = identities(10)
        expectRefusal(
            .unsafeConfiguration,
            "threshold t = 3 with k = 6: t must be 4…6; at k / 2 or below, a minority of a participant's neighbours and the broker could unmask it"
        ) { _ = try config(keys, RoundParameters(neighbours: 6, threshold: 3, signatureThreshold: 6)) }
        expectRefusal(
            .unsafeConfiguration,
            "T = 5 survivor-set signatures for 10 participants: T must be 6…10; at n / 2 or below, a broker could get two different survivor sets signed"
        ) { _ = try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 5)) }
        expectRefusal(.unsafeConfiguration, "k = 5 neighbours: k must be even and 2…9, or exactly n − 1 = 9") {
            _ = try config(keys, RoundParameters(neighbours: 5, threshold: 4, signatureThreshold: 6))
        }
        expectRefusal(.unsafeConfiguration, "the sample-count sum could overflow: 10 × 500000000 must stay below 2^32")
        {
            _ = try config(
                keys,
                RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6),
                maximumSampleCount: 500_000_000
            )
        }
        let wide = try QuantisationParameters(scale: 1_048_576, clipBound: 256)
        expectRefusal(
            .unsafeConfiguration,
            "the fixed-point sum could overflow: 10 × (scale × clip bound + 1) must stay below 2^31 (\(wide))"
        ) {
            _ = try RoundConfig(
                federation: "f",
                round: 1,
                baseModelDigest: [UInt8](repeating: 0, count: 32),
                dimension: 4,
                quantisation: wide,
                maximumSampleCount: 10,
                roster: keys.map(\.publicKey),
                parameters: RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6)
            )
        }
        expectRefusal(.unsafeConfiguration, "the roster names one identity key twice") {
            _ = try config(keys + [keys[0]], RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6))
        }
        // The configuration encoding round-trips, and its digest changes with every field.
        let base = try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6))
        #expect(try RoundConfig(decoding: base.encoded) == base)
        let others = [
            try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6), round: 8),
            try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6), federation: "other"),
            try config(keys, RoundParameters(neighbours: 6, threshold: 5, signatureThreshold: 6)),
            try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 6), dimension: 38),
        ]
        #expect(Set(others.map(\.digest) + [base.digest]).count == 5)
    }

    /// The relabelled ring is k-regular, symmetric, and depends on the session id.
    @Test func ringIsRegularAndSymmetric() {
        let members = (0..<50).map { UInt16($0 * 3) }
        let a = Session.ring(members: members, session: [UInt8](repeating: 1, count: 32), k: 8)
        let b = Session.ring(members: members, session: [UInt8](repeating: 2, count: 32), k: 8)
        #expect(a != b)
        for (u, near) in a {
            #expect(near.count == 8)
            #expect(!near.contains(u))
            for v in near { #expect(a[v]!.contains(u)) }
        }
        #expect(Session.ring(members: members, session: [], k: 49)[3]!.count == 49)
    }
}
