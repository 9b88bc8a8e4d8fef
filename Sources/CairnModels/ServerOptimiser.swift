/// How a federation's next model follows from a round's mean update `Δ` (the sample-weighted mean
/// of the participants' `local − global`, all the broker learns under secure aggregation), after
/// Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), which treats `Δ` as a
/// pseudo-gradient:
///
/// - `fedavg`: `x ← x + η·Δ` (η = 1 is plain FedAvg);
/// - `fedavgm`: `m ← β₁·m + Δ`, `x ← x + η·m` (server momentum);
/// - `fedadagrad`: `m ← β₁·m + (1 − β₁)·Δ`, `v ← v + Δ²`, `x ← x + η·m / (√v + τ)`;
/// - `fedadam`: as fedadagrad with `v ← β₂·v + (1 − β₂)·Δ²`;
/// - `fedyogi`: as fedadagrad with `v ← v − (1 − β₂)·Δ²·sign(v − Δ²)`;
/// - `scaffold`: `x ← x + η·Δ` as fedavg, with SCAFFOLD's control variates (Karimireddy et al.,
///   ICML 2020): each participant corrects every local gradient by `c − cᵢ`, sends the change of
///   its own `cᵢ` summed beside its update, and the server moves `c ← c + (|S|/N)·Δc̄` by the
///   sample-weighted mean change of the `|S|` inputs summed out of `N` participants.
///
/// `m` and `v` start at 0 (`v` at τ² for the adaptive ones, as in the paper), one value per
/// parameter, and are the federation's state from round to round; SCAFFOLD's state is `c`,
/// starting at 0.
public struct ServerOptimiser: Codable, Sendable, Hashable {
    /// The rule.
    public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        case fedavg, fedavgm, fedadagrad, fedadam, fedyogi, scaffold
    }

    /// The rule.
    public var kind: Kind
    /// η, the server's step size.
    public var learningRate: Float
    /// β₁: momentum (fedavgm) or the first-moment decay (the adaptive rules).
    public var momentum: Float
    /// β₂: the second-moment decay (fedadam, fedyogi).
    public var beta2: Float
    /// τ: the adaptivity floor (the adaptive rules).
    public var tau: Float

    /// A rule, with the defaults of ``defaults(_:)`` for anything not given.
    public init(
        _ kind: Kind,
        learningRate: Float? = nil,
        momentum: Float? = nil,
        beta2: Float? = nil,
        tau: Float? = nil
    ) {
        let d = Self.defaults(kind)
        self.kind = kind
        self.learningRate = learningRate ?? d.learningRate
        self.momentum = momentum ?? d.momentum
        self.beta2 = beta2 ?? d.beta2
        self.tau = tau ?? d.tau
    }

    private init(kind: Kind, learningRate: Float, momentum: Float, beta2: Float, tau: Float) {
        (self.kind, self.learningRate, self.momentum, self.beta2, self.tau) = (kind, learningRate, momentum, beta2, tau)
    }

    /// Each rule's defaults: FedAvg and SCAFFOLD η = 1; FedAvgM η = 0.3, β₁ = 0.9; FedAdagrad η = 0.3, FedAdam
    /// and FedYogi η = 0.03, with β₁ = 0.9, β₂ = 0.99, τ = 10⁻³ (the best of η ∈ {0.03, 0.1, 0.3, 1}
    /// in `cairn-bench optimisers`).
    public static func defaults(_ kind: Kind) -> ServerOptimiser {
        switch kind {
        case .fedavg, .scaffold: ServerOptimiser(kind: kind, learningRate: 1, momentum: 0, beta2: 0, tau: 0)
        case .fedavgm: ServerOptimiser(kind: kind, learningRate: 0.3, momentum: 0.9, beta2: 0, tau: 0)
        case .fedadagrad: ServerOptimiser(kind: kind, learningRate: 0.3, momentum: 0.9, beta2: 0, tau: 1e-3)
        case .fedadam, .fedyogi: ServerOptimiser(kind: kind, learningRate: 0.03, momentum: 0.9, beta2: 0.99, tau: 1e-3)
        }
    }

    /// A reason the rule cannot be used, or nil: every number finite, η in (0, 10], β₁ and β₂ in
    /// [0, 1), τ in (0, 1] for the adaptive rules.
    public var problem: String? {
        guard learningRate.isFinite, learningRate > 0, learningRate <= 10 else {
            return "the server learning rate must be above 0 and at most 10, not \(learningRate)"
        }
        guard momentum.isFinite, momentum >= 0, momentum < 1, beta2.isFinite, beta2 >= 0, beta2 < 1 else {
            return "the server momentum and beta2 must be in [0, 1), not \(momentum) and \(beta2)"
        }
        if isAdaptive, !(tau.isFinite && tau > 0 && tau <= 1) {
            return "tau must be above 0 and at most 1, not \(tau)"
        }
        return nil
    }

    /// Whether the rule keeps a second moment.
    public var isAdaptive: Bool { [.fedadagrad, .fedadam, .fedyogi].contains(kind) }

    /// Whether participants send SCAFFOLD's control-variate change beside their update, so that a
    /// round's summed vector holds twice the parameters.
    public var usesControlVariates: Bool { kind == .scaffold }

    /// How many floats of state the rule keeps for `parameters` parameters: `m`, then `v`
    /// (SCAFFOLD: `c`).
    public func stateCount(parameters: Int) -> Int {
        switch kind {
        case .fedavg: 0
        case .fedavgm, .scaffold: parameters
        case .fedadagrad, .fedadam, .fedyogi: 2 * parameters
        }
    }

    /// The state before the first round.
    public func initialState(parameters: Int) -> [Float] {
        guard isAdaptive else { return [Float](repeating: 0, count: stateCount(parameters: parameters)) }
        return [Float](repeating: 0, count: parameters) + [Float](repeating: tau * tau, count: parameters)
    }

    /// Moves `parameters` by the mean update `delta`, updating `state` (``initialState(parameters:)``
    /// at first). SCAFFOLD also moves its `c` (the state) by `fraction` (`|S|/N`) of
    /// `controlDelta`, the mean change of the summed participants' control variates.
    public func step(
        _ parameters: inout [Float],
        delta: [Float],
        state: inout [Float],
        controlDelta: [Float] = [],
        fraction: Float = 1
    ) {
        let d = parameters.count
        precondition(delta.count == d && state.count == stateCount(parameters: d))
        precondition(!usesControlVariates || controlDelta.count == d)
        let (eta, b1, b2) = (learningRate, momentum, beta2)
        switch kind {
        case .fedavg:
            for i in 0..<d { parameters[i] += eta * delta[i] }
        case .scaffold:
            for i in 0..<d {
                parameters[i] += eta * delta[i]
                state[i] += fraction * controlDelta[i]
            }
        case .fedavgm:
            for i in 0..<d {
                state[i] = b1 * state[i] + delta[i]
                parameters[i] += eta * state[i]
            }
        case .fedadagrad, .fedadam, .fedyogi:
            for i in 0..<d {
                let g = delta[i]
                let g2 = g * g
                state[i] = b1 * state[i] + (1 - b1) * g
                let v = state[d + i]
                switch kind {
                case .fedadagrad: state[d + i] = v + g2
                case .fedadam: state[d + i] = b2 * v + (1 - b2) * g2
                default: state[d + i] = v - (1 - b2) * g2 * (v > g2 ? 1 : v < g2 ? -1 : 0)
                }
                parameters[i] += eta * state[i] / (state[d + i].squareRoot() + tau)
            }
        }
    }
}
