import CairnCrypto
import CairnWire
import Testing

@testable import CairnSIMD

@Suite("Quantisation")
struct QuantisationTests {
    /// The documented rule, in plain scalar code.
    func reference(_ x: [Float], _ p: QuantisationParameters, _ words: [UInt32]) -> [UInt32] {
        zip(x, words).map { x, r in
            let clipped = min(max(x, -p.clipBound), p.clipBound)
            let v = Double(clipped) * Double(p.scale)
            let floor = v.rounded(.down)
            let up = Double(r >> 1) < (v - floor) * 0x1p31
            return UInt32(bitPattern: Int32(floor) + (up ? 1 : 0))
        }
    }

    func quantise(
        _ x: [Float],
        _ p: QuantisationParameters,
        _ k: ChaCha20Keystream,
        startingAt start: Int = 0,
        parallelism: Parallelism = .allCores
    ) throws -> [UInt32] {
        var q = [UInt32](repeating: 0xDEAD_BEEF, count: x.count)
        try x.withUnsafeBufferPointer { xs in
            try q.withUnsafeMutableBufferPointer {
                try Quantisation.quantise(
                    xs,
                    into: $0,
                    parameters: p,
                    rounding: k,
                    startingAt: start,
                    parallelism: parallelism
                )
            }
        }
        return q
    }

    func dequantise(_ q: [UInt32], _ p: QuantisationParameters, dividingBy divisor: Double = 1) throws -> [Float] {
        var x = [Float](repeating: .nan, count: q.count)
        try q.withUnsafeBufferPointer { qs in
            try x.withUnsafeMutableBufferPointer {
                try Quantisation.dequantise(qs, into: $0, parameters: p, dividingBy: divisor)
            }
        }
        return x
    }

    @Test("Quantisation equals the scalar rule bit for bit, serial and split", arguments: awkwardLengths)
    func matchesReference(length: Int) throws {
        let x = randomFloats(length, in: -1.5...1.5, seed: 31)
        let k = keystream(9)
        for (scale, start) in [(Float(1000.5), 0), (0x1p20, 37), (3.75, 4096)] {
            let p = try QuantisationParameters(scale: scale, clipBound: 1)
            let expected = reference(x, p, try keystreamWords(k, from: start, count: length))
            for parallelism in [Parallelism.serial, twoThreads] {
                #expect(mismatch(try quantise(x, p, k, startingAt: start, parallelism: parallelism), expected) == nil)
            }
        }
    }

    @Test("Dequantisation equals the scalar rule bit for bit", arguments: awkwardLengths)
    func dequantiseMatchesReference(length: Int) throws {
        let q = randomWords(length, seed: 32)
        let p = try QuantisationParameters(scale: 1000.5, clipBound: 2)
        for divisor in [1, 3, 12345.5] as [Double] {
            let expected = q.map { Float(Double(Int32(bitPattern: $0)) / (Double(p.scale) * divisor)) }
            #expect(mismatch(bits(try dequantise(q, p, dividingBy: divisor)), bits(expected)) == nil)
        }
    }

    @Test("Exact values: integers stay put, clipping, two's complement, −0")
    func exactValues() throws {
        let p = try QuantisationParameters(scale: 4, clipBound: 2)
        let q = try quantise([0, 1, -1, 0.5, -2, 3, -100, -0.0, 2], p, keystream(5))
        #expect(q == [0, 4, 0xFFFF_FFFC, 2, 0xFFFF_FFF8, 8, 0xFFFF_FFF8, 0, 8])
        #expect(try dequantise(q, p) == [0, 1, -1, 0.5, -2, 2, -2, 0, 2])
    }

    @Test("A draw equal to the threshold rounds down: the probability of rounding up is the fraction")
    func drawEqualToThreshold() throws {
        // Coordinates whose draw (word >> 1) is a float: x = draw / 2^31 at scale 1 makes the
        // threshold equal the draw exactly, and the rule "round up when draw < threshold" keeps 0.
        let k = keystream(60)
        let words = try keystreamWords(k, from: 0, count: 4096)
        let x = words.map { Float($0 >> 1) * 0x1p-31 }
        let exact = words.indices.filter { Double(x[$0]) * 0x1p31 == Double(words[$0] >> 1) && words[$0] >> 1 > 0 }
        #expect(exact.count > 10)
        let q = try quantise(x, try QuantisationParameters(scale: 1, clipBound: 1), k)
        #expect(exact.allSatisfy { q[$0] == 0 })
    }

    @Test("Stochastic rounding is unbiased: round-up frequencies match the fractional parts")
    func unbiasedFrequencies() throws {
        let count = 1 << 20
        let p = try QuantisationParameters(scale: 1, clipBound: 4)
        for (value, seed) in [(Float(0.3), UInt8(40)), (0.001, 41), (0.5, 42), (0.999, 43), (-2.75, 44)] {
            let q = try quantise([Float](repeating: value, count: count), p, keystream(seed))
            let floor = Double(value).rounded(.down)
            let ups = q.filter { Double(Int32(bitPattern: $0)) == floor + 1 }.count
            #expect(ups + q.filter { Double(Int32(bitPattern: $0)) == floor }.count == count)
            let fraction = Double(value) - floor
            let standardError = (fraction * (1 - fraction) / Double(count)).squareRoot()
            let observed = Double(ups) / Double(count)
            #expect(abs(observed - fraction) < 5 * standardError, "\(value): \(observed) vs \(fraction)")
        }
    }

    @Test("Stochastic rounding is unbiased: the mean error over 10^6 random values is within 5 standard errors of 0")
    func unbiasedMeanError() throws {
        let count = 1_000_003
        let p = try QuantisationParameters(scale: 10, clipBound: 1)
        let x = randomFloats(count, in: -1...1, seed: 45)
        let q = try quantise(x, p, keystream(46), parallelism: twoThreads)
        var sum = 0.0
        var variance = 0.0
        for (xi, qi) in zip(x, q) {
            let v = Double(xi) * 10
            sum += Double(Int32(bitPattern: qi)) - v
            let f = v - v.rounded(.down)
            variance += f * (1 - f)
        }
        let mean = sum / Double(count)
        let standardError = variance.squareRoot() / Double(count)
        #expect(abs(mean) < 5 * standardError, "mean error \(mean), standard error \(standardError)")
        #expect(standardError > 0)
    }

    @Test("The dequantised sum of n quantised vectors is within the documented bound of the float sum")
    func sumWithinBound() throws {
        let length = 4099
        for (n, clip) in [(2, Float(1)), (100, 0.5), (1000, 3)] {
            let scale = QuantisationParameters.largestSafeScale(participants: n, clipBound: clip)!
            for s in [scale, 1024] {
                let p = try QuantisationParameters(scale: s, clipBound: clip)
                var accumulator = ModularAccumulator(dimension: length)
                var exact = [Double](repeating: 0, count: length)
                for u in 0..<n {
                    // Every tenth participant sits at the bound, to push the sum to its extreme.
                    let x =
                        u % 10 == 0
                        ? [Float](repeating: u % 20 == 0 ? clip : -clip, count: length)
                        : randomFloats(length, in: -clip...clip, seed: UInt64(1000 + u))
                    for i in 0..<length { exact[i] += Double(x[i]) }
                    let q = try quantise(x, p, keystream(UInt8(u % 256)), startingAt: u * length)
                    try q.withUnsafeBufferPointer { try accumulator.add($0) }
                }
                let sum = try dequantise(accumulator.sum, p)
                let bound = p.sumErrorBound(participants: n)
                let worst = zip(sum, exact).map { abs(Double($0) - $1) }.max()!
                #expect(worst <= bound, "n \(n), scale \(s): error \(worst) > bound \(bound)")
            }
        }
    }

    @Test("Non-finite coordinates are refused, naming the first one, serial and split")
    func nonFinite() throws {
        let p = try QuantisationParameters(scale: 8, clipBound: 1)
        for bad in [Float.nan, .infinity, -.infinity] {
            var x = [Float](repeating: 0.25, count: 200_000)
            x[150_001] = bad
            x[70_000] = bad
            for parallelism in [Parallelism.serial, twoThreads] {
                do {
                    _ = try quantise(x, p, keystream(1), parallelism: parallelism)
                    Issue.record("\(bad) was quantised")
                } catch let error as AveragingError {
                    #expect(error.code == .nonFinite)
                    #expect(error.message == "coordinate 70000 is NaN or infinite; refusing to quantise")
                }
            }
        }
    }

    @Test("Parameters: bad values refused; one participant must fit")
    func parameters() throws {
        for (s, c) in [
            (Float(0), Float(1)), (-1, 1), (.nan, 1), (.infinity, 1), (1, 0), (1, -1), (1, .nan), (0x1p31, 1),
            (0x1p16, 0x1p15),
        ] {
            expectAveragingError(.invalidParameters) { try QuantisationParameters(scale: s, clipBound: c) }
        }
        #expect(try QuantisationParameters(scale: 0x1p30, clipBound: 1).isSafe(participants: 1))
        let p = try QuantisationParameters(scale: 1, clipBound: 1)
        expectAveragingError(.invalidParameters) {
            try [UInt32(1)].withUnsafeBufferPointer { q in
                var x: [Float] = [0]
                try x.withUnsafeMutableBufferPointer {
                    try Quantisation.dequantise(q, into: $0, parameters: p, dividingBy: 0)
                }
            }
        }
        expectAveragingError(.lengthMismatch) {
            _ = try quantise([1, 2], p, keystream(1), startingAt: Int(ChaCha20Keystream.blockCount) * 16 - 1)
        }
    }

    /// n · (s · c + 1) < 2^31, decided with 128-bit integers: s · c = m / 2^k exactly.
    func exactlySafe(_ n: Int, _ s: Float, _ c: Float) -> Bool {
        let sc = Double(s) * Double(c)
        var k = 0
        while (sc * Double(sign: .plus, exponent: k, significand: 1)).rounded() != sc
            * Double(sign: .plus, exponent: k, significand: 1)
        { k += 1 }
        let m = Int128(sc * Double(sign: .plus, exponent: k, significand: 1))
        return Int128(n) * (m + (Int128(1) << k)) < Int128(1) << (31 + k)
    }

    @Test("The overflow rule is decided exactly, at and around the boundary")
    func safetyBoundary() throws {
        // 256 · (8,388,607 + 1) = 2^31 exactly: not safe; 255 is.
        let edge = try QuantisationParameters(scale: 8_388_607, clipBound: 1)
        #expect(!edge.isSafe(participants: 256))
        #expect(edge.isSafe(participants: 255))
        // s · c = 8,388,607.5: n · 8,388,608.5 < 2^31 holds for n ≤ 255.
        let half = try QuantisationParameters(scale: 16_777_215, clipBound: 0.5)
        #expect(half.isSafe(participants: 255) && !half.isSafe(participants: 256))
        #expect(!edge.isSafe(participants: 0) && !edge.isSafe(participants: -1))
        var g = SeededGenerator(seed: 50)
        for _ in 0..<2000 {
            let s =
                Float(Int.random(in: 1...(1 << 24), using: &g))
                * Float(sign: .plus, exponent: Int.random(in: -12...6, using: &g), significand: 1)
            let c = Float(Int.random(in: 1...(1 << 12), using: &g)) / 64
            guard let p = try? QuantisationParameters(scale: s, clipBound: c) else { continue }
            let n = Int.random(in: 1...(1 << 20), using: &g)
            #expect(p.isSafe(participants: n) == exactlySafe(n, s, c), "n \(n), s \(s), c \(c)")
        }
    }

    @Test("The largest safe scale is safe, and the next float up is not")
    func largestSafeScale() throws {
        #expect(QuantisationParameters.largestSafeScale(participants: 1, clipBound: 1) == 2_147_483_520)
        #expect(QuantisationParameters.largestSafeScale(participants: 256, clipBound: 1) == 8_388_606.5)
        for n in [1, 2, 3, 10, 100, 1000, 65_535, 1 << 20, (1 << 31) - 2] {
            for c in [Float(0.01), 0.5, 1, 3.7, 1000] {
                let s = try #require(QuantisationParameters.largestSafeScale(participants: n, clipBound: c))
                #expect(try QuantisationParameters(scale: s, clipBound: c).isSafe(participants: n))
                let above = try? QuantisationParameters(scale: s.nextUp, clipBound: c)
                #expect(above?.isSafe(participants: n) != true, "n \(n), c \(c)")
            }
        }
        #expect(QuantisationParameters.largestSafeScale(participants: (1 << 31) - 1, clipBound: 1) == nil)
        #expect(QuantisationParameters.largestSafeScale(participants: 0, clipBound: 1) == nil)
        #expect(QuantisationParameters.largestSafeScale(participants: 10, clipBound: .nan) == nil)
    }
}
