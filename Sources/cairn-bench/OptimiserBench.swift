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

    func run() throws -> BenchReport {
        var report = BenchReport(area: "optimisers")
        for kind in [ModelArchitecture.Kind.mlp, .softmax] {
            let data = SyntheticData.classification(rows: 4_000, classes: 4, informative: 4, separation: 1.5, seed: 1)
            let (skewed, iid) = try FederatedSimulation.compareServerOptimisers(
                data: data,
                architecture: try ModelArchitecture(kind: kind, inputs: data.inputCount, classes: 4, hidden: 64),
                participants: 4,
                split: .labelSkew,
                local: TrainingSettings(
                    optimizer: .sgd,
                    epochs: 2,
                    batchSize: 16,
                    learningRate: 0.05,
                    l2: 0.001,
                    seed: 1
                ),
                rounds: quick ? 5 : 40
            )
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
