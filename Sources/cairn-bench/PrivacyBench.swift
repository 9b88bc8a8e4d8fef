import CairnCrypto
import CairnSIMD

/// `cairn-bench privacy`: discrete Gaussian noise for `D` = 10^6 coordinates
/// (``DiscreteGaussian/fill(_:variance:seed:parallelism:)``, σ = 2^20 as a quantised update's
/// noise is) against the same run's ChaCha20 mask expansion of the same `D` (one pairwise mask
/// added in place, ``MaskExpansion``), both on the same threads: the ratio is noise time over
/// mask time, per participant per round (issue #22 targets at most 4). Noise must be exact, so it
/// draws many random words per coordinate (rejection from a discrete Laplace, Bernoulli trials in
/// 128-bit integers); the mask reads one.
struct PrivacyBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "privacy")
        let d = quick ? 100_000 : 1_000_000
        let variance: UInt64 = 1 << 40
        let seed = SecretBytes.random(count: 32)
        let keystream = try ChaCha20Keystream(seed: seed)
        var words = [UInt32](repeating: 0, count: d)
        var noise = [Int64](repeating: 0, count: d)
        for threads in [Parallelism.serial, Parallelism.allCores] {
            let params = [("D", "\(d)"), ("threads", "\(threads.threads)")]
            let best = try words.withUnsafeMutableBufferPointer { w in
                try noise.withUnsafeMutableBufferPointer { n in
                    try bestOfInterleaved(
                        repetitions: quick ? 1 : 3,
                        subject: { try DiscreteGaussian.fill(n, variance: variance, seed: seed, parallelism: threads) },
                        reference: { try MaskExpansion.add(keystream, to: w, parallelism: threads) }
                    )
                }
            }
            // Time per round as the figure: lower is better, so the ratio is noise over mask.
            report.cases.append(
                BenchCase(
                    name: "noise-vs-mask",
                    params: params,
                    value: best.subject * 1000,
                    unit: "ms",
                    floor: best.reference * 1000
                )
            )
            report.cases.append(
                BenchCase(
                    name: "noise-per-coordinate",
                    params: params,
                    value: best.subject / Double(d) * 1e9,
                    unit: "ns",
                    floor: nil
                )
            )
        }
        return report
    }
}
