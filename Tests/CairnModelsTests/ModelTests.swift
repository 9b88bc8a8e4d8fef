import CairnWire
import Testing

@testable import CairnModels

/// A small random dataset: `rows` samples of `inputs` standard-normal inputs, labels 0..<classes.
func randomDataset(rows: Int, inputs: Int, classes: Int, seed: UInt64) -> Dataset {
    var rng = SplitMix64(seed: seed)
    let schema = DataSchema(
        task: classes == 2 ? .binary : .multiclass,
        label: .init(name: "y", classes: (0..<classes).map { "c\($0)" }),
        features: (0..<inputs).map { .init(name: "x\($0)", type: .float) }
    )
    let features = (0..<(rows * inputs)).map { _ in rng.normal() }
    let labels = (0..<rows).map { _ in Int32(rng.next() % UInt64(classes)) }
    return Dataset(schema: schema, features: features, labels: labels)
}

@Suite("Models")
struct ModelTests {
    static let architectures: [ModelArchitecture] = [
        try! ModelArchitecture(kind: .logistic, inputs: 5, classes: 2),
        try! ModelArchitecture(kind: .softmax, inputs: 5, classes: 2),
        try! ModelArchitecture(kind: .softmax, inputs: 5, classes: 4),
        try! ModelArchitecture(kind: .mlp, inputs: 5, classes: 3, hidden: 6),
    ]

    @Test("Analytic gradients match central finite differences", arguments: architectures)
    func gradients(architecture: ModelArchitecture) throws {
        let data = randomDataset(rows: 9, inputs: 5, classes: architecture.classes, seed: 7)
        var rng = SplitMix64(seed: 8)
        var model = Model(architecture: architecture, seed: 9)
        for i in model.parameters.indices { model.parameters[i] += 0.5 * rng.normal() }
        var gradient: [Float] = []
        let rows = 0..<data.count
        _ = model.lossAndGradient(data, rows: rows, l2: 0.1, gradient: &gradient)
        var ignored: [Float] = []
        let h: Float = 1e-3
        for i in model.parameters.indices {
            var plus = model
            plus.parameters[i] += h
            var minus = model
            minus.parameters[i] -= h
            let difference =
                (plus.lossAndGradient(data, rows: rows, l2: 0.1, gradient: &ignored)
                    - minus.lossAndGradient(data, rows: rows, l2: 0.1, gradient: &ignored))
                / Double(plus.parameters[i] - minus.parameters[i])
            #expect(
                abs(Double(gradient[i]) - difference) < 2e-3,
                "\(architecture.kind) parameter \(i): \(gradient[i]) vs \(difference)"
            )
        }
    }

    @Test("Layouts: tensor shapes and offsets tile the flat vector")
    func layouts() throws {
        let mlp = try ModelArchitecture(kind: .mlp, inputs: 64, classes: 10, hidden: 32)
        #expect(mlp.parameterCount == 32 * 65 + 10 * 33)
        #expect(mlp.tensors.map(\.name) == ["hidden.weight", "hidden.bias", "output.weight", "output.bias"])
        #expect(mlp.tensors.map(\.offset) == [0, 2048, 2080, 2400])
        #expect(try ModelArchitecture(kind: .logistic, inputs: 30, classes: 2).tensors.map(\.shape) == [[30], [1]])
        #expect(throws: DataError(.invalidParameters, "")) {
            try ModelArchitecture(kind: .logistic, inputs: 3, classes: 3)
        }
        #expect(throws: DataError(.invalidParameters, "")) {
            try ModelArchitecture(kind: .mlp, inputs: 3, classes: 3, hidden: 0)
        }
        #expect(throws: DataError(.invalidParameters, "")) {
            try ModelArchitecture(kind: .softmax, inputs: 0, classes: 3)
        }
    }

    @Test("Logistic and two-class softmax give the same probabilities for matching parameters")
    func logisticMatchesSoftmax() throws {
        let data = randomDataset(rows: 4, inputs: 3, classes: 2, seed: 1)
        let logistic = try Model(
            architecture: ModelArchitecture(kind: .logistic, inputs: 3, classes: 2),
            parameters: [0.5, -1, 2, 0.25]
        )
        // softmax(z0, z1) with z0 = 0 equals σ(z1).
        let softmax = try Model(
            architecture: ModelArchitecture(kind: .softmax, inputs: 3, classes: 2),
            parameters: [0, 0, 0, 0.5, -1, 2, 0, 0.25]
        )
        let a = logistic.probabilities(data.features)
        let b = softmax.probabilities(data.features)
        for (x, y) in zip(a, b) { #expect(abs(x - y) < 1e-6) }
    }

    @Test("Training is deterministic for a seed, and different for another seed")
    func deterministic() throws {
        let data = randomDataset(rows: 50, inputs: 4, classes: 3, seed: 3)
        let architecture = try ModelArchitecture(kind: .mlp, inputs: 4, classes: 3, hidden: 5)
        func run(_ seed: UInt64) throws -> [Float] {
            var model = Model(architecture: architecture, seed: 1)
            _ = try Trainer.train(&model, on: data, settings: TrainingSettings(epochs: 3, batchSize: 8, seed: seed))
            return model.parameters
        }
        #expect(try run(5) == run(5))
        #expect(try run(5) != run(6))
    }

    @Test("Training lowers the loss with both optimisers")
    func lossDecreases() throws {
        let data = randomDataset(rows: 60, inputs: 4, classes: 2, seed: 4)
        for optimizer in TrainingSettings.Optimizer.allCases {
            var model = Model(architecture: try ModelArchitecture(kind: .logistic, inputs: 4, classes: 2), seed: 1)
            let losses = try Trainer.train(
                &model,
                on: data,
                settings: TrainingSettings(optimizer: optimizer, epochs: 20, batchSize: 10, learningRate: 0.05)
            )
            #expect(losses.last! < losses.first!, "\(optimizer): \(losses.first!) → \(losses.last!)")
        }
    }

    @Test("Bad settings and mismatched data are refused")
    func refusals() throws {
        let data = randomDataset(rows: 10, inputs: 4, classes: 2, seed: 4)
        var model = Model(architecture: try ModelArchitecture(kind: .softmax, inputs: 4, classes: 3), seed: 1)
        #expect(throws: DataError(.invalidParameters, "")) {
            try Trainer.train(&model, on: data, settings: TrainingSettings())
        }
        var logistic = Model(architecture: try ModelArchitecture(kind: .logistic, inputs: 4, classes: 2), seed: 1)
        for bad in [
            TrainingSettings(epochs: 0), TrainingSettings(batchSize: 0), TrainingSettings(learningRate: 0),
            TrainingSettings(learningRate: .nan), TrainingSettings(l2: -1),
        ] {
            #expect(throws: DataError(.invalidParameters, "")) { try Trainer.train(&logistic, on: data, settings: bad) }
        }
        #expect(logistic.parameters.allSatisfy { $0 == 0 })
    }

    @Test("The delta is local − global and is clipped to the L2 bound")
    func delta() throws {
        let a = try ModelArchitecture(kind: .logistic, inputs: 2, classes: 2)
        let global = try Model(architecture: a, parameters: [1, 1, 1])
        let local = try Model(architecture: a, parameters: [4, 5, 1])
        #expect(try Trainer.delta(local: local, global: global) == [3, 4, 0])
        let clipped = try Trainer.delta(local: local, global: global, clipNorm: 1)
        #expect(abs(clipped[0] - 0.6) < 1e-6 && abs(clipped[1] - 0.8) < 1e-6 && clipped[2] == 0)
    }
}
