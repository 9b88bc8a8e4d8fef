import CairnWire

/// Sums in Z_2^32: `UInt32` vectors added and subtracted coordinate by coordinate, wrapping.
///
/// These are the sums of secure aggregation: masked fixed-point vectors whose masks cancel only
/// when every addition wraps exactly modulo 2^32.
public enum ModularSum {
    /// `sum[i] = sum[i] + x[i]` (mod 2^32) for every `i`.
    public static func add(
        _ x: UnsafeBufferPointer<UInt32>,
        into sum: UnsafeMutableBufferPointer<UInt32>,
        parallelism: Parallelism = .allCores
    ) throws {
        try checkLengths(x.count, sum.count, "a vector added to a sum has another length")
        try combine(x, into: sum, subtracting: false, parallelism)
    }

    /// `sum[i] = sum[i] - x[i]` (mod 2^32) for every `i`.
    public static func subtract(
        _ x: UnsafeBufferPointer<UInt32>,
        from sum: UnsafeMutableBufferPointer<UInt32>,
        parallelism: Parallelism = .allCores
    ) throws {
        try checkLengths(x.count, sum.count, "a vector subtracted from a sum has another length")
        try combine(x, into: sum, subtracting: true, parallelism)
    }

    /// `sum[i] = sum[i] + Σ inputs[k][i]` (mod 2^32): many vectors added in one pass over `sum`.
    ///
    /// The coordinates are worked through in tiles of ``tileCoordinates`` that stay in the
    /// second-level cache, and each pass over a tile folds in up to eight inputs at once, so
    /// `sum` moves between cache and memory once per eight inputs rather than once per input.
    /// The result equals adding the inputs one by one.
    public static func add(
        _ inputs: [UnsafeBufferPointer<UInt32>],
        into sum: UnsafeMutableBufferPointer<UInt32>,
        parallelism: Parallelism = .allCores
    ) throws {
        for input in inputs { try checkLengths(input.count, sum.count, "a vector added to a sum has another length") }
        guard let s = sum.baseAddress, !inputs.isEmpty else { return }
        forEachTile(of: sum.count, parallelism) { tile in
            forEachGroup(of: inputs.count) { k, width in
                let p = { (j: Int) in inputs[k + min(j, width - 1)].baseAddress! + tile.lowerBound }
                addGroup((p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7)), width, s + tile.lowerBound, tile.count)
            }
        }
    }

    /// The tile of the many-input kernels: 65,536 coordinates (256 KiB of 4-byte values).
    public static let tileCoordinates = 1 << 16

    /// Inputs folded into a tile per pass.
    static let groupWidth = 8

    /// Runs `body` on tiles of ``tileCoordinates`` (the last may be shorter), split across threads.
    static func forEachTile(of count: Int, _ parallelism: Parallelism, _ body: (Range<Int>) -> Void) {
        parallelism.forEachPiece(of: count) { piece in
            var start = piece.lowerBound
            while start < piece.upperBound {
                let end = min(start + tileCoordinates, piece.upperBound)
                body(start..<end)
                start = end
            }
        }
    }

    /// Calls `body(first, width)` for consecutive groups of at most ``groupWidth`` inputs.
    @inline(__always)
    static func forEachGroup(of count: Int, _ body: (Int, Int) -> Void) {
        var k = 0
        while k < count {
            let width = min(groupWidth, count - k)
            body(k, width)
            k += width
        }
    }

    /// `s[i] = s[i] + x.0[i] + … ` over the first `width` (1…8) pointers, for `i` in `0..<count`.
    @inline(__always)
    static func addGroup(
        _ x: Eight<UnsafePointer<UInt32>>,
        _ width: Int,
        _ s: UnsafeMutablePointer<UInt32>,
        _ count: Int
    ) {
        // Full loads only, the tail through padded copies (see `WeightedAverage.accumulateGroup`).
        @inline(__always) func step(_ x: Eight<UnsafePointer<UInt32>>, _ s: UnsafeMutablePointer<UInt32>, _ i: Int) {
            var v = load16(s, i)
            v &+= load16(x.0, i)
            if width > 1 { v &+= load16(x.1, i) }
            if width > 2 { v &+= load16(x.2, i) }
            if width > 3 { v &+= load16(x.3, i) }
            if width > 4 { v &+= load16(x.4, i) }
            if width > 5 { v &+= load16(x.5, i) }
            if width > 6 { v &+= load16(x.6, i) }
            if width > 7 { v &+= load16(x.7, i) }
            store16(v, s, i)
        }
        var i = 0
        while i + lanes <= count {
            step(x, s, i)
            i += lanes
        }
        if i < count { withPaddedTail(x, s, from: i, count: count) { step($0, $1, 0) } }
    }

    private static func combine(
        _ x: UnsafeBufferPointer<UInt32>,
        into sum: UnsafeMutableBufferPointer<UInt32>,
        subtracting: Bool,
        _ parallelism: Parallelism
    ) throws {
        guard let s = sum.baseAddress, let v = x.baseAddress else { return }
        parallelism.forEachPiece(of: sum.count) { piece in
            let start = piece.lowerBound
            if subtracting {
                run(v + start, s + start, piece.count, subtracting: true)
            } else {
                run(v + start, s + start, piece.count, subtracting: false)
            }
        }
    }

    /// `s[i] = s[i] ± x[i]` for `i` in `0..<count`.
    @inline(__always)
    static func run(
        _ x: UnsafePointer<UInt32>,
        _ s: UnsafeMutablePointer<UInt32>,
        _ count: Int,
        subtracting: Bool
    ) {
        if subtracting {
            zipMap16(s, x, s, count) { $0 &- $1 }
        } else {
            zipMap16(s, x, s, count) { $0 &+ $1 }
        }
    }
}

/// A running sum in Z_2^32 of vectors of one dimension, fed one vector (or one piece of a
/// vector) at a time: memory O(dimension) however many vectors it has seen.
///
/// A broker adds each participant's masked input as it arrives, piece by piece, and never holds
/// two inputs at once. `Sendable` as a value type.
public struct ModularAccumulator: Sendable {
    /// The running sum.
    public private(set) var sum: [UInt32]
    /// Vectors added minus vectors subtracted (pieces do not count; see ``countContribution()``).
    public private(set) var contributions = 0

    /// A zero sum of `dimension` coordinates.
    public init(dimension: Int) {
        sum = [UInt32](repeating: 0, count: dimension)
    }

    /// The number of coordinates.
    public var dimension: Int { sum.count }

    /// Adds a whole vector and counts it as one contribution.
    public mutating func add(_ x: UnsafeBufferPointer<UInt32>, parallelism: Parallelism = .allCores) throws {
        try sum.withUnsafeMutableBufferPointer { try ModularSum.add(x, into: $0, parallelism: parallelism) }
        contributions += 1
    }

    /// Subtracts a whole vector and takes back one contribution.
    public mutating func subtract(_ x: UnsafeBufferPointer<UInt32>, parallelism: Parallelism = .allCores) throws {
        try sum.withUnsafeMutableBufferPointer { try ModularSum.subtract(x, from: $0, parallelism: parallelism) }
        contributions -= 1
    }

    /// Adds `piece` to coordinates `offset ..< offset + piece.count`, for vectors that arrive in
    /// pieces; call ``countContribution()`` once the last piece of a vector is in.
    public mutating func add(_ piece: UnsafeBufferPointer<UInt32>, at offset: Int) throws {
        guard offset >= 0, offset <= sum.count, piece.count <= sum.count - offset else {
            throw AveragingError(
                .lengthMismatch,
                "a piece of \(piece.count) coordinates at \(offset) runs past a sum of \(sum.count)"
            )
        }
        sum.withUnsafeMutableBufferPointer { s in
            guard let p = piece.baseAddress else { return }
            ModularSum.run(p, s.baseAddress! + offset, piece.count, subtracting: false)
        }
    }

    /// Counts one more contribution, after its pieces were added with ``add(_:at:)``.
    public mutating func countContribution() { contributions += 1 }
}
