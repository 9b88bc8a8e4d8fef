import CairnAudit
import CairnModels
import CairnWire
import Foundation
import Testing

@testable import CairnBroker
@testable import CairnExchange

/// The statistics round: fixed-point limbs, the pooled standardisation, refusals of forged sums,
/// and a live federation that pools its statistics before it trains.
@Suite struct PooledStatisticsTests {
    /// Limbs summed word by word (as the masked sum adds them) give the exact sum of the values,
    /// negative ones included, and carries across limbs resolve.
    @Test func limbsSumExactly() {
        let values: [Double] = [1.5, -2.25, 1024, -0.125, 0x1p46, -3, 0x1p-40, 0]
        var sum = [UInt32](repeating: 0, count: FeatureStatistics.limbs)
        for v in values {
            for (k, limb) in FeatureStatistics.fixedPoint(v).enumerated() {
                #expect(limb <= 0xFFFF)
                sum[k] &+= limb
            }
        }
        #expect(FeatureStatistics.value(ofLimbs: sum[...]) == values.reduce(0, +))
        #expect(FeatureStatistics.value(ofLimbs: FeatureStatistics.fixedPoint(-0x1p100)[...]) == -0x1p100)
        #expect(FeatureStatistics.value(ofLimbs: FeatureStatistics.fixedPoint(0x1.8p-30)[...]) == 0x1.8p-30)
    }

    /// Three participants' inputs summed give the standardisation of their rows pooled, as
    /// `train` computes it on one file; forged sums are refused with the reason.
    @Test func pooledStandardisationIsTheUnionsOne() throws {
        let parts = (0..<3).map { Self.rows(node: $0) }
        var sum = [UInt32](repeating: 0, count: FeatureStatistics.dimension(inputs: 2))
        var rows: UInt32 = 0
        for part in parts {
            let input = try FeatureStatistics.input(of: part, maximumRows: 1000)
            for i in sum.indices { sum[i] &+= input.words[i] }
            rows += input.rows
        }
        #expect(rows == 150)
        let pooled = try FeatureStatistics.standardisation(
            sum: sum,
            rows: rows,
            contributors: 3,
            maximumRows: 1000,
            inputs: 2
        )
        let union = Dataset(
            schema: Fixture.schema,
            features: parts.flatMap(\.features),
            labels: parts.flatMap(\.labels)
        )
        let local = Standardisation(of: union)
        for j in 0..<2 {
            #expect(abs(pooled.mean[j] - local.mean[j]) <= 1e-6 * abs(local.mean[j]))
            #expect(abs(pooled.scale[j] - local.scale[j]) <= 1e-6 * local.scale[j])
        }
        #expect(pooled.mean[0] > 10)  // the nodes' data is far from the schema's middle

        /// The refusal of `forged` as the round's sum, if any.
        func refusal(_ forged: [UInt32]) -> String? {
            #expect(throws: ExchangeError.self) {
                try FeatureStatistics.standardisation(
                    sum: forged,
                    rows: rows,
                    contributors: 3,
                    maximumRows: 1000,
                    inputs: 2
                )
            }?.message
        }
        var forged = sum
        forged[5] = 3 * 0xFFFF + 1
        #expect(
            refusal(forged)
                == "word 5 of the statistics sum is beyond what 3 inputs' 16-bit limbs reach: an input was forged; the statistics are not applied"
        )
        let forgedMessage =
            "the pooled sums of input 0 cannot come from 150 rows of values within ±2^47: an input was forged; the statistics are not applied"
        // A negative sum of squares, a sum beyond 150 clipped values, and a sum its squares cannot
        // hold (S² > N·Q).
        for (sum0, squares0) in [(nil, -5.0), (1e30, 1e35), (1e10, 1.0)] as [(Double?, Double)] {
            forged = sum
            if let sum0 { forged.replaceSubrange(0..<12, with: FeatureStatistics.fixedPoint(sum0)) }
            forged.replaceSubrange(12..<24, with: FeatureStatistics.fixedPoint(squares0))
            #expect(refusal(forged) == forgedMessage)
        }
        let count = #expect(throws: ExchangeError.self) {
            try FeatureStatistics.standardisation(sum: sum, rows: 3001, contributors: 3, maximumRows: 1000, inputs: 2)
        }
        #expect(count?.message.hasPrefix("the inputs declare 3001 rows in all") == true)
    }

    /// A federation that pools statistics runs a statistics round before its first training
    /// round: every node says so, the round is not one of the training rounds asked for, the
    /// stored standardisation is the pooled one of the three nodes' rows, and training rounds
    /// then use it (the model's digest covers it).
    @Test func aFederationPoolsItsStatisticsBeforeItTrains() async throws {
        let run = try await Self.statisticsThenTwoRounds(ServerOptimiser(.fedadam)) { Self.rows(node: $0) }
        // FedAdam's m and v for the 9 parameters, kept for the latest round only; the statistics
        // round stored none.
        #expect(run.optimiserStates == [[3, 18]])
        let parts = (0..<3).map { Self.rows(node: $0) }
        let local = Standardisation(
            of: Dataset(schema: Fixture.schema, features: parts.flatMap(\.features), labels: parts.flatMap(\.labels))
        )
        #expect(run.standardisations.count == 4)
        #expect(run.standardisations[0] == nil)
        #expect(
            run.standardisations[1] == run.standardisations[2] && run.standardisations[2] == run.standardisations[3]
        )
        let pooled = try #require(run.standardisations[1])
        for j in 0..<2 {
            #expect(abs(pooled.mean[j] - local.mean[j]) <= 1e-6 * abs(local.mean[j]))
            #expect(abs(pooled.scale[j] - local.scale[j]) <= 1e-6 * local.scale[j])
        }
        // Every node scored the two trained models, not the untrained one of the statistics round.
        #expect(
            run.entries.filter { $0.action == "model.evaluate" }.map(\.objectID).sorted() == [
                "delta#2", "delta#2", "delta#2", "delta#3", "delta#3", "delta#3",
            ]
        )
        let opened = run.entries.filter { $0.action == "round.open" }.map(\.reason)
        #expect(opened.map { $0.hasSuffix(", feature statistics") } == [true, false, false])
        #expect(
            run.entries.filter { $0.action == "round.aggregate" }.map(\.reason) == [
                "3 inputs, 150 samples, feature statistics", "3 inputs, 150 samples", "3 inputs, 150 samples",
            ]
        )
    }

    /// The broker's step with a server optimiser: a round's sum of quantised updates moves the
    /// model by FedAvgM's rule (η = 0.3, β₁ = 0.9), the momentum carried to the next round.
    @Test func theBrokerAppliesTheServerOptimiser() throws {
        var policy = RoundPolicy(serverOptimiser: ServerOptimiser(.fedavgm))
        policy.maximumSampleCount = 100
        let architecture = try ModelArchitecture(kind: .logistic, inputs: 1, classes: 2)
        let global = try Model(architecture: architecture, parameters: [1, -1])
        // Two inputs of 50 rows each whose updates are (0.5, −0.25) and (0.25, 0): weighted by
        // 50/100 and quantised exactly (multiples of 2^-20), their mean is (0.375, −0.125).
        let scale = policy.scale
        let sum = [0.5 * 0.5 + 0.25 * 0.5, -0.25 * 0.5].map { UInt32(bitPattern: Int32(($0 * scale).rounded())) }
        var model = global
        var state = ServerOptimiser(.fedavgm).initialState(parameters: 2)
        try FederatedModel.apply(sum: sum, sampleCount: 100, to: &model, state: &state, policy: policy)
        let first: [Float] = [0.375, -0.125]
        let moved: [Float] = [1.1125, -1.0375]  // x + 0.3 · m
        #expect(state == first)
        #expect(zip(model.parameters, moved).allSatisfy { abs($0 - $1) < 1e-6 })
        try FederatedModel.apply(sum: sum, sampleCount: 100, to: &model, state: &state, policy: policy)
        let second: [Float] = [0.7125, -0.2375]  // 0.9 · m + Δ
        #expect(zip(state, second).allSatisfy { abs($0 - $1) < 1e-6 })
        let wrong = #expect(throws: ExchangeError.self) {
            var short: [Float] = []
            try FederatedModel.apply(sum: sum, sampleCount: 100, to: &model, state: &short, policy: policy)
        }
        #expect(wrong?.message == "the server optimiser's state has 0 values, not 2")
    }

    /// Three nodes, each scoring every model on its own rows, in a federation that pools its
    /// statistics and then trains two rounds with `optimiser`: every node reports exactly the
    /// statistics round and both training rounds as including its input, and every round finishes.
    static func statisticsThenTwoRounds(
        _ optimiser: ServerOptimiser,
        data: @escaping @Sendable (Int) -> Dataset
    ) async throws -> AlteredAnswerTests.Run {
        let run = try await AlteredAnswerTests.threeNodes(
            deadlines: PhaseDeadlines(advertise: 600, share: 600, mask: 600, check: 600, unmask: 600),
            rounds: 2,
            standardisation: .pooled,
            serverOptimiser: optimiser,
            evaluate: true,
            data: data,
            alter: nil
        )
        for (i, lines) in run.reports {
            #expect(
                lines == [
                    "statistics 1: included", "finished 2: included, 1 counted", "finished 3: included, 2 counted",
                    "stopped, 2 counted",
                ],
                "node \(i): \(lines)"
            )
        }
        #expect(run.rounds == ["finished", "finished", "finished"])
        return run
    }

    /// 50 rows per node whose inputs sit far from the schema's [0, 1]: node `i` adds `10 · (i+1)`
    /// to the first input and scales the second by `i + 1`.
    static func rows(node: Int) -> Dataset {
        var features: [Float] = []
        var labels: [Int32] = []
        for row in 0..<50 {
            features += [Float(10 * (node + 1)) + Float(row % 7) / 7, Float(node + 1) * Float(row % 5) / 5]
            labels.append(Int32((row + node) % 3))
        }
        return Dataset(schema: Fixture.schema, features: features, labels: labels)
    }
}
