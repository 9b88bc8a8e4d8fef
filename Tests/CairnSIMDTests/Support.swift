import CairnCrypto
import CairnWire
import Testing

@testable import CairnSIMD

/// The awkward lengths every kernel is checked at: empty, one, around one SIMD16 group, primes,
/// past one thread's minimum piece (so the parallel split runs), and 10^6 + 3.
let awkwardLengths = [0, 1, 15, 16, 17, 31, 97, 4099, 65_537, 131_101, 1_000_003]

/// Two threads, so that every kernel's split runs even on a one-core test machine.
let twoThreads = Parallelism(threads: 2)

/// SplitMix64: a small, seeded generator, so every random test input is reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomWords(_ count: Int, seed: UInt64) -> [UInt32] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in UInt32(truncatingIfNeeded: g.next()) }
}

func randomFloats(_ count: Int, in range: ClosedRange<Float>, seed: UInt64) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: range, using: &g) }
}

/// A keystream from a seed made of one repeated byte.
func keystream(_ byte: UInt8) -> ChaCha20Keystream {
    try! ChaCha20Keystream(seed: SecretBytes(copying: [UInt8](repeating: byte, count: 32)))
}

/// Keystream words `start ..< start + count`, read straight from one call to the crypto module:
/// the reference the chunked kernels are checked against.
func keystreamWords(_ k: ChaCha20Keystream, from start: Int, count: Int) throws -> [UInt32] {
    let first = start / 16
    let skip = start % 16
    var bytes = [UInt8](repeating: 0, count: (skip + count) * 4)
    try bytes.withUnsafeMutableBytes { try k.fill($0, fromBlock: UInt64(first)) }
    return (0..<count).map { i in
        let o = (skip + i) * 4
        return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
    }
}

/// Asserts that `body` throws an ``AveragingError`` with exactly `code`.
func expectAveragingError<T>(
    _ code: AveragingError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> T
) {
    do {
        _ = try body()
        Issue.record("expected AveragingError.\(code), but the call succeeded", sourceLocation: sourceLocation)
    } catch let error as AveragingError {
        #expect(error.code == code, "got \(error.code): \(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected AveragingError.\(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Bit patterns, so that float comparisons are exact (and NaN, −0 are told apart).
func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

/// nil when `a == b`; otherwise where they first differ. Keeps failure reports short for long vectors.
func mismatch<T: Equatable>(_ a: [T], _ b: [T]) -> String? {
    guard a.count == b.count else { return "lengths \(a.count) and \(b.count)" }
    guard let i = a.indices.first(where: { a[$0] != b[$0] }) else { return nil }
    return "first difference at \(i) of \(a.count): \(a[i]) vs \(b[i])"
}
