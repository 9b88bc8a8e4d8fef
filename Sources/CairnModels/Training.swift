import CairnSIMD
import CairnWire
internal import Glibc

/// How to train: optimiser, epochs, mini-batch size, learning rate, L2 penalty and seed.
public struct TrainingSettings: Codable, Sendable, Hashable {
    /// The update rule.
    public enum Optimizer: String, Codable, Sendable, CaseIterable {
        /// Plain mini-batch stochastic gradient descent: p ← p − rate · g.
        case sgd
        /// Adam (Kingma and Ba, 2015) with β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸.
        case adam
    }

    /// The update rule.
    public var optimizer: Optimizer
    /// Passes over the data.
    public var epochs: Int
    /// Samples per mini-batch (the last batch of an epoch may be smaller).
    public var batchSize: Int
    /// The step size.
    public var learningRate: Float
    /// The L2 penalty on weights (not biases): the loss gains `l2 / 2 · Σ w²`.
    public var l2: Float
    /// Fixes the order of samples in every epoch (and nothing else: initial parameters come with the model).
    public var seed: UInt64
    /// Early stopping: training ends once the monitored loss (a validation set's log loss, or
    /// the training loss without one) has not fallen below 0.9999 of its best for this many
    /// epochs, and the parameters of the best epoch are kept; nil or 0 trains every epoch.
    public var patience: Int?
    /// FedProx's μ (Li et al., MLSys 2020): the loss gains `μ / 2 · ‖p − anchor‖²` for the anchor
    /// ``Trainer/train(_:on:settings:validation:anchor:)`` is given (the round's global model),
    /// which keeps a participant's local model near it on skewed data; nil or 0 adds nothing.
    public var proximal: Float?

    /// Settings; ``validate()`` checks them.
    public init(
        optimizer: Optimizer = .adam,
        epochs: Int = 50,
        batchSize: Int = 32,
        learningRate: Float = 0.01,
        l2: Float = 1e-4,
        seed: UInt64 = 1,
        patience: Int? = nil,
        proximal: Float? = nil
    ) {
        self.patience = patience
        self.proximal = proximal
        self.optimizer = optimizer
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.l2 = l2
        self.seed = seed
    }

    /// Checks ranges: 1…100,000 epochs, batch 1…65,536, a finite positive rate, a finite non-negative L2.
    public func validate() throws {
        guard (1...100_000).contains(epochs) else { throw DataError(.invalidParameters, "epochs must be 1 to 100000") }
        guard (1...65_536).contains(batchSize) else {
            throw DataError(.invalidParameters, "batch size must be 1 to 65536")
        }
        guard learningRate.isFinite, learningRate > 0 else {
            throw DataError(.invalidParameters, "the learning rate must be finite and positive")
        }
        guard l2.isFinite, l2 >= 0 else {
            throw DataError(.invalidParameters, "the L2 penalty must be finite and non-negative")
        }
        guard (0...100_000).contains(patience ?? 0) else {
            throw DataError(.invalidParameters, "the patience must be 0 to 100000 epochs")
        }
        if let proximal, !(proximal.isFinite && proximal >= 0 && proximal <= 100) {
            throw DataError(.invalidParameters, "the proximal term μ must be 0 to 100")
        }
    }
}

/// The early-stopping rule of local training and of federations: an observation improves when
/// its value is below 0.9999 of the best so far (the first finite value is the first best; NaN
/// and infinities never are), and the patience is spent once `patience` observations after the
/// best have not improved on it.
public struct Plateau: Sendable {
    /// The best observation so far.
    public private(set) var best: (index: Int, value: Double)?

    /// No observation yet.
    public init() {}

    /// Records observation `index` (increasing); true when it is the new best.
    public mutating func observe(_ value: Double, at index: Int) -> Bool {
        guard value.isFinite, best.map({ value < $0.value * 0.9999 }) ?? true else { return false }
        best = (index, value)
        return true
    }

    /// Whether `patience` (≥ 1) observations after the best, up to `index`, have passed.
    public func isSpent(at index: Int, patience: Int) -> Bool {
        guard patience >= 1, let best else { return false }
        return index - best.index >= patience
    }
}

/// Mini-batch training, deterministic for given settings, model and data.
public enum Trainer {
    /// Trains `model` on `data` and returns the mean training loss of each epoch.
    ///
    /// `anchor` is the round's global model for ``TrainingSettings/proximal``; `correction` is
    /// added to every mini-batch gradient (SCAFFOLD's `c − cᵢ`, Karimireddy et al., ICML 2020).
    public static func train(
        _ model: inout Model,
        on data: Dataset,
        settings: TrainingSettings,
        validation: Dataset? = nil,
        anchor: [Float]? = nil,
        correction: [Float]? = nil
    ) throws -> [Double] {
        try settings.validate()
        guard data.inputCount == model.architecture.inputs, data.classCount == model.architecture.classes else {
            throw DataError(
                .invalidParameters,
                "the data has \(data.inputCount) inputs and \(data.classCount) classes; the model expects "
                    + "\(model.architecture.inputs) and \(model.architecture.classes)"
            )
        }
        guard data.count > 0 else { throw DataError(.invalidParameters, "there are no rows to train on") }
        let mu = anchor == nil ? 0 : settings.proximal ?? 0
        if let anchor, anchor.count != model.parameters.count {
            throw DataError(
                .invalidParameters,
                "the proximal anchor has \(anchor.count) parameters, not \(model.parameters.count)"
            )
        }
        if let correction, correction.count != model.parameters.count {
            throw DataError(
                .invalidParameters,
                "the gradient correction has \(correction.count) values, not \(model.parameters.count)"
            )
        }
        var rng = SplitMix64(seed: settings.seed)
        var order = Array(0..<data.count)
        var gradient: [Float] = []
        var m = [Float](repeating: 0, count: model.parameters.count)
        var v = m
        var step = 0
        var losses: [Double] = []
        let patience = settings.patience ?? 0
        var plateau = Plateau()
        var bestParameters = model.parameters
        for epoch in 0..<settings.epochs {
            order.shuffle(using: &rng)
            var total = 0.0
            var start = 0
            while start < order.count {
                let batch = order[start..<min(start + settings.batchSize, order.count)]
                total +=
                    model.lossAndGradient(data, rows: batch, l2: settings.l2, gradient: &gradient) * Double(batch.count)
                step += 1
                if mu > 0, let anchor {
                    for i in gradient.indices { gradient[i] += mu * (model.parameters[i] - anchor[i]) }
                }
                if let correction {
                    for i in gradient.indices { gradient[i] += correction[i] }
                }
                update(&model.parameters, gradient, &m, &v, step, settings)
                start += settings.batchSize
            }
            losses.append(total / Double(data.count))
            if patience > 0 {
                var monitored = losses[epoch]
                if let validation, validation.count > 0 {
                    monitored =
                        Evaluation(
                            probabilities: model.probabilities(validation.features),
                            labels: validation.labels,
                            classes: model.architecture.classes
                        ).logLoss
                }
                if plateau.observe(monitored, at: epoch) {
                    bestParameters = model.parameters
                } else if plateau.isSpent(at: epoch, patience: patience) {
                    break
                }
            }
        }
        if patience > 0, let best = plateau.best {
            model.parameters = bestParameters
            losses = Array(losses.prefix(best.index + 1))
        }
        guard model.parameters.allSatisfy(\.isFinite) else {
            throw DataError(
                .invalidParameters,
                "training diverged (a parameter became NaN or infinite); lower the learning rate"
            )
        }
        return losses
    }

    /// A participant's round: `settings`' local training from the round's `global` model (the
    /// proximal anchor). With SCAFFOLD's `control` (the server's `c` and this participant's `cᵢ`,
    /// zeros before its first counted round) every gradient is corrected by `c − cᵢ`, and the
    /// participant's next `cᵢ⁺` is returned too: the full-batch gradient of its loss at `global`
    /// (the paper's option I, the same whichever local optimiser runs).
    public static func localRound(
        from global: Model,
        on data: Dataset,
        settings: TrainingSettings,
        control: (server: [Float], own: [Float])? = nil
    ) throws -> (model: Model, control: [Float]?) {
        var local = global
        guard let control else {
            _ = try train(&local, on: data, settings: settings, anchor: global.parameters)
            return (local, nil)
        }
        guard control.server.count == global.parameters.count, control.own.count == global.parameters.count else {
            throw DataError(.invalidParameters, "the control variates do not match the model's parameters")
        }
        let correction = zip(control.server, control.own).map { $0 - $1 }
        _ = try train(&local, on: data, settings: settings, anchor: global.parameters, correction: correction)
        var gradient: [Float] = []
        _ = global.lossAndGradient(data, rows: 0..<data.count, l2: settings.l2, gradient: &gradient)
        return (local, gradient)
    }

    private static func update(
        _ p: inout [Float],
        _ g: [Float],
        _ m: inout [Float],
        _ v: inout [Float],
        _ step: Int,
        _ s: TrainingSettings
    ) {
        switch s.optimizer {
        case .sgd:
            for i in p.indices { p[i] -= s.learningRate * g[i] }
        case .adam:
            let b1: Float = 0.9
            let b2: Float = 0.999
            let c1 = 1 - Float(pow(Double(b1), Double(step)))
            let c2 = 1 - Float(pow(Double(b2), Double(step)))
            for i in p.indices {
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                p[i] -= s.learningRate * (m[i] / c1) / ((v[i] / c2).squareRoot() + 1e-8)
            }
        }
    }

    /// The update a participant shares after local training: `local − global`, scaled down to an L2
    /// norm of at most `clipNorm` when one is given (see ``Norms/clipL2(_:toNorm:parallelism:)``).
    public static func delta(local: Model, global: Model, clipNorm: Float? = nil) throws -> [Float] {
        var d = try local.delta(from: global)
        if let clipNorm {
            try d.withUnsafeMutableBufferPointer { _ = try Norms.clipL2($0, toNorm: clipNorm, parallelism: .serial) }
        }
        return d
    }
}
