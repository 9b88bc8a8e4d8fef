import CairnModels
import Testing

@Suite("Server optimisers") struct ServerOptimiserTests {
    /// Two rounds of each rule from x = (1, −1) with the mean update (0.5, −0.2) each round, against
    /// the paper's formulas worked out in binary64 (Python) beforehand.
    @Test(
        "Each rule moves the model as Reddi et al. define it",
        arguments: [
            (ServerOptimiser.Kind.fedavg, [2.0, -1.4]),
            (.fedavgm, [1.435, -1.174]),
            (.fedadagrad, [1.0701881868326395, -1.070013213431293]),
            (.fedadam, [1.0692435606692086, -1.0675377264484178]),
            (.fedyogi, [1.0691451162349006, -1.0674427459312932]),
        ]
    )
    func twoSteps(kind: ServerOptimiser.Kind, expected: [Double]) {
        let optimiser = ServerOptimiser(kind)
        var x: [Float] = [1, -1]
        var state = optimiser.initialState(parameters: 2)
        #expect(state.count == optimiser.stateCount(parameters: 2))
        for _ in 0..<2 { optimiser.step(&x, delta: [0.5, -0.2], state: &state) }
        for i in 0..<2 { #expect(abs(Double(x[i]) - expected[i]) < 1e-5, "\(kind) \(i): \(x[i])") }
    }

    @Test("Unusable settings are named")
    func problems() {
        #expect(ServerOptimiser(.fedadam).problem == nil)
        #expect(
            ServerOptimiser(.fedavgm, learningRate: 0).problem
                == "the server learning rate must be above 0 and at most 10, not 0.0"
        )
        #expect(
            ServerOptimiser(.fedadam, momentum: 1).problem
                == "the server momentum and beta2 must be in [0, 1), not 1.0 and 0.99"
        )
        #expect(ServerOptimiser(.fedyogi, tau: 0).problem == "tau must be above 0 and at most 1, not 0.0")
        #expect(ServerOptimiser(.fedavg, tau: 0).problem == nil)
    }

    /// A 4-class synthetic set dealt label-skewed to 4 participants (two class-sorted shards each):
    /// the best server optimiser's MLP ends within 8 points of FedAvg on an iid split of the same
    /// rows (`cairn-bench optimisers` runs the full-size comparison).
    @Test("On label-skewed synthetic data the best server optimiser is within 8 points of iid")
    func skewedSyntheticData() throws {
        let data = SyntheticData.classification(rows: 2_000, classes: 4, informative: 4, separation: 1.5, seed: 1)
        #expect(data.count == 2_000 && data.inputCount == 8 && Set(data.labels) == [0, 1, 2, 3])
        let (optimisers, iid) = try FederatedSimulation.compareServerOptimisers(
            data: data,
            architecture: try ModelArchitecture(kind: .mlp, inputs: 8, classes: 4, hidden: 64),
            participants: 4,
            split: .labelSkew,
            local: TrainingSettings(optimizer: .sgd, epochs: 2, batchSize: 16, learningRate: 0.05, l2: 0.001, seed: 1),
            rounds: 20
        )
        let skewed = optimisers.map(\.accuracy)
        #expect(optimisers.map(\.kind) == ServerOptimiser.Kind.allCases)
        #expect(iid > 0.8)
        #expect(skewed.max()! >= iid - 0.08, "iid \(iid), skewed \(skewed)")
    }
}
