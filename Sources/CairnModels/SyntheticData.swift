/// Synthetic classification data fixed by a seed, after scikit-learn's `make_classification`:
/// each class is a few Gaussian clusters whose centres sit on vertices of a hypercube of side
/// `2 · separation` in the informative inputs, each cluster skewed by its own random linear map;
/// redundant inputs are random linear mixes of the informative ones, the rest are noise, and a
/// small fraction of labels is flipped. For tests and benchmarks that need data Cairn does not ship.
public enum SyntheticData {
    /// `rows` rows of `classes` classes over `informative + redundant + noise` float inputs.
    public static func classification(
        rows: Int,
        classes: Int,
        informative: Int = 6,
        redundant: Int = 2,
        noise: Int = 2,
        clustersPerClass: Int = 2,
        separation: Float = 1,
        flip: Double = 0.01,
        seed: UInt64
    ) -> Dataset {
        var rng = SplitMix64(seed: seed)
        func uniform() -> Float { Float(Double(rng.next() >> 11) * 0x1p-53) }
        func normal() -> Float { rng.normal() }
        let clusters = classes * clustersPerClass
        // Distinct hypercube vertices for the cluster centres.
        var vertices: [Int] = Array(0..<(1 << informative))
        vertices.shuffle(using: &rng)
        let centres = (0..<clusters).map { c in
            (0..<informative).map { i in (vertices[c % vertices.count] >> i) & 1 == 1 ? separation : -separation }
        }
        let maps = (0..<clusters).map { _ in (0..<(informative * informative)).map { _ in 2 * uniform() - 1 } }
        let mix = (0..<(redundant * informative)).map { _ in 2 * uniform() - 1 }
        let d = informative + redundant + noise
        var features = [Float](repeating: 0, count: rows * d)
        var labels = [Int32](repeating: 0, count: rows)
        for r in 0..<rows {
            let cluster = r % clusters
            var label = Int32(cluster % classes)
            let z = (0..<informative).map { _ in normal() }
            for i in 0..<informative {
                var x = centres[cluster][i]
                for k in 0..<informative { x += maps[cluster][i * informative + k] * z[k] }
                features[r * d + i] = x
            }
            for j in 0..<redundant {
                var x: Float = 0
                for i in 0..<informative { x += mix[j * informative + i] * features[r * d + i] }
                features[r * d + informative + j] = x
            }
            for j in 0..<noise { features[r * d + informative + redundant + j] = normal() }
            if Double(uniform()) < flip { label = Int32(rng.next() % UInt64(classes)) }
            labels[r] = label
        }
        // Rows in a seeded random order, not grouped by cluster.
        var order = Array(0..<rows)
        order.shuffle(using: &rng)
        let schema = DataSchema(
            task: classes == 2 ? .binary : .multiclass,
            label: .init(name: "class", classes: (0..<classes).map { "c\($0)" }),
            features: (0..<d).map { DataSchema.Feature(name: "x\($0)", type: .float) }
        )
        return Dataset(
            schema: schema,
            features: order.flatMap { features[($0 * d)..<(($0 + 1) * d)] },
            labels: order.map { labels[$0] }
        )
    }
}
