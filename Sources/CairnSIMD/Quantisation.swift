public import CairnCrypto
import CairnWire

/// The fixed-point encoding of a round: clip bound `c` and scale `s`.
///
/// A coordinate `x` becomes the integer `q` nearest below or above `s · clamp(x, −c, c)`, stored in
/// two's complement in a `UInt32`. Sums of `n` such integers are exact in Z_2^32 and read back as
/// signed `Int32` values without overflow while `n · (s · c + 1) < 2^31` (``isSafe(participants:)``).
public struct QuantisationParameters: Sendable, Hashable, CustomStringConvertible {
    /// The scale `s`: one unit of the fixed point is `1 / s`.
    public let scale: Float
    /// The clip bound `c`: coordinates are clamped to `[−c, c]` before scaling.
    public let clipBound: Float

    /// Checks that `scale` and `clipBound` are finite and positive and that one participant's
    /// values fit (`s · c + 1 < 2^31`); throws ``AveragingError/Code/invalidParameters`` otherwise.
    public init(scale: Float, clipBound: Float) throws {
        guard scale.isFinite, scale > 0, clipBound.isFinite, clipBound > 0 else {
            throw AveragingError(.invalidParameters, "the scale and clip bound must be finite and positive")
        }
        self.scale = scale
        self.clipBound = clipBound
        guard isSafe(participants: 1) else {
            throw AveragingError(.invalidParameters, "scale × clip bound + 1 must be below 2^31")
        }
    }

    public var description: String { "scale \(scale), clip bound \(clipBound)" }

    /// Whether `n · (s · c + 1) < 2^31` holds exactly (no rounding in the test), which guarantees
    /// that the sum of `n` quantised vectors never leaves the range of `Int32`.
    ///
    /// `s · c` is computed exactly in `Double` (a product of two `Float`s needs 48 bits), and the
    /// product with `n` is compared through its exact error term, so the answer is right even
    /// at the boundary.
    public func isSafe(participants n: Int) -> Bool {
        guard n >= 1, n < 1 << 31 else { return false }
        let sc = Double(scale) * Double(clipBound)
        // n · (sc + 1) < 2^31  ⇔  n · sc < 2^31 − n, and n · sc = p + e exactly.
        let bound = Double((1 << 31) - n)
        let p = Double(n) * sc
        let e = (-p).addingProduct(Double(n), sc)
        return p < bound || (p == bound && e < 0)
    }

    /// The largest `Float` scale that is safe for `n` participants with clip bound `c`, or nil when
    /// none is (`n` ≥ 2^31 − 1, or `c` not finite and positive).
    public static func largestSafeScale(participants n: Int, clipBound c: Float) -> Float? {
        guard c.isFinite, c > 0, n >= 1, n < (1 << 31) - 1 else { return nil }
        func safe(_ s: Float) -> Bool {
            guard s.isFinite, s > 0, let p = try? QuantisationParameters(scale: s, clipBound: c) else { return false }
            return p.isSafe(participants: n)
        }
        var s = Float((Double(1 << 31) / Double(n) - 1) / Double(c))
        if !s.isFinite { s = .greatestFiniteMagnitude }
        while s > 0, !safe(s) { s = s.nextDown }
        guard s > 0 else { return nil }
        while safe(s.nextUp) { s = s.nextUp }
        return s
    }

    /// How far, per coordinate, `dequantise(Σ q_k)` can be from `Σ x_k` for `n` vectors whose
    /// coordinates lie in `[−c, c]`: `n / s + n · (c + 1 / s) · 2^−23`.
    ///
    /// Each stochastic rounding moves a value by less than one unit (`n / s` in total); the rest
    /// covers rounding the result to `Float`.
    public func sumErrorBound(participants n: Int) -> Double {
        let count = Double(n)
        return count / Double(scale) + count * (Double(clipBound) + 1 / Double(scale)) * 0x1p-23
    }
}

/// Quantisation of float deltas to fixed point in Z_2^32 with unbiased stochastic rounding, and back.
public enum Quantisation {
    /// Quantises `x` into `q` with ``QuantisationParameters``, rounding stochastically.
    ///
    /// For coordinate `i`, with `v = Double(clamp(x[i], −c, c)) · Double(s)` (exact) and
    /// `r` = word `coordinate + i` of `rounding` (see ``MaskExpansion``): `q[i] = ⌊v⌋ + 1` when
    /// `r >> 1 < (v − ⌊v⌋) · 2^31`, else `⌊v⌋`, in two's complement. The probability of rounding up
    /// is the fractional part of `v` rounded up to a multiple of 2^−31, so `E[q[i]] = v` to within
    /// 2^−31 of a unit. Different vectors must use different keystreams.
    ///
    /// Throws ``AveragingError/Code/nonFinite`` (naming the first such coordinate) when `x` holds NaN
    /// or an infinity; `q` is then unspecified.
    public static func quantise(
        _ x: UnsafeBufferPointer<Float>,
        into q: UnsafeMutableBufferPointer<UInt32>,
        parameters: QuantisationParameters,
        rounding: ChaCha20Keystream,
        startingAt coordinate: Int = 0,
        parallelism: Parallelism = .allCores
    ) throws {
        try checkLengths(x.count, q.count, "a vector and its quantisation differ in length")
        try MaskExpansion.checkRange(coordinate, x.count)
        guard let source = x.baseAddress, let target = q.baseAddress else { return }
        let scale = Double(parameters.scale)
        let bound = parameters.clipBound
        try parallelism.forEachPiece(of: x.count) { piece in
            var finite = SIMD16<Float>()
            try MaskExpansion.forEachKeystreamRun(rounding, coordinate, piece) { words, i, n in
                zipMap16(source + i, words, target + i, n) { v, r in
                    finite += v - v
                    return quantise16(v, r, scale, bound)
                }
            }
            // `v - v` is 0 for a finite `v` and NaN otherwise. Pieces are rethrown in order, so
            // the coordinate named is the first bad one.
            if finite != SIMD16<Float>() {
                let index = x[piece].firstIndex { !$0.isFinite } ?? piece.lowerBound
                throw AveragingError(.nonFinite, "coordinate \(index) is NaN or infinite; refusing to quantise")
            }
        }
    }

    /// Reads a fixed-point vector (typically a sum of quantised vectors) back as floats:
    /// `x[i] = Float(Double(Int32(bitPattern: q[i])) / (Double(s) · divisor))`.
    ///
    /// With `divisor` = the total weight (for example the participants' summed sample counts),
    /// this is the weighted average of the dequantised sum.
    public static func dequantise(
        _ q: UnsafeBufferPointer<UInt32>,
        into x: UnsafeMutableBufferPointer<Float>,
        parameters: QuantisationParameters,
        dividingBy divisor: Double = 1,
        parallelism: Parallelism = .allCores
    ) throws {
        try checkLengths(q.count, x.count, "a fixed-point vector and its dequantisation differ in length")
        let denominator = Double(parameters.scale) * divisor
        guard divisor.isFinite, divisor > 0, denominator.isFinite, denominator > 0 else {
            throw AveragingError(.invalidParameters, "the divisor must be finite and positive")
        }
        guard let source = q.baseAddress, let target = x.baseAddress else { return }
        parallelism.forEachPiece(of: q.count) { piece in
            let from = source + piece.lowerBound
            let to = target + piece.lowerBound
            map16(from, to, piece.count) { dequantise16($0, denominator) }
        }
    }

    @inline(__always)
    static func quantise16(
        _ x: SIMD16<Float>,
        _ words: SIMD16<UInt32>,
        _ scale: Double,
        _ bound: Float
    ) -> SIMD16<UInt32> {
        let c = Norms.clamp16(x, bound)
        let draws = SIMD16<Int32>(truncatingIfNeeded: words &>> 1)
        return SIMD16(
            lowHalf: round8(SIMD8<Double>(c.lowHalf) * scale, draws.lowHalf),
            highHalf: round8(SIMD8<Double>(c.highHalf) * scale, draws.highHalf)
        )
    }

    /// Stochastic rounding of `v` (|v| < 2^31) with 31-bit draws, as two's complement bits.
    @inline(__always)
    static func round8(_ v: SIMD8<Double>, _ draws: SIMD8<Int32>) -> SIMD8<UInt32> {
        // Adding and removing 1.5 · 2^52 rounds to the nearest integer (|v| < 2^51); one step
        // down where that went up gives ⌊v⌋ without a per-lane library call.
        let magic = SIMD8<Double>(repeating: 0x1.8p52)
        let nearest = (v + magic) - magic
        let floor = nearest.replacing(with: nearest - 1, where: nearest .> v)
        let threshold = (v - floor) * 0x1p31
        let q = floor.replacing(with: floor + 1, where: SIMD8<Double>(draws) .< threshold)
        // The low 32 bits of q + 1.5 · 2^52 are q in two's complement.
        return SIMD8<UInt32>(truncatingIfNeeded: unsafeBitCast(q + magic, to: SIMD8<UInt64>.self))
    }

    @inline(__always)
    static func dequantise16(_ q: SIMD16<UInt32>, _ denominator: Double) -> SIMD16<Float> {
        let signed = SIMD16<Int32>(truncatingIfNeeded: q)
        return SIMD16(
            lowHalf: SIMD8<Float>(SIMD8<Double>(signed.lowHalf) / denominator),
            highHalf: SIMD8<Float>(SIMD8<Double>(signed.highHalf) / denominator)
        )
    }
}
