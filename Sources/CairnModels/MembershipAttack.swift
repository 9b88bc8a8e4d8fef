import CairnWire

/// Participant-level membership inference against a released model: what differential privacy
/// is for, measured. Three participants hold iid rows of a 4-class synthetic set; a fourth holds
/// a distinctive slice (rows of another draw whose labels are rotated by one class). Each trial
/// runs a simulated federation with the fourth participant (IN) or without it (OUT), from its own
/// seed, and releases the final model. The attacker sees only that model: it guesses IN when the
/// model's log loss on the distinctive slice is below a threshold, the one that separates best
/// on the first half of the trials; the advantage is the true-positive rate less the
/// false-positive rate on the other half. `(ε, δ)`-DP bounds it by `tanh(ε/2) + δ`.
public enum MembershipAttack {
    /// The attack's figures on the evaluation half of the trials.
    public struct Result: Sendable, Codable, Hashable {
        /// Trials of each world the rates are measured on.
        public var trials: Int
        /// IN trials guessed IN.
        public var truePositiveRate: Double
        /// OUT trials guessed IN.
        public var falsePositiveRate: Double
        /// `truePositiveRate − falsePositiveRate`.
        public var advantage: Double { truePositiveRate - falsePositiveRate }
        /// The advantage's standard error (the two rates' binomial errors combined).
        public var standardError: Double {
            let n = Double(trials)
            let (t, f) = (truePositiveRate, falsePositiveRate)
            return (t * (1 - t) / n + f * (1 - f) / n).squareRoot()
        }
    }

    /// The experiment's mechanism at noise multiplier `z`: updates clipped to L2 norm 1, the noise
    /// of the three participants that are always there making the declared noise, the sum
    /// divided by the planned four.
    public static func privacy(noiseMultiplier z: Double) -> FederatedSimulation.Privacy {
        var p = FederatedSimulation.Privacy(clip: 1, noiseMultiplier: z)
        p.contributors = 3
        p.denominator = 4
        return p
    }

    /// The experiment's data: the three participants' rows, the distinctive slice and the model.
    public static func setup() throws -> (parts: [Dataset], slice: Dataset, architecture: ModelArchitecture) {
        let base = SyntheticData.classification(rows: 600, classes: 4, informative: 4, separation: 1.5, seed: 1)
        var other = SyntheticData.classification(rows: 60, classes: 4, informative: 4, separation: 1.5, seed: 2)
        other.labels = other.labels.map { ($0 + 1) % 4 }
        let standardisation = Standardisation(of: base)
        let rows = standardisation.apply(to: base)
        let parts = try FederatedSimulation.partition(rows, participants: 3, split: .iid, seed: 1).map {
            rows.subset($0)
        }
        let architecture = try ModelArchitecture(kind: .softmax, inputs: base.inputCount, classes: 4)
        return (parts, standardisation.apply(to: other), architecture)
    }

    /// `2 · trials` federations of each world (IN and OUT) of `rounds` rounds of FedAvg (one local
    /// SGD epoch, batch 16, rate 0.1), with `privacy` (its `contributors` and `denominator` should
    /// be 3 and 4: the noise of the three that are always there, and the planned four) or none;
    /// the first `trials` of each world choose the threshold, the other `trials` measure it.
    public static func run(
        trials: Int,
        rounds: Int,
        privacy: FederatedSimulation.Privacy?,
        seed: UInt64
    ) throws -> Result {
        guard trials >= 1 else { throw DataError(.invalidParameters, "there must be at least one trial") }
        let (parts, slice, architecture) = try setup()
        func loss(_ withSlice: Bool, _ trial: Int) throws -> Double {
            let local = TrainingSettings(
                optimizer: .sgd,
                epochs: 1,
                batchSize: 16,
                learningRate: 0.1,
                l2: 0.001,
                seed: seed &+ UInt64(trial) &* 2 &+ (withSlice ? 1 : 0)
            )
            let (model, _) = try FederatedSimulation.run(
                parts: withSlice ? parts + [slice] : parts,
                test: slice,
                architecture: architecture,
                local: local,
                rounds: rounds,
                privacy: privacy
            )
            return Evaluation(
                probabilities: model.probabilities(slice.features),
                labels: slice.labels,
                classes: 4
            ).logLoss
        }
        let inside = try (0..<2 * trials).map { try loss(true, $0) }
        let outside = try (0..<2 * trials).map { try loss(false, $0) }
        // The threshold: the midpoint between two calibration losses that best separates them.
        let calibration = (Array(inside[..<trials]), Array(outside[..<trials]))
        let candidates = (calibration.0 + calibration.1).sorted()
        var best = (gap: -2.0, threshold: 0.0)
        for (a, b) in zip(candidates, candidates.dropFirst() + [candidates.last! + 1]) {
            let threshold = (a + b) / 2
            let tpr = Double(calibration.0.filter { $0 < threshold }.count) / Double(trials)
            let fpr = Double(calibration.1.filter { $0 < threshold }.count) / Double(trials)
            if tpr - fpr > best.gap { best = (tpr - fpr, threshold) }
        }
        let measured = (inside[trials...], outside[trials...])
        return Result(
            trials: trials,
            truePositiveRate: Double(measured.0.filter { $0 < best.threshold }.count) / Double(trials),
            falsePositiveRate: Double(measured.1.filter { $0 < best.threshold }.count) / Double(trials)
        )
    }
}
