import CairnCrypto
import CairnSIMD
import CairnWire

/// A plaintext, in-process federated-averaging simulation: a dataset split across participants,
/// rounds of local training from the global model, the sample-weighted average of the local
/// models (through the SIMD core), and the server optimiser's step by the mean update (FedAvg:
/// the average becomes the next global model), as the broker does with the secure sum.
///
/// It is a test and benchmark tool: no secure aggregation, no network. The broker runs the real
/// thing with masked, quantised updates.
public enum FederatedSimulation {
    /// How rows are dealt to participants.
    public enum Split: String, Sendable, Codable, CaseIterable {
        /// Shuffled and dealt evenly: every participant sees every class in about the same proportion.
        case iid
        /// Label-skewed (non-IID): rows sorted by class, cut into two shards per participant, two
        /// random shards each, so most participants see only one or two classes.
        case labelSkew = "label-skew"
    }

    /// The global model's figures after one round.
    public struct Round: Sendable, Codable, Hashable {
        /// The round, from 1.
        public var round: Int
        /// Accuracy on the held-out rows.
        public var accuracy: Double
        /// Log loss on the held-out rows.
        public var logLoss: Double
    }

    /// Participant-level differential privacy in the simulation, the distributed discrete
    /// Gaussian of a federation with DP: each participant's update (`local − global`, every
    /// participant weighted alike) is clipped to L2 norm `clip`, quantised at `scale`, and given
    /// integer noise of variance ``variance(participants:)``; the server learns only the sum, whose
    /// noise has standard deviation at least `noiseMultiplier · clip · scale`, and divides it by
    /// the number of participants.
    public struct Privacy: Sendable, Hashable {
        /// `C`, the L2 bound of one participant's update.
        public var clip: Float
        /// `z`: the summed noise's standard deviation over `C` (both in the quantised scale).
        public var noiseMultiplier: Double
        /// The fixed-point scale: 2^16.
        public var scale: Float = 65_536
        /// `m`, how many participants' noise shares make the declared noise (each adds a share of
        /// variance `(z·C·s)²/m`); nil: the participants of the round.
        public var contributors: Int?
        /// What the released sum is divided by: a public number, such as the participants planned
        /// (dividing by the number actually summed would reveal it); nil: the participants of the
        /// round.
        public var denominator: Int?

        /// A mechanism.
        public init(clip: Float, noiseMultiplier: Double) {
            self.clip = clip
            self.noiseMultiplier = noiseMultiplier
        }

        /// Each of `n` participants' share of the variance, in quantised units: `⌈(z·C·s)²/n⌉`
        /// (at most 2^63, which ``problem`` refuses anyway).
        public func variance(participants n: Int) -> UInt64 {
            let sd = noiseMultiplier * Double(clip) * Double(scale)
            return UInt64(min(0x1p63, max(1, (sd * sd / Double(n)).rounded(.up))))
        }

        /// The L2 sensitivity of one participant's quantised update: `C·s` (plus a part in 10^6 for
        /// the clipping's rounding) and `√D` for the stochastic rounding of `D` coordinates.
        public func sensitivity(dimension d: Int) -> Double {
            Double(clip) * Double(scale) * (1 + 1e-6) + Double(d).squareRoot()
        }

        /// Refuses a round whose sum could wrap modulo 2^32: `n` inputs of at most `C·s + 1` per
        /// coordinate and noise of `n` shares, whose sum stays within 12 of its standard deviations
        /// but with probability below 10⁻³², must stay below 2^31 in magnitude.
        public func checkRange(participants n: Int) throws {
            let signal = Double(n) * (Double(clip) * Double(scale) + 1)
            let noise = 12 * (Double(n) * Double(variance(participants: contributors ?? n))).squareRoot()
            guard signal + noise < 0x1p31 else {
                throw DataError(
                    .invalidParameters,
                    "\(n) participants' updates (clip \(clip)) and noise could pass ±2^31 and wrap: use fewer participants, a smaller clip or less noise"
                )
            }
        }

        /// A reason the mechanism cannot be used, or nil: `C` in (0, 100], `z` in (0, 1000], and
        /// noise within what the sampler takes.
        public var problem: String? {
            guard clip.isFinite, clip > 0, clip <= 100 else {
                return "the clipping bound must be above 0 and at most 100"
            }
            guard noiseMultiplier.isFinite, noiseMultiplier > 0, noiseMultiplier <= 1000 else {
                return "the noise multiplier must be above 0 and at most 1000"
            }
            guard variance(participants: 1) <= DiscreteGaussian.maximumVariance else {
                return "the noise (z · C · 2^16) is beyond what the sampler draws"
            }
            return nil
        }
    }

    /// Row positions of `data` for each of `participants` participants.
    public static func partition(_ data: Dataset, participants: Int, split: Split, seed: UInt64) throws -> [[Int]] {
        guard participants >= 1, participants <= data.count else {
            throw DataError(.invalidParameters, "there must be between 1 and \(data.count) participants")
        }
        var rng = SplitMix64(seed: seed)
        switch split {
        case .iid:
            var rows = Array(0..<data.count)
            rows.shuffle(using: &rng)
            return (0..<participants).map { p in stride(from: p, to: rows.count, by: participants).map { rows[$0] } }
        case .labelSkew:
            var rows = Array(0..<data.count)
            rows.shuffle(using: &rng)
            rows.sort { data.labels[$0] < data.labels[$1] }
            let shards = 2 * participants
            var order = Array(0..<shards)
            order.shuffle(using: &rng)
            func shard(_ s: Int) -> ArraySlice<Int> {
                let lo = rows.count * s / shards
                let hi = rows.count * (s + 1) / shards
                return rows[lo..<hi]
            }
            return (0..<participants).map { p in Array(shard(order[2 * p]) + shard(order[2 * p + 1])) }
        }
    }

    /// Runs `rounds` rounds from a fresh model with the `server` optimiser and returns the final
    /// global model and the held-out figures after each round. `train` and `test` must be
    /// standardised already (on the training rows of every participant together, which is what
    /// a federation's pooled statistics give).
    public static func run(
        train: Dataset,
        test: Dataset,
        participants: Int,
        split: Split,
        architecture: ModelArchitecture,
        local: TrainingSettings,
        rounds: Int,
        server: ServerOptimiser = ServerOptimiser(.fedavg),
        privacy: Privacy? = nil
    ) throws -> (model: Model, curve: [Round]) {
        let parts = try partition(train, participants: participants, split: split, seed: local.seed).map {
            train.subset($0)
        }
        return try run(
            parts: parts,
            test: test,
            architecture: architecture,
            local: local,
            rounds: rounds,
            server: server,
            privacy: privacy
        )
    }

    /// ``run(train:test:participants:split:architecture:local:rounds:server:privacy:)`` over
    /// participants' rows given as they are.
    public static func run(
        parts: [Dataset],
        test: Dataset,
        architecture: ModelArchitecture,
        local: TrainingSettings,
        rounds: Int,
        server: ServerOptimiser = ServerOptimiser(.fedavg),
        privacy: Privacy? = nil
    ) throws -> (model: Model, curve: [Round]) {
        guard rounds >= 1 else { throw DataError(.invalidParameters, "there must be at least one round") }
        guard !parts.isEmpty else { throw DataError(.invalidParameters, "there must be at least one participant") }
        if let problem = privacy?.problem { throw DataError(.invalidParameters, problem) }
        var global = Model(architecture: architecture, seed: local.seed)
        var state = server.initialState(parameters: global.parameters.count)
        let d = global.parameters.count
        var own = [[Float]](repeating: [Float](repeating: 0, count: d), count: parts.count)
        var mean = global.parameters
        var controlMean = [Float](repeating: 0, count: server.usesControlVariates ? d : 0)
        var curve: [Round] = []
        for round in 1...rounds {
            var locals: [[Float]] = []
            var controlDeltas: [[Float]] = []
            for (p, part) in parts.enumerated() {
                var settings = local
                settings.seed = local.seed &+ UInt64(round * 1_000 + p)
                let (model, control) = try Trainer.localRound(
                    from: global,
                    on: part,
                    settings: settings,
                    control: server.usesControlVariates ? (state, own[p]) : nil
                )
                locals.append(model.parameters)
                if let control {
                    controlDeltas.append(zip(control, own[p]).map { $0 - $1 })
                    own[p] = control
                }
            }
            let weights = parts.map { Float($0.count) }
            // With DP the release is the mean update itself; without, the mean of the local models.
            let noisy = try privacy.map { privacy in
                try noisyMean(of: locals.map { zip($0, global.parameters).map { $0 - $1 } }, privacy, round, local.seed)
            }
            if noisy == nil {
                try locals.withBuffers { buffers in
                    try mean.withUnsafeMutableBufferPointer {
                        try WeightedAverage.average(buffers, weights: weights, into: $0, parallelism: .serial)
                    }
                }
            }
            if !controlDeltas.isEmpty {
                try controlDeltas.withBuffers { buffers in
                    try controlMean.withUnsafeMutableBufferPointer {
                        try WeightedAverage.average(buffers, weights: weights, into: $0, parallelism: .serial)
                    }
                }
            }
            if noisy == nil, server.kind == .fedavg, server.learningRate == 1 {
                global.parameters = mean
            } else {
                server.step(
                    &global.parameters,
                    delta: noisy ?? zip(mean, global.parameters).map { $0 - $1 },
                    state: &state,
                    controlDelta: controlMean
                )
            }
            let e = Evaluation(
                probabilities: global.probabilities(test.features),
                labels: test.labels,
                classes: architecture.classes
            )
            curve.append(Round(round: round, accuracy: e.accuracy, logLoss: e.logLoss))
        }
        return (global, curve)
    }
}

extension FederatedSimulation {
    /// The mean of `deltas` as the distributed discrete Gaussian releases it: each clipped,
    /// quantised and noised on its own (noise seeded from `seed`, the round and the participant,
    /// so a simulation repeats; a node's noise is fresh from the operating system's CSPRNG), summed
    /// modulo 2^32, read back and divided by the number of participants.
    static func noisyMean(of deltas: [[Float]], _ privacy: Privacy, _ round: Int, _ seed: UInt64) throws -> [Float] {
        let d = deltas[0].count
        let parameters = try QuantisationParameters(scale: privacy.scale, clipBound: privacy.clip)
        let variance = privacy.variance(participants: privacy.contributors ?? deltas.count)
        try privacy.checkRange(participants: deltas.count)
        var sum = [UInt32](repeating: 0, count: d)
        var words = sum
        var noise = [Int64](repeating: 0, count: d)
        for (p, delta) in deltas.enumerated() {
            var rng = SplitMix64(seed: seed &+ UInt64(round) &* 1_000_003 &+ UInt64(p))
            let material = SecretBytes(copying: (0..<4).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } })
            var clipped = delta
            try clipped.withUnsafeMutableBufferPointer {
                _ = try Norms.clipL2($0, toNorm: privacy.clip, parallelism: .serial)
            }
            try clipped.withUnsafeBufferPointer { x in
                try words.withUnsafeMutableBufferPointer {
                    try Quantisation.quantise(
                        x,
                        into: $0,
                        parameters: parameters,
                        rounding: try ChaCha20Keystream(seed: material),
                        parallelism: .serial
                    )
                }
            }
            var context = ByteWriter(capacity: 1)
            context.u8(1)
            let noiseSeed = try BLAKE2b.deriveKey(from: material, domain: .discreteGaussian, context: context.bytes)
            try noise.withUnsafeMutableBufferPointer {
                try DiscreteGaussian.fill($0, variance: variance, seed: noiseSeed.bytes, parallelism: .allCores)
            }
            for i in 0..<d { sum[i] &+= words[i] &+ UInt32(truncatingIfNeeded: noise[i]) }
        }
        var mean = [Float](repeating: 0, count: d)
        try sum.withUnsafeBufferPointer { q in
            try mean.withUnsafeMutableBufferPointer {
                try Quantisation.dequantise(
                    q,
                    into: $0,
                    parameters: parameters,
                    dividingBy: Double(privacy.denominator ?? deltas.count),
                    parallelism: .serial
                )
            }
        }
        return mean
    }

    /// Each server optimiser (with its defaults) after `rounds` rounds over `participants` dealt
    /// `split`, and FedAvg over an iid split of the same rows: final held-out accuracies. A
    /// stratified quarter of `data` is held out, and the inputs are standardised on the rest.
    public static func compareServerOptimisers(
        data: Dataset,
        architecture: ModelArchitecture,
        participants: Int,
        split: Split,
        local: TrainingSettings,
        rounds: Int
    ) throws -> (optimisers: [(kind: ServerOptimiser.Kind, accuracy: Double)], iid: Double) {
        let (trainRows, testRows) = data.stratifiedSplit(testFraction: 0.25, seed: local.seed)
        let standardisation = Standardisation(of: data.subset(trainRows))
        let train = standardisation.apply(to: data.subset(trainRows))
        let test = standardisation.apply(to: data.subset(testRows))
        func final(_ split: Split, _ kind: ServerOptimiser.Kind) throws -> Double {
            try run(
                train: train,
                test: test,
                participants: participants,
                split: split,
                architecture: architecture,
                local: local,
                rounds: rounds,
                server: ServerOptimiser(kind)
            ).curve.last!.accuracy
        }
        return (try ServerOptimiser.Kind.allCases.map { ($0, try final(split, $0)) }, try final(.iid, .fedavg))
    }
}

extension Array where Element == [Float] {
    /// Calls `body` with buffer views of every array.
    func withBuffers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        func nest(_ k: Int, _ done: [UnsafeBufferPointer<Float>]) throws -> R {
            if k == count { return try body(done) }
            return try self[k].withUnsafeBufferPointer { try nest(k + 1, done + [$0]) }
        }
        return try nest(0, [])
    }
}

/// A line chart of accuracy per round as a standalone SVG file.
public func accuracySVG(_ series: [(label: String, points: [Double])], title: String) -> String {
    let width = 640.0
    let height = 400.0
    let left = 60.0
    let bottom = 40.0
    let top = 40.0
    let right = 150.0
    let rounds = Swift.max(1, series.map(\.points.count).max() ?? 1)
    let all = series.flatMap(\.points)
    let low = Swift.max(0, ((all.min() ?? 0) * 20).rounded(.down) / 20)
    let high = 1.0
    func x(_ i: Int) -> Double { left + (width - left - right) * Double(i) / Double(Swift.max(1, rounds - 1)) }
    func y(_ v: Double) -> Double { top + (height - top - bottom) * (1 - (v - low) / Swift.max(1e-9, high - low)) }
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]
    var svg =
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    svg += "<text x=\"\(left)\" y=\"24\" font-size=\"14\">\(XMLText.escape(title))</text>\n"
    for step in 0...4 {
        let v = low + (high - low) * Double(step) / 4
        svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#ddd\"/>"
        svg += "<text x=\"\(left - 8)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\((v * 1000).rounded() / 10)%</text>\n"
    }
    svg +=
        "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">round (1–\(rounds))</text>\n"
    for (k, s) in series.enumerated() {
        let colour = colours[k % colours.count]
        let points = s.points.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
        svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(points)\"/>\n"
        svg +=
            "<text x=\"\(width - right + 10)\" y=\"\(top + 20 * Double(k))\" fill=\"\(colour)\">\(XMLText.escape(s.label))</text>\n"
    }
    return svg + "</svg>\n"
}
