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
    /// With early stopping, the epochs its validation run chose (the model is then trained on
    /// every training row for that many); nil without.
    public var stoppedAfter: Int?
    /// The held-out rows, as 0-based positions among the file's data rows, so another tool can
    /// evaluate on exactly the same split.
    public var testRows: [Int]
    /// What makes the result less than it seems, for a person: a class with no rows, no rows
    /// held out although some were asked for, held-out rows that repeat training rows.
    public var warnings: [String] = []

    /// Runs it. Throws ``DataError/Code/invalidData`` (and trains nothing) when the data fails
    /// its schema.
    ///
    /// With `settings.patience`, training first runs on nine tenths of the training rows
    /// (stratified) while the log loss on the other tenth is monitored, stops on its plateau, and
    /// then trains a fresh model on every training row for the number of epochs that scored best
    /// (at most `settings.epochs`); with fewer than 10 training rows the training loss is monitored.
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
        var final = settings
        var stoppedAfter: Int?
        if (settings.patience ?? 0) > 0 {
            let (fit, check) = train.stratifiedSplit(testFraction: 0.1, seed: settings.seed)
            let enough = fit.count > 0 && check.count > 0
            var probe = model
            let curve = try Trainer.train(
                &probe,
                on: enough ? train.subset(fit) : train,
                settings: settings,
                validation: enough ? train.subset(check) : nil
            )
            stoppedAfter = curve.count
            final.epochs = curve.count
            final.patience = nil
        }
        let losses = try Trainer.train(&model, on: train, settings: final)
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
        var warnings = zip(schema.label.classes, report.classCounts).filter { $0.1 == 0 }.map {
            "class \($0.0) has no rows, so the model cannot learn to predict it"
        }
        if testFraction > 0, test.count == 0 {
            warnings.append(
                "no rows were held out (\(data.count) rows × \(testFraction) rounds to none per class): there is no held-out score"
            )
        }
        let repeats = data.repeats(of: trainRows, among: testRows)
        if repeats > 0 {
            warnings.append(
                "\(repeats) of \(testRows.count) held-out rows repeat a training row exactly, so the held-out score overstates how the model does on new rows"
            )
        }
        return LocalTraining(
            file: try ModelFile(model: model, schema: schema, standardisation: standardisation),
            report: report,
            trainEvaluation: trainEvaluation,
            testEvaluation: testEvaluation,
            losses: losses,
            stoppedAfter: stoppedAfter,
            testRows: testRows.sorted(),
            warnings: warnings
        )
    }
}
