import CairnWire
import Testing

@testable import CairnModels

@Suite("Federated averaging simulation")
struct FederatedTests {
    @Test("Partitions deal every row exactly once; label skew gives most participants few classes")
    func partitions() throws {
        let data = try DataValidator.load(
            datasets + "/digits/data.csv",
            schema: DataSchema.load(from: datasets + "/digits/schema.json")
        ).0
        for split in FederatedSimulation.Split.allCases {
            let parts = try FederatedSimulation.partition(data, participants: 5, split: split, seed: 3)
            #expect(parts.flatMap { $0 }.sorted() == Array(0..<data.count))
            let classes = parts.map { Set($0.map { data.labels[$0] }).count }
            if split == .iid {
                #expect(parts.map(\.count).max()! - parts.map(\.count).min()! <= 1)
                #expect(classes.allSatisfy { $0 == 10 })
            } else {
                #expect(classes.allSatisfy { $0 <= 4 }, "\(classes)")
            }
        }
        #expect(throws: DataError(.invalidParameters, "")) {
            try FederatedSimulation.partition(data, participants: 0, split: .iid, seed: 1)
        }
    }

    @Test(
        "FedAvg over 5 label-skewed participants ends within 2 points of centralised training",
        arguments: ["breast-cancer", "digits"]
    )
    func closeToCentralised(dataset: String) throws {
        let schema = try DataSchema.load(from: datasets + "/\(dataset)/schema.json")
        let data = try DataValidator.load(datasets + "/\(dataset)/data.csv", schema: schema).0
        let (trainRows, testRows) = data.stratifiedSplit(testFraction: 0.25, seed: 1)
        let s = Standardisation(of: data.subset(trainRows))
        let train = s.apply(to: data.subset(trainRows))
        let test = s.apply(to: data.subset(testRows))
        let architecture = try ModelArchitecture(
            kind: data.classCount == 2 ? .logistic : .softmax,
            inputs: data.inputCount,
            classes: data.classCount
        )
        let local = TrainingSettings(optimizer: .sgd, epochs: 1, batchSize: 16, learningRate: 0.05, l2: 0.001, seed: 1)
        let (_, curve) = try FederatedSimulation.run(
            train: train,
            test: test,
            participants: 5,
            split: .labelSkew,
            architecture: architecture,
            local: local,
            rounds: 40
        )
        var central = Model(architecture: architecture, seed: 1)
        var settings = local
        settings.epochs = 40
        _ = try Trainer.train(&central, on: train, settings: settings)
        let centralised = Evaluation(
            probabilities: central.probabilities(test.features),
            labels: test.labels,
            classes: data.classCount
        ).accuracy
        #expect(curve.count == 40)
        #expect(
            abs(curve.last!.accuracy - centralised) <= 0.02,
            "federated \(curve.last!.accuracy), centralised \(centralised)"
        )
        #expect(curve.last!.accuracy > 0.9)
    }
}
