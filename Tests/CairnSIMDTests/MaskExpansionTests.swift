import CairnCrypto
import Testing

@testable import CairnSIMD

@Suite("Mask expansion")
struct MaskExpansionTests {
    @Test("Adding a mask equals adding the keystream words, serial and split", arguments: awkwardLengths)
    func matchesKeystream(length: Int) throws {
        let k = keystream(0x42)
        let x = randomWords(length, seed: 21)
        let words = try keystreamWords(k, from: 0, count: length)
        for parallelism in [Parallelism.serial, twoThreads] {
            var y = x
            try y.withUnsafeMutableBufferPointer { try MaskExpansion.add(k, to: $0, parallelism: parallelism) }
            #expect(mismatch(y, zip(x, words).map { $0 &+ $1 }) == nil)
            try y.withUnsafeMutableBufferPointer { try MaskExpansion.subtract(k, from: $0, parallelism: parallelism) }
            #expect(mismatch(y, x) == nil, "add then subtract gives the input back, bit for bit")
        }
    }

    @Test("The first words are the RFC 8439 zero-key keystream read little-endian")
    func littleEndianWords() throws {
        var y = [UInt32](repeating: 0, count: 17)
        try y.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(0), to: $0) }
        #expect(y[0] == 0xADE0_B876 && y[1] == 0x903D_F1A0 && y[15] == 0x8665_EEB2 && y[16] == 0xBEE7_079F)
    }

    @Test("Masking in pieces from any offset equals masking at once")
    func pieces() throws {
        let length = 300_007
        let k = keystream(7)
        let x = randomWords(length, seed: 22)
        var whole = x
        try whole.withUnsafeMutableBufferPointer { try MaskExpansion.add(k, to: $0, parallelism: .serial) }
        // Cuts at block boundaries and inside blocks, pieces from one word to past a thread's share.
        for cuts in [
            [0, length], [0, 16, 32, length], [0, 1, 17, 4095, 4096, 4113, 70_000, 200_001, length],
            [0, 150_000, length],
        ] {
            var pieced = x
            for (start, end) in zip(cuts, cuts.dropFirst()) {
                try pieced.withUnsafeMutableBufferPointer { buffer in
                    try MaskExpansion.add(
                        k,
                        to: UnsafeMutableBufferPointer(rebasing: buffer[start..<end]),
                        startingAt: start,
                        parallelism: twoThreads
                    )
                }
            }
            #expect(mismatch(pieced, whole) == nil, "cuts \(cuts)")
        }
        // Pieces of 1,000 coordinates (not a multiple of 16) applied last to first.
        var reversed = x
        for start in stride(from: 0, to: length, by: 1000).reversed() {
            let end = min(length, start + 1000)
            try reversed.withUnsafeMutableBufferPointer { buffer in
                try MaskExpansion.add(
                    k,
                    to: UnsafeMutableBufferPointer(rebasing: buffer[start..<end]),
                    startingAt: start
                )
            }
        }
        #expect(mismatch(reversed, whole) == nil)
    }

    @Test("Different seeds give different masks; the same seed the same mask")
    func seeds() throws {
        var a = [UInt32](repeating: 0, count: 64)
        var b = a
        var c = a
        try a.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(1), to: $0) }
        try b.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(1), to: $0) }
        try c.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(2), to: $0) }
        #expect(a == b)
        #expect(zip(a, c).filter { $0 == $1 }.count < 2)
    }

    @Test("Coordinates past one keystream (2^36 words) are refused and the vector is left as it was")
    func exhaustion() throws {
        let end = Int(ChaCha20Keystream.blockCount) * 16
        var y: [UInt32] = [5, 6, 7]
        try y.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(3), to: $0, startingAt: end - 3) }
        try y.withUnsafeMutableBufferPointer { try MaskExpansion.subtract(keystream(3), from: $0, startingAt: end - 3) }
        #expect(y == [5, 6, 7])
        expectAveragingError(.lengthMismatch) {
            try y.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(3), to: $0, startingAt: end - 2) }
        }
        expectAveragingError(.lengthMismatch) {
            try y.withUnsafeMutableBufferPointer { try MaskExpansion.add(keystream(3), to: $0, startingAt: -1) }
        }
        #expect(y == [5, 6, 7])
    }
}
