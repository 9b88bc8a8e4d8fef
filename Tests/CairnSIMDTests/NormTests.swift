import Testing

@testable import CairnSIMD

@Suite("Norms and clipping")
struct NormTests {
    /// The documented summation order, in plain scalar code.
    func referenceNorm(_ x: [Float]) -> Double {
        var total = 0.0
        var start = 0
        while start < x.count {
            let end = min(start + Norms.blockCoordinates, x.count)
            var lane = [Double](repeating: 0, count: 16)
            for j in start..<end { lane[(j - start) % 16] += Double(x[j]) * Double(x[j]) }
            var block = 0.0
            for v in lane { block += v }
            total += block
            start = end
        }
        return total.squareRoot()
    }

    @Test(
        "The L2 norm equals the documented order bit for bit, serial and split",
        arguments: awkwardLengths + [200_003]
    )
    func norm(length: Int) {
        let x = randomFloats(length, in: -3...3, seed: 11)
        let expected = referenceNorm(x)
        for parallelism in [Parallelism.serial, twoThreads, Parallelism(threads: 3)] {
            let got = x.withUnsafeBufferPointer { Norms.l2Norm($0, parallelism: parallelism) }
            #expect(got.bitPattern == expected.bitPattern, "length \(length), \(parallelism)")
        }
        // And it is the norm: within a relative 1e-12 of a plain running sum.
        var plain = 0.0
        for v in x { plain += Double(v) * Double(v) }
        #expect(abs(expected - plain.squareRoot()) <= 1e-12 * max(1, expected))
    }

    @Test("Exact small norm: (3, 4) has norm 5")
    func exactNorm() {
        #expect([Float(3), 4].withUnsafeBufferPointer { Norms.l2Norm($0) } == 5)
        #expect([Float]().withUnsafeBufferPointer { Norms.l2Norm($0) } == 0)
    }

    @Test("Per-coordinate clipping equals a scalar clamp", arguments: awkwardLengths)
    func clip(length: Int) throws {
        let x = randomFloats(length, in: -2...2, seed: 12)
        let expected = x.map { min(max($0, -0.75), 0.75) }
        for parallelism in [Parallelism.serial, twoThreads] {
            var y = x
            try y.withUnsafeMutableBufferPointer { try Norms.clip($0, toMagnitude: 0.75, parallelism: parallelism) }
            #expect(mismatch(bits(y), bits(expected)) == nil)
        }
    }

    @Test("Clipping maps infinities to the bound and leaves NaN as NaN")
    func clipSpecialValues() throws {
        var x: [Float] = [.infinity, -.infinity, .nan, -0.0, 1]
        try x.withUnsafeMutableBufferPointer { try Norms.clip($0, toMagnitude: 0.5) }
        #expect(
            x[0] == 0.5 && x[1] == -0.5 && x[2].isNaN && x[3].bitPattern == (-0.0 as Float).bitPattern && x[4] == 0.5
        )
    }

    @Test("L2 clipping scales by bound / norm exactly as documented", arguments: awkwardLengths)
    func clipL2(length: Int) throws {
        let x = randomFloats(length, in: -1...1, seed: 13)
        let norm = referenceNorm(x)
        let bound: Float = 2.5
        let expected = norm > Double(bound) ? x.map { $0 * Float(Double(bound) / norm) } : x
        for parallelism in [Parallelism.serial, twoThreads] {
            var y = x
            let before = try y.withUnsafeMutableBufferPointer {
                try Norms.clipL2($0, toNorm: bound, parallelism: parallelism)
            }
            #expect(before.bitPattern == norm.bitPattern)
            #expect(mismatch(bits(y), bits(expected)) == nil)
            if norm > Double(bound) {
                let after = y.withUnsafeBufferPointer { Norms.l2Norm($0) }
                #expect(abs(after - Double(bound)) <= 1e-5 * Double(bound))
            }
        }
    }

    @Test("Bad bounds and non-finite vectors are refused; the vector is left as it was")
    func refusals() {
        var x: [Float] = [1, .nan, 2]
        expectAveragingError(.nonFinite) { try x.withUnsafeMutableBufferPointer { try Norms.clipL2($0, toNorm: 1) } }
        #expect(x[0] == 1 && x[1].isNaN && x[2] == 2)
        var y: [Float] = [1, 2]
        for bound in [0, -1, Float.nan, .infinity] {
            expectAveragingError(.invalidParameters) {
                try y.withUnsafeMutableBufferPointer { try Norms.clip($0, toMagnitude: bound) }
            }
            expectAveragingError(.invalidParameters) {
                try y.withUnsafeMutableBufferPointer { try Norms.clipL2($0, toNorm: bound) }
            }
        }
        #expect(y == [1, 2])
    }
}
