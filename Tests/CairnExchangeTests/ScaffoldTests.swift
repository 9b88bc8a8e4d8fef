import CairnAudit
import CairnModels
import CairnWire
import Foundation
import Testing

@testable import CairnBroker
@testable import CairnExchange
@testable import CairnNode

/// SCAFFOLD's control variates as a second summed vector: the broker's step, the model file and
/// digest that carry `c`, a node's `cᵢ` kept only for rounds that summed it, and a live
/// federation.
@Suite struct ScaffoldTests {
    /// A round's sum holds the updates, then the control variates' changes: the model moves by
    /// the mean update (η = 1) and `c` by `|S|/N` of the mean change.
    @Test func theBrokerMovesTheModelAndTheControlVariate() throws {
        var policy = RoundPolicy(serverOptimiser: ServerOptimiser(.scaffold))
        policy.maximumSampleCount = 100
        let architecture = try ModelArchitecture(kind: .logistic, inputs: 1, classes: 2)
        // Two inputs of 50 rows each: updates (0.5, −0.25) and (0.25, 0), control changes (1, 0.5)
        // and (−0.5, 0.25), each weighted by 50/100 and quantised exactly.
        let halves: [Double] = [0.5 * 0.5 + 0.25 * 0.5, -0.25 * 0.5, 1 * 0.5 - 0.5 * 0.5, 0.5 * 0.5 + 0.25 * 0.5]
        let sum = halves.map { UInt32(bitPattern: Int32(($0 * Double(policy.scale)).rounded())) }
        var model = try Model(architecture: architecture, parameters: [1, -1])
        var state = ServerOptimiser(.scaffold).initialState(parameters: 2)
        #expect(state == [0, 0])
        // Two of the round's three participants were summed.
        try FederatedModel.apply(sum: sum, sampleCount: 100, to: &model, state: &state, policy: policy, fraction: 2 / 3)
        #expect(model.parameters == [1.375, -1.125])
        #expect(zip(state, [0.25 * 2 / 3, 0.375 * 2 / 3] as [Float]).allSatisfy { abs($0 - $1) < 1e-7 })
        let short = #expect(throws: ExchangeError.self) {
            try FederatedModel.apply(sum: Array(sum[..<2]), sampleCount: 100, to: &model, state: &state, policy: policy)
        }
        #expect(short?.message == "the sum has 2 words; the round needs 4")
        #expect(try FederatedModel.dimension(of: Fixture.spec("s", policy: policy)) == 18)
    }

    /// `c` travels in the round's model file as `scaffold.control` and is covered by the model's
    /// digest in a SCAFFOLD federation; a model without it there, or with it elsewhere, is
    /// refused. A licensed file (no control variate) reads as before.
    @Test func theControlVariateIsInTheFileAndTheDigest() throws {
        let scaffold = Fixture.spec("s", policy: RoundPolicy(serverOptimiser: ServerOptimiser(.scaffold)))
        let plain = Fixture.spec("p", policy: RoundPolicy())
        let model = try FederatedModel.initialModel(of: scaffold)
        let standardisation = FederatedModel.standardisation(of: scaffold, pooled: nil)
        let control = (0..<model.parameters.count).map { Float($0) / 8 }
        let file = try ModelFile(
            model: model,
            schema: scaffold.schema,
            standardisation: standardisation,
            control: control
        )
        let back = try ModelFile.decode(try file.encoded())
        #expect(back.control == control && back.model.parameters == model.parameters)
        let licensed = try ModelFile(model: model, schema: scaffold.schema, standardisation: standardisation)
        #expect(try ModelFile.decode(try licensed.encoded()).control == nil)
        let covered = try FederatedModel.digest(model, standardisation: standardisation, control: control, of: scaffold)
        #expect(covered == (try FederatedModel.digest(model, control: control)))
        var other = control
        other[0] = 1
        #expect(
            covered
                != (try FederatedModel.digest(model, standardisation: standardisation, control: other, of: scaffold))
        )
        #expect(covered != (try FederatedModel.digest(model)))
        let missing = #expect(throws: ExchangeError.self) {
            try FederatedModel.digest(model, standardisation: standardisation, of: scaffold)
        }
        #expect(missing?.message == "the model of a SCAFFOLD federation carries no control variate")
        let extra = #expect(throws: ExchangeError.self) {
            try FederatedModel.digest(model, standardisation: standardisation, control: control, of: plain)
        }
        #expect(extra?.message == "the model carries a control variate, but the federation does not use SCAFFOLD")
        let wrong = #expect(throws: DataError.self) {
            try ModelFile(model: model, schema: scaffold.schema, standardisation: standardisation, control: [1])
        }
        #expect(wrong?.message == "the control variate does not match the model's parameters")
    }

    /// A node's pending `cᵢ⁺` becomes its `cᵢ` only when the broker's record shows that its round
    /// summed the node's input; otherwise it is dropped and `cᵢ` stays. A pending one from the
    /// round being trained is left alone (a restart recomputes it).
    @Test func aPendingControlVariateIsKeptOnlyForASummedRound() throws {
        let folder = FileManager.default.temporaryDirectory.path + "/scaffold-\(UInt32.random(in: 0...UInt32.max))"
        try DurableFile.makeDirectory(folder)
        defer { _ = try? FileManager.default.removeItem(atPath: folder) }
        #expect(try ControlVariateFiles.settle(in: folder, before: 1, summed: [], parameters: 2) == [0, 0])
        try ControlVariateFiles.write([1, 2], round: 1, to: ControlVariateFiles.pending, in: folder)
        #expect(try ControlVariateFiles.settle(in: folder, before: 1, summed: [], parameters: 2) == [0, 0])
        #expect(DurableFile.exists(folder + "/scaffold.pending"))
        #expect(try ControlVariateFiles.settle(in: folder, before: 2, summed: [1], parameters: 2) == [1, 2])
        #expect(!DurableFile.exists(folder + "/scaffold.pending"))
        try ControlVariateFiles.write([5, 6], round: 2, to: ControlVariateFiles.pending, in: folder)
        #expect(try ControlVariateFiles.settle(in: folder, before: 4, summed: [1, 3], parameters: 2) == [1, 2])
        #expect(!DurableFile.exists(folder + "/scaffold.pending"))
        #expect(try ControlVariateFiles.read(ControlVariateFiles.current, in: folder, parameters: 2)?.round == 1)
        let bad = #expect(throws: WireError.self) {
            try ControlVariateFiles.read(ControlVariateFiles.current, in: folder, parameters: 3)
        }
        #expect(bad != nil)
    }

    /// Local training with SCAFFOLD: one full-batch SGD step moves the model by the gradient
    /// corrected by `c − cᵢ`, and `cᵢ⁺` is the full-batch gradient at the global model.
    @Test func localTrainingIsCorrectedByTheControlVariates() throws {
        let data = Fixture.rows
        let architecture = try ModelArchitecture(kind: .softmax, inputs: 2, classes: 3)
        let global = Model(architecture: architecture, seed: 3)
        let settings = TrainingSettings(optimizer: .sgd, epochs: 1, batchSize: 60, learningRate: 0.5, l2: 0, seed: 1)
        var gradient: [Float] = []
        _ = global.lossAndGradient(data, rows: 0..<60, l2: 0, gradient: &gradient)
        let server = (0..<9).map { Float($0) / 10 }
        let own = (0..<9).map { Float(9 - $0) / 20 }
        let (local, next) = try Trainer.localRound(from: global, on: data, settings: settings, control: (server, own))
        for i in 0..<9 {
            let expected = global.parameters[i] - 0.5 * (gradient[i] + server[i] - own[i])
            #expect(abs(local.parameters[i] - expected) < 1e-6)
            #expect(abs(next![i] - gradient[i]) < 1e-6)
        }
        #expect(try Trainer.localRound(from: global, on: data, settings: settings).control == nil)
    }

    /// Three nodes in a SCAFFOLD federation that also pools statistics: the statistics round,
    /// then two training rounds of 18-word inputs, each node scoring each trained model; the
    /// broker's `c` after round 3 is the mean of the nodes' `cᵢ` from round 3 (equal rows), each
    /// node keeps round 2's as its `cᵢ` and round 3's pending, to within the quantisation of two
    /// rounds.
    @Test func aScaffoldFederationTrains() async throws {
        let run = try await PooledStatisticsTests.statisticsThenTwoRounds(ServerOptimiser(.scaffold)) {
            Self.skewed(node: $0)
        }
        #expect(run.optimiserStates == [[3, 9]])
        let opened = run.entries.filter { $0.action == "round.open" }.count
        #expect(opened == 3)
        // The nodes' digests of the trained models (over `c` too) are the broker's: every score
        // was accepted.
        #expect(run.entries.filter { $0.action == "model.evaluate" }.count == 6)
        var pending: [[Float]] = []
        for i in 0..<3 {
            let files = try #require(run.controlFiles[i])
            func decode(_ name: String) throws -> (round: UInt64, values: [Float]) {
                var reader = ByteReader(try #require(files[name]))
                return (try reader.u64("round"), try reader.u32Words(9, "c").map(Float.init(bitPattern:)))
            }
            #expect(try decode("scaffold.control").round == 2)
            let last = try decode("scaffold.pending")
            #expect(last.round == 3)
            pending.append(last.values)
        }
        let c = try #require(run.optimiserState)
        let policy = RoundPolicy()
        let tolerance = 2 * 3 / policy.scale * Float(policy.maximumSampleCount) / 150
        let means = (0..<9).map { j in (pending[0][j] + pending[1][j] + pending[2][j]) / 3 }
        for j in 0..<9 {
            #expect(abs(c[j] - means[j]) <= tolerance, "c[\(j)] = \(c[j]), mean cᵢ = \(means[j])")
        }
        // Not a test of zeros: each node's gradient pulls toward its own class.
        #expect(pending.joined().contains { abs($0) > 10 * tolerance }, "\(pending)")
        #expect(means.contains { abs($0) > 2 * tolerance }, "\(means), tolerance \(tolerance)")
    }

    /// 50 rows for node `i`, 40 of them of class `i` (label skew): the first input tells the class
    /// (its middle, give or take 0.1), the second does not.
    static func skewed(node: Int) -> Dataset {
        var features: [Float] = []
        var labels: [Int32] = []
        for row in 0..<50 {
            let label = row < 40 ? node : row % 3
            features += [Float(label) / 2 + Float(row % 5 - 2) / 20, Float(row % 7) / 7]
            labels.append(Int32(label))
        }
        return Dataset(schema: Fixture.schema, features: features, labels: labels)
    }
}
