import CairnModels

/// `cairn-bench optimisers`: held-out accuracy of each server optimiser after a simulated
/// federation on label-skewed data, against FedAvg on an iid split of the same rows (the floor:
/// what the skew costs is the gap to it). The data is `SyntheticData.classification` with 4
/// classes, 4 informative inputs 1.5 apart, 2 redundant and 2 noise inputs and 4,000 rows
/// (seed 1), 25% held out, standardised on the training rows, dealt to 4 participants two
/// class-sorted shards each; 40 rounds of 2 local SGD epochs (batch 16, rate 0.05, L2 0.001: a
/// federation's default policy), each optimiser with its defaults.
struct OptimiserBench {
    let quick: Bool

    /// The comparison for `kind`: each optimiser's final accuracy on the skewed split, and FedAvg's on the iid one.
    static func compare(
        kind: ModelArchitecture.Kind,
        rounds: Int = 40,
        rows: Int = 4_000
    ) throws -> (skewed: [(ServerOptimiser.Kind, Double)], iid: Double) {
        let data = SyntheticData.classification(rows: rows, classes: 4, informative: 4, separation: 1.5, seed: 1)
        let (trainRows, testRows) = data.stratifiedSplit(testFraction: 0.25, seed: 1)
        let standardisation = Standardisation(of: data.subset(trainRows))
        let train = standardisation.apply(to: data.subset(trainRows))
        let test = standardisation.apply(to: data.subset(testRows))
        let architecture = try ModelArchitecture(kind: kind, inputs: data.inputCount, classes: 4, hidden: 64)
        let local = TrainingSettings(optimizer: .sgd, epochs: 2, batchSize: 16, learningRate: 0.05, l2: 0.001, seed: 1)
        func final(_ split: FederatedSimulation.Split, _ server: ServerOptimiser) throws -> Double {
            try FederatedSimulation.run(
                train: train,
                test: test,
                participants: 4,
                split: split,
                architecture: architecture,
                local: local,
                rounds: rounds,
                server: server
            ).curve.last!.accuracy
        }
        return (
            try ServerOptimiser.Kind.allCases.map { ($0, try final(.labelSkew, ServerOptimiser($0))) },
            try final(.iid, ServerOptimiser(.fedavg))
        )
    }

    func run() throws -> BenchReport {
        var report = BenchReport(area: "optimisers")
        for kind in [ModelArchitecture.Kind.mlp, .softmax] {
            let (skewed, iid) = try Self.compare(kind: kind, rounds: quick ? 5 : 40)
            for (optimiser, accuracy) in skewed {
                report.cases.append(
                    BenchCase(
                        name: "\(kind.rawValue)-\(optimiser.rawValue)",
                        params: [("split", "label-skew"), ("participants", "4"), ("rounds", quick ? "5" : "40")],
                        value: accuracy,
                        unit: "accuracy",
                        floor: iid
                    )
                )
            }
        }
        return report
    }
}
