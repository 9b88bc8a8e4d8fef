import CairnWire
import Testing

@testable import CairnSIMD

@Suite("Weighted averages (FedAvg)")
struct WeightedAverageTests {
    /// The documented order, in plain scalar code.
    func reference(_ inputs: [[Float]], _ weights: [Float], length: Int) -> [Float] {
        var total = 0.0
        for w in weights { total += Double(w) }
        let divisor = Float(total)
        return (0..<length).map { i in
            var sum: Float = 0
            for (x, w) in zip(inputs, weights) { sum = sum + w * x[i] }
            return sum / divisor
        }
    }

    @Test("One pass over many inputs equals the scalar reference bit for bit", arguments: awkwardLengths)
    func matchesReference(length: Int) throws {
        // Every group width (1…8) at small lengths; a few counts at the long ones.
        for count in length > 100_000 ? [3, 11] : Array(1...9) + [17] {
            let inputs = (0..<count).map { randomFloats(length, in: -2...2, seed: UInt64(200 + $0)) }
            let weights = (0..<count).map { Float(1 + 13 * $0 % 29) }
            let expected = reference(inputs, weights, length: length)
            for parallelism in [Parallelism.serial, twoThreads] {
                var out = [Float](repeating: .nan, count: length)
                try withBuffers(inputs) { buffers in
                    try out.withUnsafeMutableBufferPointer {
                        try WeightedAverage.average(buffers, weights: weights, into: $0, parallelism: parallelism)
                    }
                }
                #expect(mismatch(bits(out), bits(expected)) == nil, "length \(length), \(count) inputs, \(parallelism)")
            }
        }
    }

    @Test("The streaming accumulator gives the same bits as the one-pass average")
    func streamingMatchesBatch() throws {
        let length = 131_101
        let inputs = (0..<10).map { randomFloats(length, in: -1...1, seed: UInt64(300 + $0)) }
        let weights: [Float] = [120, 7, 3000, 1, 55, 0, 9, 8, 10_000, 42]
        var accumulator = WeightedAccumulator(dimension: length)
        for (x, w) in zip(inputs, weights) { try x.withUnsafeBufferPointer { try accumulator.add($0, weight: w) } }
        var batch = [Float](repeating: 0, count: length)
        try withBuffers(inputs) { buffers in
            try batch.withUnsafeMutableBufferPointer {
                try WeightedAverage.average(buffers, weights: weights, into: $0)
            }
        }
        #expect(mismatch(bits(try accumulator.average()), bits(batch)) == nil)
        #expect(mismatch(bits(batch), bits(reference(inputs, weights, length: length))) == nil)
    }

    @Test("Exact small case: weights 1 and 3 average 0 and 4 to 3")
    func smallExact() throws {
        var out: [Float] = [0, 0]
        try withBuffers([[0, -8], [4, 8]] as [[Float]]) { b in
            try out.withUnsafeMutableBufferPointer { try WeightedAverage.average(b, weights: [1, 3], into: $0) }
        }
        #expect(out == [3, 4])
    }

    @Test("Bad weights and lengths are refused before anything is written")
    func refusals() throws {
        var out: [Float] = [9, 9]
        let cases: [([[Float]], [Float], AveragingError.Code)] = [
            ([[1, 1]], [-1], .invalidParameters),
            ([[1, 1]], [.nan], .invalidParameters),
            ([[1, 1]], [.infinity], .invalidParameters),
            ([[1, 1], [1, 1]], [0, 0], .invalidParameters),
            ([], [], .invalidParameters),
            ([[1, 1]], [1, 2], .lengthMismatch),
            ([[1, 1], [1]], [1, 1], .lengthMismatch),
        ]
        for (inputs, weights, code) in cases {
            expectAveragingError(code) {
                try withBuffers(inputs) { b in
                    try out.withUnsafeMutableBufferPointer {
                        try WeightedAverage.average(b, weights: weights, into: $0)
                    }
                }
            }
        }
        #expect(out == [9, 9])
        var accumulator = WeightedAccumulator(dimension: 2)
        expectAveragingError(.invalidParameters) {
            try [Float(1), 1].withUnsafeBufferPointer { try accumulator.add($0, weight: -2) }
        }
        expectAveragingError(.invalidParameters) { try accumulator.average() }
        #expect(accumulator.sum == [0, 0])
        var y: [Float] = [1, 2]
        for divisor in [0, -1, Float.nan, .infinity] {
            expectAveragingError(.invalidParameters) {
                try y.withUnsafeMutableBufferPointer { try WeightedAverage.divide($0, by: divisor) }
            }
        }
        try y.withUnsafeMutableBufferPointer { try WeightedAverage.divide($0, by: 4) }
        #expect(y == [0.25, 0.5])
    }
}
