public import CairnCrypto
public import CairnModels
public import CairnSIMD
import CairnWire

extension Domain {
    /// The digest that names a model's parameters (the base-model digest of a round).
    public static let modelParameters = Domain("cairn/model-parameters/v1")
}

/// What broker and node compute the same way around a round: the shared standardisation, the
/// initial model, the model digest, a participant's quantised update and the new global model.
///
/// A participant with `n` rows sends `q(clip((local − global) · n / M))` where `M` is the
/// policy's maximum sample count, and its `n` as the extra coordinate. The broker learns
/// `S = Σ q(…)` and `N = Σ n` and sets `global += S / (s · N / M)`: the sample-weighted mean of the
/// updates (FedAvg), to within the quantisation error.
public enum FederatedModel {
    /// The standardisation every participant applies: each number feature is centred on the
    /// middle of its schema range and divided by half its width (1 without a range); one-hot
    /// category inputs are left as they are. No participant's data decides it.
    public static func standardisation(for schema: DataSchema) -> Standardisation {
        var mean: [Float] = []
        var scale: [Float] = []
        for feature in schema.features {
            if feature.type == .category {
                let k = feature.categories?.count ?? 0
                mean += [Float](repeating: 0, count: k)
                scale += [Float](repeating: 1, count: k)
            } else if let lo = feature.min, let hi = feature.max, hi > lo {
                mean.append(Float((lo + hi) / 2))
                scale.append(Float((hi - lo) / 2))
            } else {
                mean.append(0)
                scale.append(1)
            }
        }
        return Standardisation(mean: mean, scale: scale)
    }

    /// The architecture a federation trains.
    public static func architecture(of spec: FederationSpec) throws -> ModelArchitecture {
        try ModelArchitecture(
            kind: spec.model.kind,
            inputs: spec.schema.inputCount,
            classes: spec.schema.label.classes.count,
            hidden: spec.model.hidden
        )
    }

    /// Round 0's model: seeded from the federation's name, so anyone can recompute it.
    public static func initialModel(of spec: FederationSpec) throws -> Model {
        let seed = try BLAKE2b.hash(Array(spec.id.utf8), domain: .modelParameters).prefix(8).reduce(UInt64(0)) {
            $0 << 8 | UInt64($1)
        }
        return Model(architecture: try architecture(of: spec), seed: seed)
    }

    /// The standardisation of a federation's model: its pooled statistics when the policy pools
    /// them (the identity, mean 0 and scale 1, until the statistics round has finished), else the
    /// one its schema gives.
    public static func standardisation(of spec: FederationSpec, pooled: Standardisation?) -> Standardisation {
        guard spec.policy.poolsStatistics else { return standardisation(for: spec.schema) }
        let d = spec.schema.inputCount
        return pooled ?? Standardisation(mean: .init(repeating: 0, count: d), scale: .init(repeating: 1, count: d))
    }

    /// The digest of a federation's model as its model file carries it: ``digest(_:)``, over the
    /// standardisation too when the federation pools statistics (the schema fixes it otherwise),
    /// and over SCAFFOLD's server control variate in a SCAFFOLD federation.
    public static func digest(
        _ model: Model,
        standardisation: Standardisation,
        control: [Float]? = nil,
        of spec: FederationSpec
    ) throws -> [UInt8] {
        guard usesControlVariates(spec) == (control != nil) else {
            throw ExchangeError(
                .malformed,
                usesControlVariates(spec)
                    ? "the model of a SCAFFOLD federation carries no control variate"
                    : "the model carries a control variate, but the federation does not use SCAFFOLD"
            )
        }
        return try digest(model, standardisation: spec.policy.poolsStatistics ? standardisation : nil, control: control)
    }

    /// BLAKE2b-256 in `cairn/model-parameters/v1` over the architecture (kind, inputs, classes,
    /// hidden) and the parameters as little-endian float32, followed, when `standardisation` is
    /// given (a federation with pooled statistics), by its means then its scales, the same way,
    /// then, when `control` is given (a SCAFFOLD federation), by the server control variate.
    public static func digest(
        _ model: Model,
        standardisation: Standardisation? = nil,
        control: [Float]? = nil
    ) throws -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.string(model.architecture.kind.rawValue)
        w.u32(UInt32(model.architecture.inputs))
        w.u32(UInt32(model.architecture.classes))
        w.u32(UInt32(model.architecture.hidden))
        let hash = try BLAKE2b(domain: .modelParameters)
        hash.update(w.bytes)
        for values in [model.parameters] + (standardisation.map { [$0.mean, $0.scale] } ?? [])
            + (control.map { [$0] } ?? [])
        {
            #if _endian(little)
            values.withUnsafeBytes { hash.update($0) }
            #else
            var p = ByteWriter(capacity: 4 * values.count)
            for x in values { p.u32(x.bitPattern) }
            hash.update(p.bytes)
            #endif
        }
        return try hash.finalize()
    }

    /// Whether a federation's participants send SCAFFOLD's control-variate change beside their
    /// update.
    public static func usesControlVariates(_ spec: FederationSpec) -> Bool {
        spec.policy.serverOptimiser?.usesControlVariates ?? false
    }

    /// `D` of a federation's training rounds: its parameters, twice over with SCAFFOLD (the
    /// update, then the change of the participant's control variate).
    public static func dimension(of spec: FederationSpec) throws -> Int {
        try architecture(of: spec).parameterCount * (usesControlVariates(spec) ? 2 : 1)
    }

    /// Federated early stopping (``Plateau``) over a federation's scored rounds in order (round,
    /// loss): the best round, once `patience` scored rounds after it have not improved on it; nil
    /// before, or when `patience` is below 1.
    public static func plateau(_ losses: [(round: Int, loss: Double)], patience: Int) -> (round: Int, loss: Double)? {
        var rule = Plateau()
        for (index, score) in losses.enumerated() { _ = rule.observe(score.loss, at: index) }
        guard let best = rule.best, rule.isSpent(at: losses.count - 1, patience: patience) else { return nil }
        return (losses[best.index].round, best.value)
    }

    /// The median of a round's scores (the mean of the middle two for an even count): one
    /// participant's report, whatever rows it claims, moves it only within the others' range when
    /// at least three score. Nil for none.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// The fixed-point parameters of a policy.
    public static func quantisation(_ policy: RoundPolicy) throws -> QuantisationParameters {
        try QuantisationParameters(scale: policy.scale, clipBound: policy.clipBound)
    }

    /// A participant's quantised, weighted update (`D` words), with fresh stochastic rounding.
    public static func quantisedUpdate(
        local: Model,
        global: Model,
        sampleCount: Int,
        policy: RoundPolicy
    ) throws -> [UInt32] {
        try quantisedUpdate(try local.delta(from: global), sampleCount: sampleCount, policy: policy)
    }

    /// A participant's quantised, weighted update from its raw `delta` (any length: SCAFFOLD's
    /// is the model's delta then the control variate's change), with fresh stochastic rounding.
    public static func quantisedUpdate(_ raw: [Float], sampleCount: Int, policy: RoundPolicy) throws -> [UInt32] {
        guard sampleCount >= 1, sampleCount <= Int(policy.maximumSampleCount) else {
            throw ExchangeError(
                .malformed,
                "\(sampleCount) training rows: a participant brings 1 to \(policy.maximumSampleCount) (the policy's maximum)"
            )
        }
        let weight = Float(Double(sampleCount) / Double(policy.maximumSampleCount))
        let delta = raw.map { $0 * weight }
        var q = [UInt32](repeating: 0, count: delta.count)
        let rounding = try ChaCha20Keystream(seed: .random(count: ChaCha20Keystream.seedByteCount))
        try delta.withUnsafeBufferPointer { x in
            try q.withUnsafeMutableBufferPointer {
                try Quantisation.quantise(
                    x,
                    into: $0,
                    parameters: quantisation(policy),
                    rounding: rounding,
                    parallelism: .serial
                )
            }
        }
        return q
    }

    /// The largest magnitude a parameter of a stored model may have.
    public static let parameterLimit: Float = 1e6

    /// Checks a round's unmasked sum against what `contributors` honest inputs can add up to:
    /// each coordinate of an input is clipped and quantised to at most `s · c + 1` in magnitude,
    /// so each coordinate of the sum (as a signed 32-bit value) is within `n · (s · c + 1)`, and
    /// each input declares 1 to the policy's maximum sample count, so the sum of counts is within
    /// `n … n · M`. A sum outside is refused: some input was forged, and the round must not apply it.
    public static func checkBounds(sum: [UInt32], sampleCount: UInt32, contributors: Int, policy: RoundPolicy) throws {
        let q = try quantisation(policy)
        let bound = Int64(contributors) * (Int64((Double(q.scale) * Double(q.clipBound)).rounded(.up)) + 1)
        // The reason names the coordinate, never its value: the sum of a round that is not
        // applied is published nowhere else.
        if let at = sum.firstIndex(where: { abs(Int64(Int32(bitPattern: $0))) > bound }) {
            throw ExchangeError(
                .malformed,
                "coordinate \(at) of the sum is beyond the ±\(bound) that \(contributors) clipped inputs can reach: an input was forged; the update is not applied"
            )
        }
        let most = Int64(contributors) * Int64(policy.maximumSampleCount)
        guard Int64(contributors) <= Int64(sampleCount), Int64(sampleCount) <= most else {
            throw ExchangeError(
                .malformed,
                "the inputs declare \(sampleCount) rows in all, outside the \(contributors)–\(most) that \(contributors) inputs may declare: an input was forged; the update is not applied"
            )
        }
    }

    /// Checks that a model may be stored: every parameter finite and within ±``parameterLimit``.
    public static func checkStorable(_ model: Model) throws {
        guard let bad = model.parameters.firstIndex(where: { !$0.isFinite || abs($0) > parameterLimit }) else { return }
        throw ExchangeError(
            .malformed,
            "parameter \(bad) of the new model is \(model.parameters[bad]), outside ±\(parameterLimit); the model is not stored"
        )
    }

    /// The next global model from a round's sum of updates and of sample counts.
    public static func applying(
        sum: [UInt32],
        sampleCount: UInt32,
        to global: Model,
        policy: RoundPolicy
    ) throws -> Model {
        var model = global
        try apply(sum: sum, sampleCount: sampleCount, to: &model, policy: policy)
        return model
    }

    /// Moves `model` by a round's mean update (its sum of updates and of sample counts) with the
    /// policy's server optimiser, whose `state` (``ServerOptimiser/initialState(parameters:)``
    /// before the first round) it updates. FedAvg at η = 1 adds the mean in place. With SCAFFOLD
    /// the sum's second half is the control variates' change, and `fraction` is `|S|/N`.
    public static func apply(
        sum: [UInt32],
        sampleCount: UInt32,
        to model: inout Model,
        state: inout [Float],
        policy: RoundPolicy,
        fraction: Float = 1
    ) throws {
        let optimiser = policy.serverOptimiser ?? ServerOptimiser(.fedavg)
        if optimiser.kind == .fedavg, optimiser.learningRate == 1 {
            return try apply(sum: sum, sampleCount: sampleCount, to: &model, policy: policy)
        }
        guard state.count == optimiser.stateCount(parameters: model.parameters.count) else {
            throw ExchangeError(
                .internal,
                "the server optimiser's state has \(state.count) values, not \(optimiser.stateCount(parameters: model.parameters.count))"
            )
        }
        let p = model.parameters.count
        let halves = optimiser.usesControlVariates ? 2 : 1
        guard sum.count == halves * p else {
            throw ExchangeError(.malformed, "the sum has \(sum.count) words; the round needs \(halves * p)")
        }
        func mean(_ part: ArraySlice<UInt32>) throws -> [Float] {
            var mean = try Model(architecture: model.architecture, parameters: [Float](repeating: 0, count: p))
            try apply(sum: Array(part), sampleCount: sampleCount, to: &mean, policy: policy)
            return mean.parameters
        }
        optimiser.step(
            &model.parameters,
            delta: try mean(sum[..<p]),
            state: &state,
            controlDelta: halves == 2 ? try mean(sum[p...]) : [],
            fraction: fraction
        )
    }

    /// Adds the mean update of a round (its sum of updates and of sample counts) to `model` in
    /// place, dequantising a block at a time: no second `D`-sized array.
    public static func apply(
        sum: [UInt32],
        sampleCount: UInt32,
        to model: inout Model,
        policy: RoundPolicy
    ) throws {
        guard sampleCount >= 1 else { throw ExchangeError(.malformed, "a round with no training rows changes nothing") }
        guard sum.count == model.parameters.count else {
            throw ExchangeError(.malformed, "the sum has \(sum.count) words; the model has \(model.parameters.count)")
        }
        let parameters = try quantisation(policy)
        let divisor = Double(sampleCount) / Double(policy.maximumSampleCount)
        var block = [Float](repeating: 0, count: min(sum.count, 16_384))
        try sum.withUnsafeBufferPointer { q in
            try model.parameters.withUnsafeMutableBufferPointer { global in
                try block.withUnsafeMutableBufferPointer { mean in
                    for start in stride(from: 0, to: q.count, by: mean.count) {
                        let count = min(mean.count, q.count - start)
                        let part = UnsafeMutableBufferPointer(rebasing: mean[..<count])
                        try Quantisation.dequantise(
                            UnsafeBufferPointer(rebasing: q[start..<start + count]),
                            into: part,
                            parameters: parameters,
                            dividingBy: divisor,
                            parallelism: .serial
                        )
                        for i in 0..<count { global[start + i] += part[i] }
                    }
                }
            }
        }
    }
}
