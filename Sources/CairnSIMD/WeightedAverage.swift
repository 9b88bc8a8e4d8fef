import CairnWire

/// Weighted averages of float vectors: federated averaging (FedAvg) of plaintext updates.
///
/// Arithmetic order, fixed so results are reproducible bit for bit: for each coordinate the sum
/// starts at `0`, then `sum = sum + w[k] * x[k][i]` for `k = 0, 1, …` in `Float` (no fused
/// multiply-add), and the average is `sum / Float(W)` where `W` is the sum of the weights in
/// `Double`.
public enum WeightedAverage {
    /// `out[i] = Σ weights[k] · inputs[k][i] / Σ weights[k]`, in one pass over the inputs.
    ///
    /// Tiles of ``ModularSum/tileCoordinates`` coordinates stay in cache while the inputs are
    /// folded in eight per pass (in the order above), so `out` is written once. Weights must be finite and non-negative with a
    /// positive total.
    public static func average(
        _ inputs: [UnsafeBufferPointer<Float>],
        weights: [Float],
        into out: UnsafeMutableBufferPointer<Float>,
        parallelism: Parallelism = .allCores
    ) throws {
        guard inputs.count == weights.count else {
            throw AveragingError(.lengthMismatch, "\(inputs.count) inputs but \(weights.count) weights")
        }
        for input in inputs { try checkLengths(input.count, out.count, "an input and the average differ in length") }
        let divisor = try totalWeight(weights)
        guard let o = out.baseAddress else { return }
        ModularSum.forEachTile(of: out.count, parallelism) { tile in
            ModularSum.forEachGroup(of: inputs.count) { k, width in
                let j = { (j: Int) in k + min(j, width - 1) }
                let p = { (i: Int) in inputs[j(i)].baseAddress! + tile.lowerBound }
                accumulateGroup(
                    (p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7)),
                    (
                        weights[j(0)], weights[j(1)], weights[j(2)], weights[j(3)], weights[j(4)], weights[j(5)],
                        weights[j(6)], weights[j(7)]
                    ),
                    width,
                    o + tile.lowerBound,
                    tile.count,
                    first: k == 0,
                    divisor: k + width == inputs.count ? divisor : nil
                )
            }
        }
    }

    /// `sum[i] = sum[i] + weight · x[i]` for every `i`: one step of a streaming weighted sum.
    public static func accumulate(
        _ x: UnsafeBufferPointer<Float>,
        weight: Float,
        into sum: UnsafeMutableBufferPointer<Float>,
        parallelism: Parallelism = .allCores
    ) throws {
        try checkLengths(x.count, sum.count, "a vector added to a weighted sum has another length")
        guard let s = sum.baseAddress, let v = x.baseAddress else { return }
        parallelism.forEachPiece(of: sum.count) { piece in
            accumulate(v + piece.lowerBound, weight, s + piece.lowerBound, piece.count)
        }
    }

    /// `x[i] = x[i] / divisor` for every `i`; the divisor must be finite and positive.
    public static func divide(
        _ x: UnsafeMutableBufferPointer<Float>,
        by divisor: Float,
        parallelism: Parallelism = .allCores
    ) throws {
        guard divisor.isFinite, divisor > 0 else {
            throw AveragingError(.invalidParameters, "a divisor must be finite and positive")
        }
        guard let base = x.baseAddress else { return }
        parallelism.forEachPiece(of: x.count) { piece in divide(base + piece.lowerBound, piece.count, divisor) }
    }

    /// `Float(Σ weights)` (summed in `Double`), after checking every weight is finite and
    /// non-negative and the total positive.
    static func totalWeight(_ weights: [Float]) throws -> Float {
        var total = 0.0
        for w in weights {
            guard w.isFinite, w >= 0 else {
                throw AveragingError(.invalidParameters, "weights must be finite and non-negative")
            }
            total += Double(w)
        }
        guard total > 0, Float(total).isFinite else {
            throw AveragingError(.invalidParameters, "the weights must have a positive, finite total")
        }
        return Float(total)
    }

    /// `s[i] = ((s[i] + w.0 · x.0[i]) + w.1 · x.1[i]) + …` over the first `width` (1…8) inputs,
    /// in the order (and so to the bits) of that many calls of `accumulate`; `s` starts from 0
    /// when `first`, and is divided by `divisor` at the end when one is given.
    @inline(__always)
    static func accumulateGroup(
        _ x: Eight<UnsafePointer<Float>>,
        _ w: Eight<Float>,
        _ width: Int,
        _ s: UnsafeMutablePointer<Float>,
        _ count: Int,
        first: Bool,
        divisor: Float?
    ) {
        // Full loads only: a body with partial loads in it is too big to inline and runs at
        // less than half the speed (measured). The tail goes through zero-padded copies.
        @inline(__always) func step(_ x: Eight<UnsafePointer<Float>>, _ s: UnsafeMutablePointer<Float>, _ i: Int) {
            var v = first ? SIMD16<Float>() : load16(s, i)
            v += w.0 * load16(x.0, i)
            if width > 1 { v += w.1 * load16(x.1, i) }
            if width > 2 { v += w.2 * load16(x.2, i) }
            if width > 3 { v += w.3 * load16(x.3, i) }
            if width > 4 { v += w.4 * load16(x.4, i) }
            if width > 5 { v += w.5 * load16(x.5, i) }
            if width > 6 { v += w.6 * load16(x.6, i) }
            if width > 7 { v += w.7 * load16(x.7, i) }
            if let divisor { v /= divisor }
            store16(v, s, i)
        }
        var i = 0
        while i + lanes <= count {
            step(x, s, i)
            i += lanes
        }
        if i < count { withPaddedTail(x, s, from: i, count: count) { step($0, $1, 0) } }
    }

    @inline(__always)
    static func accumulate(_ x: UnsafePointer<Float>, _ w: Float, _ s: UnsafeMutablePointer<Float>, _ count: Int) {
        zipMap16(s, x, s, count) { $0 + w * $1 }
    }

    @inline(__always)
    static func divide(_ s: UnsafeMutablePointer<Float>, _ count: Int, _ divisor: Float) {
        map16(s, s, count) { $0 / divisor }
    }
}

/// A running weighted sum of float vectors (streaming FedAvg): add each participant's update with
/// its weight as it arrives; memory O(dimension). `Sendable` as a value type.
public struct WeightedAccumulator: Sendable {
    /// Σ weight · x so far.
    public private(set) var sum: [Float]
    /// The weights added so far, as ``WeightedAverage/average(_:weights:into:parallelism:)`` would total them.
    public private(set) var weights: [Float] = []

    /// A zero sum of `dimension` coordinates.
    public init(dimension: Int) { sum = [Float](repeating: 0, count: dimension) }

    /// Adds `weight · x`. The weight must be finite and non-negative.
    public mutating func add(
        _ x: UnsafeBufferPointer<Float>,
        weight: Float,
        parallelism: Parallelism = .allCores
    ) throws {
        guard weight.isFinite, weight >= 0 else {
            throw AveragingError(.invalidParameters, "a weight must be finite and non-negative")
        }
        try sum.withUnsafeMutableBufferPointer {
            try WeightedAverage.accumulate(x, weight: weight, into: $0, parallelism: parallelism)
        }
        weights.append(weight)
    }

    /// The weighted average so far: the same bits as ``WeightedAverage/average(_:weights:into:parallelism:)``
    /// over the same inputs and weights.
    public func average(parallelism: Parallelism = .allCores) throws -> [Float] {
        let divisor = try WeightedAverage.totalWeight(weights)
        var out = sum
        try out.withUnsafeMutableBufferPointer { try WeightedAverage.divide($0, by: divisor, parallelism: parallelism) }
        return out
    }
}
