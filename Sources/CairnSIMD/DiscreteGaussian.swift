public import CairnCrypto
import CairnWire

extension Domain {
    /// The seed of each 2^16-coordinate chunk of a discrete Gaussian noise vector.
    public static let discreteGaussian = Domain("cairn/discrete-gaussian/v1")
}

/// Exact sampling from the discrete Gaussian N_Z(0, σ²), P(x) ∝ exp(−x²/(2σ²)) over the integers,
/// after Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS
/// 2020), Algorithms 1–3: rejection from a discrete Laplace, every Bernoulli trial decided exactly
/// in integer arithmetic (no floating point), so the output has exactly that distribution given
/// uniform random bits.
///
/// σ² is an integer `variance` in 1…2^52 (in the quantised domain, where it is large). The
/// random bits are the ChaCha20 keystream of a seed (``ChaCha20Keystream``), read as
/// little-endian 64-bit words: ``NoiseBits``. A vector's coordinates are cut into chunks of 2^16;
/// chunk `j` draws from the keystream of `KDF(seed, cairn/discrete-gaussian/v1, u64 j)`, so the
/// output does not depend on how many threads make it (`Protocol/README.md`, "Discrete Gaussian
/// noise", has the exact procedure and test vectors).
public enum DiscreteGaussian {
    /// The largest variance accepted: 2^52 (σ = 2^26), so every quantity below fits 128 bits.
    public static let maximumVariance: UInt64 = 1 << 52
    /// Coordinates per chunk with its own seed.
    public static let chunk = 1 << 16

    /// One sample of N_Z(0, `variance`) (Algorithm 3): `t = ⌊σ⌋ + 1`, `Y` from the discrete
    /// Laplace of scale `t`, kept with probability `exp(−(|Y| − σ²/t)² / (2σ²))`.
    public static func sample(variance: UInt64, bits: inout NoiseBits) throws -> Int64 {
        guard variance >= 1, variance <= maximumVariance else {
            throw AveragingError(.invalidParameters, "a discrete Gaussian variance is 1 to 2^52, not \(variance)")
        }
        let t = UInt64(Double(variance).squareRoot().rounded(.down))
        let scale = (t * t <= variance ? t : t - 1) + 1  // ⌊σ⌋ + 1, exactly
        let denominator = 2 * UInt128(variance) * UInt128(scale) * UInt128(scale)
        while true {
            let y = try laplace(scale: scale, bits: &bits)
            // (|Y| − σ²/t)² / (2σ²) = (|Y|·t − σ²)² / (2·σ²·t²)
            let a = Int128(y.magnitude) * Int128(scale) - Int128(variance)
            let numerator = UInt128(a.magnitude) * UInt128(a.magnitude)
            if try bernoulliExp(numerator, denominator, bits: &bits) { return y }
        }
    }

    /// Fills `out` with independent samples of N_Z(0, `variance`) from `seed` (chunk `j` from its
    /// derived seed), using up to `parallelism`'s threads; the same values whatever it is.
    public static func fill(
        _ out: UnsafeMutableBufferPointer<Int64>,
        variance: UInt64,
        seed: SecretBytes,
        parallelism: Parallelism
    ) throws {
        guard variance >= 1, variance <= maximumVariance else {
            throw AveragingError(.invalidParameters, "a discrete Gaussian variance is 1 to 2^52, not \(variance)")
        }
        try parallelism.forEachPiece(of: out.count, granule: chunk) { (range: Range<Int>) throws(AveragingError) in
            do {
                for start in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                    var context = ByteWriter(capacity: 8)
                    context.u64(UInt64(start / chunk))
                    var bits = try NoiseBits(
                        seed: try BLAKE2b.deriveKey(from: seed, domain: .discreteGaussian, context: context.bytes).bytes
                    )
                    for i in start..<min(start + chunk, range.upperBound) {
                        out[i] = try sample(variance: variance, bits: &bits)
                    }
                }
            } catch let error as AveragingError {
                throw error
            } catch {
                throw AveragingError(.invalidParameters, "discrete Gaussian noise: \(error)")
            }
        }
    }

    /// The discrete Laplace with scale `t`, P(x) ∝ exp(−|x|/t) (Algorithm 2 with s = 1).
    static func laplace(scale t: UInt64, bits: inout NoiseBits) throws -> Int64 {
        while true {
            let u = bits.uniform(below: UInt128(t))
            guard try bernoulliExp(u, UInt128(t), bits: &bits) else { continue }
            var v: UInt64 = 0
            while try bernoulliExp(1, 1, bits: &bits) { v += 1 }
            let x = UInt64(u) + t * v
            let negative = bits.bit()
            if negative, x == 0 { continue }
            return negative ? -Int64(x) : Int64(x)
        }
    }

    /// A Bernoulli trial with success probability exp(−n/d), n ≥ 0, d ≥ 1 (Algorithm 1): for
    /// γ = n/d ≤ 1, `K` counts successes of Bernoulli(γ/K) for K = 1, 2, … and the trial succeeds
    /// when the first failure comes at an odd `K`; above 1, ⌊γ⌋ trials of exp(−1) then one of the
    /// remainder.
    static func bernoulliExp(_ n: UInt128, _ d: UInt128, bits: inout NoiseBits) throws -> Bool {
        var n = n
        while n > d {
            guard try bernoulliExp(1, 1, bits: &bits) else { return false }
            n -= d
        }
        var k: UInt128 = 1
        while true {
            let (dk, overflow) = d.multipliedReportingOverflow(by: k)
            guard !overflow, dk <= UInt128(1) << 126 else {
                throw AveragingError(.invalidParameters, "a Bernoulli trial ran past 126 bits")
            }
            guard bits.bernoulli(n, dk) else { break }
            k += 1
        }
        return k & 1 == 1
    }
}

/// The random bits of ``DiscreteGaussian``: a ChaCha20 keystream read as little-endian 64-bit
/// words from its start, each word's bits taken from the least significant up, word after word.
public struct NoiseBits {
    private let keystream: ChaCha20Keystream
    private var buffer = [UInt64](repeating: 0, count: 512)
    private var used = 512
    private var block: UInt64 = 0
    private var reservoir: UInt64 = 0
    private var available = 0

    /// The keystream of a 32-byte seed.
    public init(seed: SecretBytes) throws {
        keystream = try ChaCha20Keystream(seed: seed)
    }

    /// The next 64-bit word of the keystream (bits not yet taken from the current word are
    /// skipped only by ``bits(_:)``, never by this: the vectors read words from a fresh stream).
    public mutating func next() -> UInt64 {
        if used == buffer.count {
            buffer.withUnsafeMutableBytes { raw in
                // A keystream of 2^32 blocks is 256 GiB: no vector comes near it.
                try! keystream.fill(raw, fromBlock: block)
            }
            block += UInt64(buffer.count * 8 / ChaCha20Keystream.blockByteCount)
            used = 0
            #if _endian(big)
            for i in buffer.indices { buffer[i] = UInt64(littleEndian: buffer[i]) }
            #endif
        }
        defer { used += 1 }
        return buffer[used]
    }

    /// The next bit of the stream.
    public mutating func bit() -> Bool {
        if available == 0 {
            reservoir = next()
            available = 64
        }
        defer {
            reservoir >>= 1
            available -= 1
        }
        return reservoir & 1 == 1
    }

    /// The next `count` bits (at most 64), the first taken as the least significant.
    public mutating func bits(_ count: Int) -> UInt64 {
        precondition((0...64).contains(count))
        if count <= available {
            let value = count == 64 ? reservoir : reservoir & ((1 << UInt64(count)) - 1)
            reservoir = count == 64 ? 0 : reservoir >> UInt64(count)
            available -= count
            return value
        }
        let low = reservoir
        let taken = available
        reservoir = next()
        available = 64
        return low | (bits(count - taken) << UInt64(taken))
    }

    /// A uniform integer in `0..<bound` (bound ≥ 1): as many bits as `bound − 1` has (the low
    /// 64 first), drawn again until below it.
    public mutating func uniform(below bound: UInt128) -> UInt128 {
        precondition(bound >= 1)
        let width = UInt128.bitWidth - (bound - 1).leadingZeroBitCount
        while true {
            var x = UInt128(bits(min(width, 64)))
            if width > 64 { x |= UInt128(bits(width - 64)) << 64 }
            if x < bound { return x }
        }
    }

    /// A Bernoulli trial with success probability `n/d` (d ≥ 1, d ≤ 2^126), decided exactly with
    /// as few bits as it takes (two on average): the stream's bits, read as the binary fraction
    /// `U = 0.b₁b₂…`, are compared digit by digit with the binary expansion of `n/d`, and the
    /// trial succeeds when `U < n/d`.
    public mutating func bernoulli(_ n: UInt128, _ d: UInt128) -> Bool {
        if n >= d { return true }
        var r = n
        while r != 0 {
            r <<= 1
            let digit = r >= d
            if digit { r -= d }
            let b = bit()
            if b != digit { return digit }
        }
        return false
    }
}
