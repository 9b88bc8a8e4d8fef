import CairnWire

/// Centralised (local) training of one participant's validated data, start to finish: validate,
/// split off a stratified held-out part, standardise from the training part, train, evaluate.
public struct LocalTraining: Sendable {
    /// The model file to write: model, schema and standardisation.
    public var file: ModelFile
    /// The validation report of the data file.
    public var report: ValidationReport
    /// Metrics on the training part.
    public var trainEvaluation: Evaluation
    /// Metrics on the held-out part (nil when `testFraction` is 0).
    public var testEvaluation: Evaluation?
    /// The mean training loss of each epoch.
    public var losses: [Double]
    /// The held-out rows, as 0-based positions among the file's data rows, so another tool can
    /// evaluate on exactly the same split.
    public var testRows: [Int]

    /// Runs it. Throws ``DataError/Code/invalidData`` (and trains nothing) when the data fails
    /// its schema.
    public static func run(
        csv: String,
        schema: DataSchema,
        kind: ModelArchitecture.Kind,
        hidden: Int,
        settings: TrainingSettings,
        testFraction: Double
    ) throws -> LocalTraining {
        guard testFraction >= 0, testFraction < 1 else {
            throw DataError(.invalidParameters, "the held-out fraction must be at least 0 and below 1")
        }
        try settings.validate()
        let (data, report) = try DataValidator.load(csv, schema: schema)
        let architecture = try ModelArchitecture(
            kind: kind,
            inputs: data.inputCount,
            classes: data.classCount,
            hidden: hidden
        )
        let (trainRows, testRows) = data.stratifiedSplit(testFraction: testFraction, seed: settings.seed)
        let standardisation = Standardisation(of: data.subset(trainRows))
        let train = standardisation.apply(to: data.subset(trainRows))
        let test = standardisation.apply(to: data.subset(testRows))
        var model = Model(architecture: architecture, seed: settings.seed)
        let losses = try Trainer.train(&model, on: train, settings: settings)
        let trainEvaluation = Evaluation(
            probabilities: model.probabilities(train.features),
            labels: train.labels,
            classes: architecture.classes
        )
        let testEvaluation =
            test.count == 0
            ? nil
            : Evaluation(
                probabilities: model.probabilities(test.features),
                labels: test.labels,
                classes: architecture.classes
            )
        return LocalTraining(
            file: try ModelFile(model: model, schema: schema, standardisation: standardisation),
            report: report,
            trainEvaluation: trainEvaluation,
            testEvaluation: testEvaluation,
            losses: losses,
            testRows: testRows.sorted()
        )
    }
}
