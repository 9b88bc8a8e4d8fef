internal import Glibc

/// Rows encoded as model inputs: `features` row-major (`count × inputCount`), one class index per row.
///
/// Numbers become one input each; a category becomes one input per category (one-hot), in the
/// schema's feature order. `Sendable` as a value type.
public struct Dataset: Sendable {
    /// The schema the rows were validated against.
    public let schema: DataSchema
    /// Inputs per row.
    public let inputCount: Int
    /// `count × inputCount` inputs, row after row.
    public var features: [Float]
    /// The class index of each row.
    public var labels: [Int32]

    /// A dataset; `features.count` must be `labels.count × schema.inputCount`.
    public init(schema: DataSchema, features: [Float], labels: [Int32]) {
        precondition(features.count == labels.count * schema.inputCount, "features and labels disagree")
        self.schema = schema
        self.inputCount = schema.inputCount
        self.features = features
        self.labels = labels
    }

    /// The number of rows.
    public var count: Int { labels.count }

    /// The number of classes.
    public var classCount: Int { schema.label.classes.count }

    /// The rows at `indices`, in that order.
    public func subset(_ indices: some Sequence<Int>) -> Dataset {
        var f: [Float] = []
        var l: [Int32] = []
        for i in indices {
            f.append(contentsOf: features[(i * inputCount)..<((i + 1) * inputCount)])
            l.append(labels[i])
        }
        return Dataset(schema: schema, features: f, labels: l)
    }

    /// How many of the rows at `others` equal (inputs and label) some row at `rows`.
    public func repeats(of rows: [Int], among others: [Int]) -> Int {
        struct Row: Hashable {
            var inputs: [Float]
            var label: Int32
        }
        func row(_ i: Int) -> Row {
            Row(inputs: Array(features[(i * inputCount)..<((i + 1) * inputCount)]), label: labels[i])
        }
        let known = Set(rows.map(row))
        return others.filter { known.contains(row($0)) }.count
    }

    /// Row positions split into a training part and a held-out part of `testFraction` of the
    /// rows, stratified by class (each class split in the same proportion, rounded to the
    /// nearest row), shuffled with `seed`.
    public func stratifiedSplit(testFraction: Double, seed: UInt64) -> (train: [Int], test: [Int]) {
        var rng = SplitMix64(seed: seed)
        var train: [Int] = []
        var test: [Int] = []
        for c in 0..<classCount {
            var rows = labels.indices.filter { labels[$0] == Int32(c) }
            rows.shuffle(using: &rng)
            let held = Int((Double(rows.count) * testFraction).rounded())
            test += rows.prefix(held)
            train += rows.dropFirst(held)
        }
        train.shuffle(using: &rng)
        test.shuffle(using: &rng)
        return (train, test)
    }
}

/// Per-input standardisation, `(x − mean) / scale`, computed locally from training rows.
///
/// `scale` is the population standard deviation, or 1 where it is 0 (a constant input, or one
/// whose variance is within rounding, 10⁻¹² of its mean square).
public struct Standardisation: Sendable, Codable, Hashable {
    /// The mean of each input.
    public var mean: [Float]
    /// The divisor of each input.
    public var scale: [Float]

    /// The statistics of `data`'s inputs (accumulated in `Double`).
    public init(of data: Dataset) {
        let d = data.inputCount
        var sum = [Double](repeating: 0, count: d)
        var squares = [Double](repeating: 0, count: d)
        for r in 0..<data.count {
            for j in 0..<d {
                let x = Double(data.features[r * d + j])
                sum[j] += x
                squares[j] += x * x
            }
        }
        self.init(count: Double(data.count), sums: sum, squares: squares)
    }

    /// The statistics of `count` rows from each input's sum and sum of squares (a federation's
    /// pooled ones): the mean, and the population standard deviation (1 where it is 0).
    public init(count: Double, sums: [Double], squares: [Double]) {
        let n = max(count, 1)
        mean = sums.map { Float($0 / n) }
        scale = zip(sums, squares).map { s, q in
            let variance = max(0, q / n - (s / n) * (s / n))
            // A variance within rounding of the mean square is a constant input's.
            let deviation = Float(variance.squareRoot())
            return variance > 1e-12 * (q / n) && deviation > 0 && deviation.isFinite ? deviation : 1
        }
    }

    /// Given statistics (for a model file's stored ones).
    public init(mean: [Float], scale: [Float]) {
        self.mean = mean
        self.scale = scale
    }

    /// `data` with every input standardised.
    public func apply(to data: Dataset) -> Dataset {
        var out = data
        let d = data.inputCount
        out.features.withUnsafeMutableBufferPointer { f in
            for r in 0..<data.count {
                for j in 0..<d { f[r * d + j] = (f[r * d + j] - mean[j]) / scale[j] }
            }
        }
        return out
    }
}

/// SplitMix64: a small seeded generator, so training and splits are reproducible for a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose whole output is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = Double(next() >> 11 | 1) * 0x1p-53
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
