import CairnWire

/// L2 norms and clipping of float vectors (model deltas), in place.
public enum Norms {
    /// The block size of the norm's fixed summation order: 2^16 coordinates.
    public static let blockCoordinates = 1 << 16

    /// The Euclidean norm of `x`, accumulated in `Double`.
    ///
    /// The summation order is fixed, so the result is the same bits on every machine and for
    /// every ``Parallelism``: within each block of ``blockCoordinates`` coordinates, coordinate `j`
    /// adds `Double(x[j]) * Double(x[j])` to lane `j mod 16`; the block's sum is lane 0 + lane 1
    /// + … + lane 15, left to right; the blocks' sums are added in order from 0.0, and the
    /// square root of that total is returned. NaN or an infinity in `x` gives a non-finite result.
    public static func l2Norm(_ x: UnsafeBufferPointer<Float>, parallelism: Parallelism = .allCores) -> Double {
        guard let base = x.baseAddress else { return 0 }
        let blocks = (x.count + blockCoordinates - 1) / blockCoordinates
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: blocks) { partials in
            parallelism.forEachPiece(of: x.count, granule: blockCoordinates) { piece in
                var start = piece.lowerBound
                while start < piece.upperBound {
                    let end = min(start + blockCoordinates, piece.upperBound)
                    partials[start / blockCoordinates] = blockSumOfSquares(base, start, end)
                    start = end
                }
            }
            var total = 0.0
            for p in partials { total += p }
            return total.squareRoot()
        }
    }

    @inline(__always)
    private static func blockSumOfSquares(_ p: UnsafePointer<Float>, _ start: Int, _ end: Int) -> Double {
        var acc = SIMD16<Double>()
        @inline(__always) func add(_ v: SIMD16<Float>) {
            let d = SIMD16<Double>(lowHalf: SIMD8<Double>(v.lowHalf), highHalf: SIMD8<Double>(v.highHalf))
            acc += d * d
        }
        var i = start
        while i + lanes <= end {
            add(load16(p, i))
            i += lanes
        }
        if i < end { add(loadPartial16(p, i, end - i)) }
        var sum = 0.0
        for k in 0..<lanes { sum += acc[k] }
        return sum
    }

    /// Clamps every coordinate of `x` to `[-bound, bound]`. NaN stays NaN (quantisation refuses it).
    public static func clip(
        _ x: UnsafeMutableBufferPointer<Float>,
        toMagnitude bound: Float,
        parallelism: Parallelism = .allCores
    ) throws {
        guard bound.isFinite, bound > 0 else {
            throw AveragingError(.invalidParameters, "a clipping bound must be finite and positive")
        }
        guard let base = x.baseAddress else { return }
        parallelism.forEachPiece(of: x.count) { piece in
            let p = base + piece.lowerBound
            map16(p, p, piece.count) { clamp16($0, bound) }
        }
    }

    @inline(__always)
    static func clamp16(_ v: SIMD16<Float>, _ bound: Float) -> SIMD16<Float> {
        v.replacing(with: bound, where: v .> bound).replacing(with: -bound, where: v .< -bound)
    }

    /// Scales `x` so that its L2 norm is at most `bound`, and returns the norm it had before.
    ///
    /// When ``l2Norm(_:parallelism:)`` exceeds `bound`, every coordinate is multiplied by
    /// `Float(Double(bound) / norm)`; the clipped norm then equals `bound` to within a few units in
    /// the last place of a `Float`. Throws ``AveragingError/Code/nonFinite`` (leaving `x` as it
    /// was) when `x` holds NaN or an infinity.
    @discardableResult
    public static func clipL2(
        _ x: UnsafeMutableBufferPointer<Float>,
        toNorm bound: Float,
        parallelism: Parallelism = .allCores
    ) throws -> Double {
        guard bound.isFinite, bound > 0 else {
            throw AveragingError(.invalidParameters, "an L2 clipping bound must be finite and positive")
        }
        let norm = l2Norm(UnsafeBufferPointer(x), parallelism: parallelism)
        guard norm.isFinite else {
            throw AveragingError(.nonFinite, "the vector holds NaN or an infinity; its L2 norm is undefined")
        }
        guard norm > Double(bound), let base = x.baseAddress else { return norm }
        let factor = Float(Double(bound) / norm)
        parallelism.forEachPiece(of: x.count) { piece in
            let p = base + piece.lowerBound
            map16(p, p, piece.count) { $0 * factor }
        }
        return norm
    }
}
