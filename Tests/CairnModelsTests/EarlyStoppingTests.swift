import CairnModels
import CairnWire
import Testing

@Suite("Early stopping") struct EarlyStoppingTests {
    /// On the validation loss's plateau training stops, and the model is the best epoch's: the
    /// same parameters, bit for bit, as training exactly that many epochs without early stopping.
    @Test("Training stops on the plateau and keeps the best epoch's parameters")
    func stopsAndKeepsTheBest() throws {
        let data = SyntheticData.classification(rows: 600, classes: 3, informative: 4, separation: 1.5, seed: 7)
        let (fit, check) = data.stratifiedSplit(testFraction: 0.2, seed: 1)
        let standardisation = Standardisation(of: data.subset(fit))
        let train = standardisation.apply(to: data.subset(fit))
        let validation = standardisation.apply(to: data.subset(check))
        let architecture = try ModelArchitecture(kind: .mlp, inputs: 8, classes: 3, hidden: 16)
        var settings = TrainingSettings(epochs: 2_000, learningRate: 0.01, seed: 3, patience: 5)
        var stopped = Model(architecture: architecture, seed: 3)
        let losses = try Trainer.train(&stopped, on: train, settings: settings, validation: validation)
        #expect(losses.count > 1 && losses.count < 2_000 - 5)
        settings.patience = nil
        settings.epochs = losses.count
        var plain = Model(architecture: architecture, seed: 3)
        let all = try Trainer.train(&plain, on: train, settings: settings)
        #expect(all == losses)
        #expect(plain.parameters == stopped.parameters)
        // One epoch more scores no better on the validation rows than the kept model.
        func loss(_ m: Model) -> Double {
            Evaluation(probabilities: m.probabilities(validation.features), labels: validation.labels, classes: 3)
                .logLoss
        }
        settings.epochs = losses.count + 1
        var further = Model(architecture: architecture, seed: 3)
        _ = try Trainer.train(&further, on: train, settings: settings)
        #expect(loss(further) >= loss(stopped) * 0.9999)
    }

    /// FedProx: one full-batch SGD step with μ and an anchor moves each parameter by `−η·μ·(p − anchor)`
    /// more than the same step without; μ outside 0…100 is refused.
    @Test("The proximal term pulls toward the anchor by η·μ·(p − anchor)")
    func proximal() throws {
        let data = SyntheticData.classification(rows: 40, classes: 3, informative: 4, seed: 2)
        let architecture = try ModelArchitecture(kind: .softmax, inputs: 8, classes: 3)
        let start = Model(architecture: architecture, seed: 5)
        let anchor = [Float](repeating: 0.25, count: start.parameters.count)
        var settings = TrainingSettings(optimizer: .sgd, epochs: 1, batchSize: 64, learningRate: 0.1, l2: 0)
        var plain = start
        _ = try Trainer.train(&plain, on: data, settings: settings, anchor: anchor)
        settings.proximal = 2
        var pulled = start
        _ = try Trainer.train(&pulled, on: data, settings: settings, anchor: anchor)
        for i in start.parameters.indices {
            let expected = plain.parameters[i] - 0.1 * 2 * (start.parameters[i] - 0.25)
            #expect(abs(pulled.parameters[i] - expected) < 1e-6)
        }
        var unanchored = start
        _ = try Trainer.train(&unanchored, on: data, settings: settings)
        #expect(unanchored.parameters == plain.parameters)
        settings.proximal = 101
        let error = #expect(throws: DataError.self) { try settings.validate() }
        #expect(error?.message == "the proximal term μ must be 0 to 100")
    }

    @Test("A patience out of range is refused")
    func patienceRange() {
        let error = #expect(throws: DataError.self) { try TrainingSettings(patience: -1).validate() }
        #expect(error?.message == "the patience must be 0 to 100000 epochs")
    }
}
