public import CairnCrypto
import CairnWire

/// Pseudorandom masks of secure aggregation, added to or subtracted from a `UInt32` vector in place.
///
/// The mask of a seed is its ``ChaCha20Keystream`` read as little-endian `UInt32` words: word `j`
/// (keystream bytes `4j ..< 4j + 4`, in block `j / 16`) masks coordinate `j`. The keystream is
/// made ``chunkCoordinates`` words at a time into a buffer on the stack and added in place, so no
/// mask-sized buffer ever exists, and any piece of a vector can be masked on its own: masking
/// coordinates `a..<b` and then `b..<c` equals masking `a..<c` at once.
public enum MaskExpansion {
    /// Keystream words made per call into libsodium: 4,096 (16 KiB, in the first-level cache).
    public static let chunkCoordinates = 4096

    /// `x[i] = x[i] + mask[coordinate + i]` (mod 2^32) for every `i`.
    ///
    /// - Parameter coordinate: the mask coordinate of `x[0]`, for a vector masked in pieces.
    public static func add(
        _ keystream: ChaCha20Keystream,
        to x: UnsafeMutableBufferPointer<UInt32>,
        startingAt coordinate: Int = 0,
        parallelism: Parallelism = .allCores
    ) throws {
        try apply(keystream, x, coordinate, subtracting: false, parallelism)
    }

    /// `x[i] = x[i] - mask[coordinate + i]` (mod 2^32) for every `i`: undoes ``add(_:to:startingAt:parallelism:)``.
    public static func subtract(
        _ keystream: ChaCha20Keystream,
        from x: UnsafeMutableBufferPointer<UInt32>,
        startingAt coordinate: Int = 0,
        parallelism: Parallelism = .allCores
    ) throws {
        try apply(keystream, x, coordinate, subtracting: true, parallelism)
    }

    /// Checks that coordinates `coordinate ..< coordinate + count` exist in one keystream.
    static func checkRange(_ coordinate: Int, _ count: Int) throws {
        let words = Int64(ChaCha20Keystream.blockCount) * Int64(lanes)
        guard coordinate >= 0, Int64(coordinate) <= words - Int64(count) else {
            throw AveragingError(
                .lengthMismatch,
                "coordinates \(coordinate)..<\(coordinate + count) are outside one keystream (2^36 words)"
            )
        }
    }

    /// Calls `body(words, i, n)` for consecutive runs `i ..< i + n` of `piece`, where
    /// `words[0..<n]` holds keystream words `coordinate + i ..< coordinate + i + n`.
    static func forEachKeystreamRun(
        _ keystream: ChaCha20Keystream,
        _ coordinate: Int,
        _ piece: Range<Int>,
        _ body: (UnsafePointer<UInt32>, Int, Int) -> Void
    ) throws {
        try withUnsafeTemporaryAllocation(of: UInt32.self, capacity: chunkCoordinates) { words in
            let base = words.baseAddress!
            var i = piece.lowerBound
            while i < piece.upperBound {
                let word = coordinate + i
                let skip = word % lanes
                let n = min(chunkCoordinates - skip, piece.upperBound - i)
                try keystream.fill(
                    UnsafeMutableRawBufferPointer(start: base, count: (skip + n) * 4),
                    fromBlock: UInt64(word / lanes)
                )
                body(base + skip, i, n)
                i += n
            }
        }
    }

    private static func apply(
        _ keystream: ChaCha20Keystream,
        _ x: UnsafeMutableBufferPointer<UInt32>,
        _ coordinate: Int,
        subtracting: Bool,
        _ parallelism: Parallelism
    ) throws {
        try checkRange(coordinate, x.count)
        guard let base = x.baseAddress else { return }
        try parallelism.forEachPiece(of: x.count) { piece in
            try forEachKeystreamRun(keystream, coordinate, piece) { words, i, n in
                if subtracting {
                    ModularSum.run(words, base + i, n, subtracting: true)
                } else {
                    ModularSum.run(words, base + i, n, subtracting: false)
                }
            }
        }
    }
}
