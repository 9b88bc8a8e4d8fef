import Testing

@testable import CairnSIMD

@Suite("Modular sums in Z_2^32")
struct ModularSumTests {
    @Test("Add and subtract wrap exactly at 2^32")
    func wrapping() throws {
        var sum: [UInt32] = [0xFFFF_FFFF, 0, 0x8000_0000, 7]
        let x: [UInt32] = [2, 1, 0x8000_0000, 0xFFFF_FFFF]
        try sum.withUnsafeMutableBufferPointer { s in try x.withUnsafeBufferPointer { try ModularSum.add($0, into: s) }
        }
        #expect(sum == [1, 1, 0, 6])
        try sum.withUnsafeMutableBufferPointer { s in
            try x.withUnsafeBufferPointer { try ModularSum.subtract($0, from: s) }
        }
        #expect(sum == [0xFFFF_FFFF, 0, 0x8000_0000, 7])
    }

    @Test("One vector at a time equals a scalar loop, serial and split", arguments: awkwardLengths)
    func oneAtATime(length: Int) throws {
        let x = randomWords(length, seed: 1)
        let start = randomWords(length, seed: 2)
        let expectedSum = zip(start, x).map { $0 &+ $1 }
        let expectedDifference = zip(start, x).map { $0 &- $1 }
        for parallelism in [Parallelism.serial, twoThreads] {
            var sum = start
            try sum.withUnsafeMutableBufferPointer { s in
                try x.withUnsafeBufferPointer { try ModularSum.add($0, into: s, parallelism: parallelism) }
            }
            #expect(mismatch(sum, expectedSum) == nil)
            var difference = start
            try difference.withUnsafeMutableBufferPointer { s in
                try x.withUnsafeBufferPointer { try ModularSum.subtract($0, from: s, parallelism: parallelism) }
            }
            #expect(mismatch(difference, expectedDifference) == nil)
        }
    }

    @Test("Many vectors in one pass equal a scalar loop, for input counts around the group of eight")
    func manyAtOnce() throws {
        for length in [0, 1, 17, 4099, 131_101] {
            for count in length > 100_000 ? [0, 11] : Array(0...9) + [16, 19] {
                let inputs = (0..<count).map { randomWords(length, seed: UInt64(100 + $0)) }
                let start = randomWords(length, seed: 3)
                var expected = start
                for x in inputs { for i in 0..<length { expected[i] = expected[i] &+ x[i] } }
                for parallelism in [Parallelism.serial, twoThreads] {
                    var sum = start
                    try withBuffers(inputs) { buffers in
                        try sum.withUnsafeMutableBufferPointer {
                            try ModularSum.add(buffers, into: $0, parallelism: parallelism)
                        }
                    }
                    #expect(mismatch(sum, expected) == nil, "length \(length), \(count) inputs, \(parallelism)")
                }
            }
        }
    }

    @Test("Vectors of another length are refused and the sum is left as it was")
    func lengthMismatch() throws {
        var sum: [UInt32] = [1, 2, 3]
        let short: [UInt32] = [1, 2]
        expectAveragingError(.lengthMismatch) {
            try sum.withUnsafeMutableBufferPointer { s in
                try short.withUnsafeBufferPointer { try ModularSum.add($0, into: s) }
            }
        }
        expectAveragingError(.lengthMismatch) {
            try sum.withUnsafeMutableBufferPointer { s in
                try withBuffers([[1, 1, 1], short]) { try ModularSum.add($0, into: s) }
            }
        }
        #expect(sum == [1, 2, 3])
    }

    @Test("The accumulator fed in pieces equals the whole sum; a piece past the end is refused")
    func accumulatorPieces() throws {
        let length = 70_001
        let a = randomWords(length, seed: 7)
        let b = randomWords(length, seed: 8)
        var whole = ModularAccumulator(dimension: length)
        try a.withUnsafeBufferPointer { try whole.add($0) }
        try b.withUnsafeBufferPointer { try whole.add($0) }
        #expect(whole.contributions == 2)
        #expect(mismatch(whole.sum, zip(a, b).map { $0 &+ $1 }) == nil)

        var pieces = ModularAccumulator(dimension: length)
        for vector in [a, b] {
            var offset = 0
            for size in [1, 15, 16, 17, 4096, 65_000, length] where offset < length {
                let n = min(size, length - offset)
                try vector.withUnsafeBufferPointer {
                    try pieces.add(UnsafeBufferPointer(rebasing: $0[offset..<(offset + n)]), at: offset)
                }
                offset += n
            }
            pieces.countContribution()
        }
        #expect(mismatch(pieces.sum, whole.sum) == nil)
        #expect(pieces.contributions == 2)

        let before = pieces.sum
        expectAveragingError(.lengthMismatch) {
            try a.withUnsafeBufferPointer { try pieces.add(UnsafeBufferPointer(rebasing: $0[0..<2]), at: length - 1) }
        }
        expectAveragingError(.lengthMismatch) {
            try a.withUnsafeBufferPointer { try pieces.add(UnsafeBufferPointer(rebasing: $0[0..<1]), at: -1) }
        }
        #expect(mismatch(pieces.sum, before) == nil)

        try b.withUnsafeBufferPointer { try pieces.subtract($0) }
        #expect(mismatch(pieces.sum, a) == nil)
        #expect(pieces.contributions == 1)
    }
}

/// Calls `body` with buffer views of every array in `arrays`.
func withBuffers<T, R>(_ arrays: [[T]], _ body: ([UnsafeBufferPointer<T>]) throws -> R) rethrows -> R {
    var buffers: [UnsafeBufferPointer<T>] = []
    func nest(_ k: Int) throws -> R {
        if k == arrays.count { return try body(buffers) }
        return try arrays[k].withUnsafeBufferPointer { b in
            buffers.append(b)
            return try nest(k + 1)
        }
    }
    return try nest(0)
}
