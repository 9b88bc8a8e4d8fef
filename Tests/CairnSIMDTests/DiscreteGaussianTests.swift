import CairnCrypto
import CairnWire
import Foundation
import Testing

@testable import CairnSIMD

/// The discrete Gaussian sampler: its variance and distribution over 10^6 coordinates, the sum
/// of several participants' noise, the chunked vector fill, refusals, and the test vectors of
/// `Protocol/noise-vectors.json` (`CAIRN_UPDATE_VECTORS=1 swift test --filter
/// DiscreteGaussianTests` rewrites it). Every seed is fixed, so each figure is the same on every
/// run; the bounds are what a correct sampler meets with probability 0.999.
@Suite struct DiscreteGaussianTests {
    static let path = String(#filePath.split(separator: "/Tests/").first!) + "/Protocol/noise-vectors.json"

    static func seed(_ tag: UInt8) -> SecretBytes { SecretBytes(copying: (0..<32).map { UInt8($0) &+ tag }) }

    /// P(x) of N_Z(0, v) for |x| ≤ a range far past any sample, normalised by summation.
    static func pmf(variance v: Double) -> [Int: Double] {
        let reach = Int(40 * v.squareRoot()) + 40
        var p: [Int: Double] = [:]
        for x in -reach...reach { p[x] = exp(-Double(x * x) / (2 * v)) }
        let total = p.values.reduce(0, +)
        return p.mapValues { $0 / total }
    }

    /// Checks `samples` against N_Z(0, `variance`): the sample variance within 3.29 standard errors
    /// of the exact variance (99.9 %, two-sided), and Pearson's χ² over bins with at least 20
    /// expected below the 99.9 % quantile (Wilson–Hilferty) of its degrees of freedom.
    static func check(_ samples: [Int64], variance: Double) -> (variance: Double, chi2: Double, limit: Double) {
        let p = pmf(variance: variance)
        let exact = p.reduce(0.0) { $0 + Double($1.key * $1.key) * $1.value }
        let fourth = p.reduce(0.0) { $0 + pow(Double($1.key), 4) * $1.value }
        let n = Double(samples.count)
        let mean = samples.reduce(0.0) { $0 + Double($1) } / n
        let observed = samples.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / (n - 1)
        let standardError = ((fourth - exact * exact) / n).squareRoot()
        #expect(abs(observed - exact) <= 3.29 * standardError, "variance \(observed), exact \(exact)")
        #expect(abs(mean) <= 3.29 * (exact / n).squareRoot(), "mean \(mean)")
        // Bins: single values where at least 20 are expected, the two tails merged.
        var counts: [Int: Double] = [:]
        for s in samples { counts[Int(s), default: 0] += 1 }
        let keys = p.keys.filter { p[$0]! * n >= 20 }.sorted()
        var chi2 = 0.0
        for x in keys { chi2 += pow(counts[x, default: 0] - n * p[x]!, 2) / (n * p[x]!) }
        let (lo, hi) = (keys.first!, keys.last!)
        for tail in [p.filter { $0.key < lo }, p.filter { $0.key > hi }] {
            let expected = n * tail.values.reduce(0, +)
            let seen = tail.keys.reduce(0.0) { $0 + counts[$1, default: 0] }
            chi2 += pow(seen - expected, 2) / expected
        }
        let k = Double(keys.count + 2 - 1)
        let limit = k * pow(1 - 2 / (9 * k) + 3.09 * (2 / (9 * k)).squareRoot(), 3)
        #expect(chi2 <= limit, "χ² \(chi2) over \(k) degrees of freedom, 99.9 % quantile \(limit)")
        return (observed, chi2, limit)
    }

    /// 10^6 coordinates of N_Z(0, 50) from one seed (16 chunks, both threads).
    @Test func oneParticipantsNoiseHasTheDeclaredDistribution() throws {
        var noise = [Int64](repeating: 0, count: 1_000_000)
        try noise.withUnsafeMutableBufferPointer {
            try DiscreteGaussian.fill($0, variance: 50, seed: Self.seed(1), parallelism: .allCores)
        }
        _ = Self.check(noise, variance: 50)
    }

    /// The sum of three participants' noise of variance 50 each, added to all-zero inputs modulo
    /// 2^32 as a masked round adds them, over 10^6 coordinates: N_Z(0, 150) (τ of the
    /// accountant, 10·Σ exp(−2π²·50·k/(k+1)), is below 10^-200: the sum is as good as one).
    @Test func threeParticipantsNoiseSumsToTheDeclaredVariance() throws {
        var sum = [UInt32](repeating: 0, count: 1_000_000)
        for participant in 0..<3 {
            var noise = [Int64](repeating: 0, count: sum.count)
            try noise.withUnsafeMutableBufferPointer {
                try DiscreteGaussian.fill(
                    $0,
                    variance: 50,
                    seed: Self.seed(UInt8(10 + participant)),
                    parallelism: .allCores
                )
            }
            for i in sum.indices { sum[i] &+= UInt32(truncatingIfNeeded: noise[i]) }
        }
        _ = Self.check(sum.map { Int64(Int32(bitPattern: $0)) }, variance: 150)
    }

    /// σ = 10^6, the size a quantised update's noise has: 10^5 samples, their variance.
    @Test func aLargeVarianceIsSampledExactly() throws {
        var noise = [Int64](repeating: 0, count: 100_000)
        try noise.withUnsafeMutableBufferPointer {
            try DiscreteGaussian.fill($0, variance: 1_000_000_000_000, seed: Self.seed(3), parallelism: .allCores)
        }
        let n = Double(noise.count)
        let observed = noise.reduce(0.0) { $0 + Double($1) * Double($1) } / n
        #expect(abs(observed - 1e12) <= 3.29 * 1e12 * (2 / n).squareRoot(), "variance \(observed)")
    }

    /// The same values whatever the parallelism, and a chunk's values from its own seed.
    @Test func theFillIsChunkedBySeed() throws {
        var serial = [Int64](repeating: 0, count: DiscreteGaussian.chunk * 2 + 10)
        var parallel = serial
        try serial.withUnsafeMutableBufferPointer {
            try DiscreteGaussian.fill($0, variance: 7, seed: Self.seed(4), parallelism: .serial)
        }
        try parallel.withUnsafeMutableBufferPointer {
            try DiscreteGaussian.fill($0, variance: 7, seed: Self.seed(4), parallelism: Parallelism(threads: 3))
        }
        #expect(serial == parallel)
        var context = ByteWriter()
        context.u64(2)
        var bits = try NoiseBits(
            seed: try BLAKE2b.deriveKey(from: Self.seed(4), domain: .discreteGaussian, context: context.bytes).bytes
        )
        let third = try (0..<10).map { _ in try DiscreteGaussian.sample(variance: 7, bits: &bits) }
        #expect(Array(serial[(2 * DiscreteGaussian.chunk)...]) == third)
    }

    /// Bits come from each word's least significant end, word after word; a Bernoulli trial of
    /// n/d succeeds at that rate (10^6 trials of 1/3 and of 5/7, within 3.29 standard errors).
    @Test func bitsAndBernoulliTrials() throws {
        var words = try NoiseBits(seed: Self.seed(6))
        let (w0, w1) = (words.next(), words.next())
        var bits = try NoiseBits(seed: Self.seed(6))
        #expect(bits.bits(4) == w0 & 0xF)
        #expect(bits.bit() == ((w0 >> 4) & 1 == 1))
        #expect(bits.bits(64) == (w0 >> 5) | (w1 << 59))
        #expect(bits.bits(59) == w1 >> 5)
        var trials = try NoiseBits(seed: Self.seed(7))
        for (n, d) in [(1, 3), (5, 7)] as [(UInt128, UInt128)] {
            let count = 1_000_000
            var successes = 0
            for _ in 0..<count where trials.bernoulli(n, d) { successes += 1 }
            let p = Double(n) / Double(d)
            let spread = 3.29 * (p * (1 - p) / Double(count)).squareRoot()
            #expect(abs(Double(successes) / Double(count) - p) <= spread, "\(successes) of \(count) for \(n)/\(d)")
        }
        #expect(trials.bernoulli(3, 3) && !trials.bernoulli(0, 5))
    }

    @Test func varianceOutOfRangeIsRefused() throws {
        var bits = try NoiseBits(seed: Self.seed(5))
        for bad: UInt64 in [0, DiscreteGaussian.maximumVariance + 1] {
            let error = #expect(throws: AveragingError.self) { try DiscreteGaussian.sample(variance: bad, bits: &bits) }
            #expect(error?.message == "a discrete Gaussian variance is 1 to 2^52, not \(bad)")
        }
    }

    /// The vectors another implementation checks itself against.
    struct Vectors: Codable, Equatable {
        struct Case: Codable, Equatable {
            var variance: UInt64
            var samples: [Int64]
        }
        var description: String
        var seed: String
        var firstWords: [String]
        var cases: [Case]
        var fillVariance: UInt64
        var fillCount: Int
        var fillChunkStarts: [[Int64]]
    }

    static func vectors() throws -> Vectors {
        let seed = Self.seed(0)
        var bits = try NoiseBits(seed: seed)
        let words = (0..<4).map { _ in String(bits.next(), radix: 16) }
        let cases = try [1, 2, 3, 50, 1000, 1_000_000_000_000].map { (v: UInt64) in
            var bits = try NoiseBits(seed: seed)
            return Vectors.Case(
                variance: v,
                samples: try (0..<16).map { _ in try DiscreteGaussian.sample(variance: v, bits: &bits) }
            )
        }
        var fill = [Int64](repeating: 0, count: DiscreteGaussian.chunk + 8)
        try fill.withUnsafeMutableBufferPointer {
            try DiscreteGaussian.fill($0, variance: 1000, seed: seed, parallelism: .serial)
        }
        return Vectors(
            description:
                "Discrete Gaussian noise (Protocol/README.md, \"Discrete Gaussian noise\"): seed in hex; firstWords: the first 64-bit words of NoiseBits from it, in hex; each case: the first samples of N_Z(0, variance) from NoiseBits(seed); fill: the first 8 values of chunks 0 and 1 of a vector of fillCount values from the seed",
            seed: Hex.encode(seed.withUnsafeBytes { Array($0) }),
            firstWords: words,
            cases: cases,
            fillVariance: 1000,
            fillCount: fill.count,
            fillChunkStarts: [Array(fill[0..<8]), Array(fill[DiscreteGaussian.chunk...])]
        )
    }

    @Test func testVectors() throws {
        let computed = try Self.vectors()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if ProcessInfo.processInfo.environment["CAIRN_UPDATE_VECTORS"] == "1" {
            try (try encoder.encode(computed) + Data("\n".utf8)).write(to: URL(fileURLWithPath: Self.path))
        }
        let stored = try JSONDecoder().decode(Vectors.self, from: Data(contentsOf: URL(fileURLWithPath: Self.path)))
        #expect(stored == computed)
        #expect(computed.cases.allSatisfy { $0.samples.count == 16 })
    }
}
