import ArgumentParser
import CairnExchange
import CairnModels
import CairnNode
import CairnWire
import Foundation

/// `--model` values.
enum ModelKindArgument: String, ExpressibleByArgument, CaseIterable {
    case logistic, softmax, mlp
    var kind: ModelArchitecture.Kind { ModelArchitecture.Kind(rawValue: rawValue)! }
}

/// `--optimizer` values.
enum OptimizerArgument: String, ExpressibleByArgument, CaseIterable {
    case sgd, adam
    var optimizer: TrainingSettings.Optimizer { TrainingSettings.Optimizer(rawValue: rawValue)! }
    /// The step size when none is given: 0.01 for Adam, 0.05 for SGD.
    var defaultRate: Float { self == .adam ? 0.01 : 0.05 }
}

/// `--standardise` values.
enum StandardisingArgument: String, ExpressibleByArgument, CaseIterable {
    case pooled, schema
    var value: RoundPolicy.Standardising { RoundPolicy.Standardising(rawValue: rawValue)! }
}

/// `--server-optimiser` values.
enum ServerOptimiserArgument: String, ExpressibleByArgument, CaseIterable {
    case fedavg, fedavgm, fedadagrad, fedadam, fedyogi, scaffold
    var kind: ServerOptimiser.Kind { ServerOptimiser.Kind(rawValue: rawValue)! }
}

extension NodeCommand {
    /// `cairn-node data`: local data checks.
    struct DataCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "data",
            abstract: "Check local data against a federation's schema.",
            subcommands: [Check.self]
        )
    }

    /// `cairn-node data check`.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a CSV file against a schema and print the report.",
            discussion: """
                Reads the file once, in bounded memory, and never modifies it. Reports the row count, \
                class balance, and every missing value, wrong type, value out of range, unknown category \
                or class, malformed row and duplicate row, with row and column numbers (the header is \
                row 1). Exits with status 1 when the data fails the schema (duplicates are only warnings). \
                Without --schema, the schema is the federation's, fetched from the broker this node \
                enrolled with (the keystore is unlocked to sign the request).
                """
        )

        @Argument(help: ArgumentHelp("The CSV file (header row first).", valueName: "csv"))
        var csv: String

        @Option(
            help: ArgumentHelp(
                "The schema (JSON). Default: the enrolled federation's, from its broker.",
                valueName: "file"
            )
        )
        var schema: String?

        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice

        @Flag(help: "Print the report as JSON instead of text.")
        var json = false

        func run() async throws {
            let schema: DataSchema
            if let path = self.schema {
                schema = try DataSchema.load(from: path)
            } else {
                schema = try await enrolledSchema()
            }
            let report = try DataValidator.check(csv, schema: schema)
            print(json ? try encodeJSON(report) : report.text)
            if !report.passed { throw ExitCode(1) }
        }

        /// The schema of the federation this node enrolled in, from its broker.
        private func enrolledSchema() async throws -> DataSchema {
            guard try !Enrolment.all(home: home.resolved).isEmpty else {
                throw CLIError(
                    "\(home.resolved) has not enrolled with a broker, so there is no federation schema to fetch: give the schema with --schema, or enrol first (cairn-node enroll)"
                )
            }
            let enrolment = try choice.held(home).enrolment
            let identity = try NodeIdentity.unlock(
                home: home.resolved,
                passphrase: try passphrase.read(newKeystore: false)
            )
            let info: FederationInfo = try await cliCall(wait.waiting) {
                let (client, _) = try await enrolment.connect(identity: identity.identity)
                return try await client.json("GET", "/v1/federations/\(enrolment.federation)")
            }
            FileHandle.standardError.write(
                Data("schema: federation \(enrolment.federation)'s, from \(enrolment.broker)\n".utf8)
            )
            return info.spec.schema
        }
    }

    /// `cairn-node train`: centralised local training.
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train a model on local data and write it with its metrics.",
            discussion: """
                Validates the CSV against the schema first and trains nothing if it fails. Holds out a \
                stratified part of the rows for evaluation, standardises inputs with statistics of the \
                training part, trains deterministically for the seed, and writes the model (safetensors, \
                readable by Python's safetensors and numpy) and <output>.metrics.json (metrics on both \
                parts, the losses, the settings and the held-out rows). By default training stops when \
                it has converged: a tenth of the training rows is set aside, training on the rest stops \
                once their log loss has not improved for --patience epochs (at most --epochs), and the \
                model is then trained on every training row for the number of epochs that scored best. \
                Training on a federation's rounds comes with the broker.
                """
        )

        @OptionGroup var input: DataInput

        @Option(help: ArgumentHelp("Where to write the model (safetensors).", valueName: "file"))
        var output: String

        @OptionGroup var shape: ModelOptions

        @Option(help: "sgd or adam.")
        var optimizer: OptimizerArgument = .adam

        @Option(help: "The most passes over the training rows (exactly this many with --patience 0).")
        var epochs = 1000

        @Option(
            help: """
                Stop when the validation loss has not improved for this many epochs (0: no early \
                stopping, train --epochs epochs).
                """
        )
        var patience = 30

        @Option(help: "Rows per mini-batch.")
        var batchSize = 32

        @Option(help: "Step size (default 0.01 for adam, 0.05 for sgd).")
        var learningRate: Float?

        @Option(help: "Fraction of rows held out for evaluation (0 to hold out none).")
        var testFraction = 0.25

        @Flag(help: "Replace an existing output file.")
        var overwrite = false

        func validate() throws {
            guard (0..<1).contains(testFraction) else {
                throw ValidationError("--test-fraction must be at least 0 and below 1")
            }
        }

        func run() throws {
            let schemaFile = try DataSchema.load(from: input.schema)
            let kind = shape.kind(for: schemaFile)
            let settings = TrainingSettings(
                optimizer: optimizer.optimizer,
                epochs: epochs,
                batchSize: batchSize,
                learningRate: learningRate ?? optimizer.defaultRate,
                l2: shape.l2,
                seed: shape.seed,
                patience: patience
            )
            if !overwrite, DurableFile.exists(output) {
                throw CLIError("\(output) exists; pass --overwrite to replace it")
            }
            let result = try LocalTraining.run(
                csv: input.csv,
                schema: schemaFile,
                kind: kind,
                hidden: shape.hidden,
                settings: settings,
                testFraction: testFraction
            )
            for warning in result.warnings {
                FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
            }
            try result.file.write(to: output, replace: overwrite)
            let metrics = Metrics(
                architecture: result.file.model.architecture,
                settings: settings,
                losses: result.losses,
                train: result.trainEvaluation,
                test: result.testEvaluation,
                testRows: result.testRows
            )
            do {
                try DurableFile.write(
                    Array(try encodeJSON(metrics).utf8),
                    to: output + ".metrics.json",
                    mode: DurableFile.shared,
                    replace: true
                )
            } catch let error as WireError {
                throw CLIError(error.message)
            }
            let test = result.testEvaluation
            print(
                "trained \(kind.rawValue) on \(result.trainEvaluation.sampleCount) rows, \(result.losses.count) epochs"
                    + (result.stoppedAfter != nil ? " (where the validation loss stopped improving)" : "")
                    + "; final loss \(rounded(result.losses.last ?? 0))"
            )
            print(
                "train accuracy \(rounded(result.trainEvaluation.accuracy))"
                    + (test.map { ", held-out accuracy \(rounded($0.accuracy)) on \($0.sampleCount) rows" } ?? "")
            )
            print("wrote \(output) and \(output).metrics.json")
        }
    }
}

/// The model to train and the settings `train` and `simulate` share.
struct ModelOptions: ParsableArguments {
    @Option(help: "logistic (binary tasks), softmax or mlp. Default: logistic for binary tasks, else softmax.")
    var model: ModelKindArgument?

    @Option(help: "Hidden units of the MLP.")
    var hidden = 64

    @Option(help: "L2 penalty on weights: the loss gains l2/2 · Σ w².")
    var l2: Float = 0.001

    @Option(help: "Fixes the split, the initial weights, the order of rows and any partition.")
    var seed: UInt64 = 1

    func validate() throws {
        guard (1...4096).contains(hidden) else { throw ValidationError("--hidden must be 1 to 4096") }
    }

    /// The chosen family, or the task's default.
    func kind(for schema: DataSchema) -> ModelArchitecture.Kind {
        model?.kind ?? (schema.task == .binary ? .logistic : .softmax)
    }
}

/// A CSV file and the schema it must follow.
struct DataInput: ParsableArguments {
    @Argument(help: ArgumentHelp("The CSV file (header row first).", valueName: "csv"))
    var csv: String

    @Option(help: ArgumentHelp("The federation's schema (JSON).", valueName: "file"))
    var schema: String
}

/// What `cairn-node train` writes next to the model.
struct Metrics: Codable {
    var architecture: ModelArchitecture
    var settings: TrainingSettings
    var losses: [Double]
    var train: Evaluation
    var test: Evaluation?
    var testRows: [Int]
}

/// Pretty, key-sorted JSON.
func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Four decimals, for people.
func rounded(_ x: Double) -> String { String(Double(Int((x * 10_000).rounded())) / 10_000) }

extension NodeCommand {
    /// `cairn-node predict`: run a model file on a CSV.
    struct Predict: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a model file on a CSV file and write one prediction per row.",
            discussion: """
                The CSV is validated against the schema stored in the model file. New rows need no label \
                column; when the file has one, the accuracy and macro F1 on it are printed too. Writes a CSV \
                with, per data row, its row number (the header is row 1), the predicted class and the \
                probability of every class. An existing output file is refused before anything is read, \
                unless --overwrite.
                """
        )

        @Argument(help: ArgumentHelp("The CSV file (header row first).", valueName: "csv"))
        var csv: String

        @Option(help: ArgumentHelp("The model (safetensors written by cairn-node).", valueName: "file"))
        var model: String

        @Option(help: ArgumentHelp("Where to write the predictions (CSV).", valueName: "file"))
        var output: String

        @Flag(help: "Replace an existing output file.")
        var overwrite = false

        func run() throws {
            try refuseExisting([output], overwrite: overwrite)
            let file = try ModelFile.read(from: model)
            let (data, labelled) = try DataValidator.loadForPrediction(csv, schema: file.schema)
            let k = file.model.architecture.classes
            let p = try file.probabilities(data)
            let classes = file.schema.label.classes
            var lines = ["row,predicted," + classes.map { "p_" + csvField($0) }.joined(separator: ",")]
            for r in 0..<data.count {
                let row = p[(r * k)..<((r + 1) * k)]
                let best = row.indices.max { row[$0] < row[$1] }! - r * k
                lines.append("\(r + 2),\(csvField(classes[best])),\(row.map { "\($0)" }.joined(separator: ","))")
            }
            do {
                try DurableFile.write(
                    Array((lines.joined(separator: "\n") + "\n").utf8),
                    to: output,
                    mode: DurableFile.shared,
                    replace: overwrite
                )
            } catch {
                throw CLIError(error.message)
            }
            guard labelled else {
                print("wrote \(data.count) predictions to \(output)")
                return
            }
            let evaluation = Evaluation(probabilities: p, labels: data.labels, classes: k)
            print(
                "wrote \(data.count) predictions to \(output); on the file's labels: accuracy \(rounded(evaluation.accuracy)), macro F1 \(rounded(evaluation.macroF1))"
            )
        }
    }
}

/// Refuses, before any work is done, to write over files that exist, unless `overwrite`.
func refuseExisting(_ paths: [String], overwrite: Bool) throws {
    guard !overwrite, let path = paths.first(where: DurableFile.exists) else { return }
    throw CLIError("\(path) exists; choose another --output, or add --overwrite to replace it")
}

/// A CSV field, quoted when it needs to be.
func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
        ? "\"" + s.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\"" : s
}

/// `--split` values.
enum SplitArgument: String, ExpressibleByArgument, CaseIterable {
    case iid
    case labelSkew = "label-skew"
    var split: FederatedSimulation.Split { FederatedSimulation.Split(rawValue: rawValue)! }
}

extension NodeCommand {
    /// `cairn-node simulate`: an in-process FedAvg run against centralised training.
    struct Simulate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Simulate federated training on one CSV file with each server optimiser, against centralised training.",
            discussion: """
                Holds out a stratified part of the rows, standardises on the rest (as a federation's pooled \
                statistics do), splits them across --participants simulated participants (iid, or \
                label-skew: two class-sorted shards each), and runs --rounds rounds in plaintext, in this \
                process, once per server optimiser: each participant trains --local-epochs epochs from the \
                global model, and the server moves the global model by the sample-weighted mean update \
                (fedavg: the mean becomes the model; fedavgm, fedadagrad, fedadam, fedyogi: Reddi et al. \
                2021, with their default settings; scaffold: FedAvg with Karimireddy et al. 2020's control \
                variates correcting each participant's local gradients). Prints the held-out accuracy of each after every round, \
                then each one's final accuracy and log loss beside FedAvg on an iid split of the same rows \
                and the same model trained centrally for rounds × local epochs, and can plot them to one \
                SVG. Secure aggregation and the network come with the broker; this is for choosing settings \
                and for testing.
                """
        )

        @OptionGroup var input: DataInput

        @Option(help: "Simulated participants.")
        var participants = 5

        @Option(help: "iid or label-skew.")
        var split: SplitArgument = .labelSkew

        @Option(help: "Rounds of federated averaging.")
        var rounds = 40

        @Option(help: "Epochs each participant trains per round.")
        var localEpochs = 1

        @OptionGroup var shape: ModelOptions

        @Option(help: "sgd or adam.")
        var optimizer: OptimizerArgument = .sgd

        @Option(help: "Rows per mini-batch.")
        var batchSize = 16

        @Option(help: "Step size (default 0.01 for adam, 0.05 for sgd).")
        var learningRate: Float?

        @Option(help: "Fraction of rows held out for evaluation.")
        var testFraction = 0.25

        @Option(
            help: ArgumentHelp(
                "Server optimisers to compare, comma-separated: fedavg, fedavgm, fedadagrad, fedadam, fedyogi, scaffold, or all.",
                valueName: "list"
            )
        )
        var serverOptimisers = "all"

        @Option(help: "FedProx's μ: local training's loss gains μ/2 · ‖w − w_global‖² (0: none).")
        var proximal: Float = 0

        @Option(help: ArgumentHelp("Also plot held-out accuracy per round to this SVG file.", valueName: "file"))
        var svg: String?

        @Option(
            help: """
                Differential privacy: also run each server optimiser with the distributed discrete \
                Gaussian at this noise multiplier z (every participant's update clipped to L2 norm \
                --clip, quantised, noised so that the sum's noise has standard deviation z · clip), \
                and print the (ε, δ) its rounds spend.
                """
        ) var noiseMultiplier: Double?

        @Option(help: "With --noise-multiplier: the L2 bound of one participant's update.") var clip: Float = 1

        @Option(help: "With --noise-multiplier: δ of the (ε, δ) printed.") var delta = 1e-5

        /// The optimisers `--server-optimisers` names, in its order.
        var optimisers: [ServerOptimiser] {
            get throws {
                if serverOptimisers == "all" { return ServerOptimiser.Kind.allCases.map { ServerOptimiser($0) } }
                return try serverOptimisers.split(separator: ",").map { name in
                    let trimmed = name.trimmingCharacters(in: .whitespaces)
                    guard let kind = ServerOptimiser.Kind(rawValue: trimmed) else {
                        throw ValidationError(
                            "--server-optimisers: \(trimmed) is not one of fedavg, fedavgm, fedadagrad, fedadam, fedyogi, scaffold"
                        )
                    }
                    return ServerOptimiser(kind)
                }
            }
        }

        func validate() throws {
            guard testFraction > 0, testFraction < 1 else {
                throw ValidationError("--test-fraction must be above 0 and below 1")
            }
            guard (1...10_000).contains(rounds) else { throw ValidationError("--rounds must be 1 to 10000") }
            guard (1...10_000).contains(localEpochs) else { throw ValidationError("--local-epochs must be 1 to 10000") }
            guard participants >= 1 else { throw ValidationError("--participants must be at least 1") }
            guard try !optimisers.isEmpty else { throw ValidationError("--server-optimisers names none") }
            guard proximal.isFinite, (0...100).contains(proximal) else {
                throw ValidationError("--proximal must be 0 to 100")
            }
            if let problem = privacy?.problem { throw ValidationError(problem) }
            guard delta > 0, delta < 1 else { throw ValidationError("--delta must be above 0 and below 1") }
        }

        var privacy: FederatedSimulation.Privacy? {
            noiseMultiplier.map { FederatedSimulation.Privacy(clip: clip, noiseMultiplier: $0) }
        }

        func run() throws {
            let schema = try DataSchema.load(from: input.schema)
            let (data, _) = try DataValidator.load(input.csv, schema: schema)
            let (trainRows, testRows) = data.stratifiedSplit(testFraction: testFraction, seed: shape.seed)
            let standardisation = Standardisation(of: data.subset(trainRows))
            let train = standardisation.apply(to: data.subset(trainRows))
            let test = standardisation.apply(to: data.subset(testRows))
            let kind = shape.kind(for: schema)
            let architecture = try ModelArchitecture(
                kind: kind,
                inputs: data.inputCount,
                classes: data.classCount,
                hidden: shape.hidden
            )
            let local = TrainingSettings(
                optimizer: optimizer.optimizer,
                epochs: localEpochs,
                batchSize: batchSize,
                learningRate: learningRate ?? optimizer.defaultRate,
                l2: shape.l2,
                seed: shape.seed,
                proximal: proximal
            )
            var curves: [(name: String, curve: [FederatedSimulation.Round])] = []
            for server in try optimisers {
                for mechanism in [nil] + (privacy.map { [$0] } ?? []) {
                    let (_, curve) = try FederatedSimulation.run(
                        train: train,
                        test: test,
                        participants: participants,
                        split: split.split,
                        architecture: architecture,
                        local: local,
                        rounds: rounds,
                        server: server,
                        privacy: mechanism
                    )
                    curves.append((server.kind.rawValue + (mechanism == nil ? "" : "+dp"), curve))
                }
            }
            let iid =
                split == .iid
                ? nil
                : try FederatedSimulation.run(
                    train: train,
                    test: test,
                    participants: participants,
                    split: .iid,
                    architecture: architecture,
                    local: local,
                    rounds: rounds
                ).curve
            var central = Model(architecture: architecture, seed: shape.seed)
            var centralSettings = local
            centralSettings.epochs = rounds * localEpochs
            _ = try Trainer.train(&central, on: train, settings: centralSettings)
            let centralAccuracy = Evaluation(
                probabilities: central.probabilities(test.features),
                labels: test.labels,
                classes: architecture.classes
            ).accuracy
            print(
                "\(kind.rawValue), \(participants) participants, \(split.rawValue) split, \(train.count) training rows, \(test.count) held out"
            )
            if let privacy {
                let spent = PrivacyAccountant.epsilon(
                    of: .simulated(privacy, participants: participants, dimension: architecture.parameterCount),
                    rounds: rounds,
                    delta: delta
                )
                print(
                    "+dp: each participant's whole update clipped to L2 \(privacy.clip), summed noise z = \(privacy.noiseMultiplier): ε = \(rounded(spent.epsilon)) at δ = \(delta) over \(rounds) rounds (participant-level)"
                )
            }
            func column(_ text: String) -> String { text + String(repeating: " ", count: max(1, 12 - text.count)) }
            print("held-out accuracy per round")
            print("round  " + curves.map { column($0.name) }.joined())
            for r in 0..<rounds {
                print(pad(r + 1, 5) + "  " + curves.map { column(rounded($0.curve[r].accuracy)) }.joined())
            }
            print("server optimiser  accuracy  log loss")
            for (name, curve) in curves {
                print(
                    name + String(repeating: " ", count: 18 - name.count) + column(rounded(curve.last!.accuracy))
                        + rounded(curve.last!.logLoss)
                )
            }
            let best = curves.max { $0.curve.last!.accuracy < $1.curve.last!.accuracy }!
            var line = "best: \(best.name) \(rounded(best.curve.last!.accuracy))"
            if let iid { line += "; fedavg on an iid split: \(rounded(iid.last!.accuracy))" }
            line += "; centralised (\(rounds * localEpochs) epochs): \(rounded(centralAccuracy))"
            line += "; difference \(rounded((best.curve.last!.accuracy - centralAccuracy) * 100)) points"
            print(line)
            if let svg {
                var series = curves.map { ("\($0.name), \(split.rawValue)", $0.curve.map(\.accuracy)) }
                if let iid { series.append(("fedavg, iid", iid.map(\.accuracy))) }
                series.append(("centralised", [Double](repeating: centralAccuracy, count: rounds)))
                let chart = accuracySVG(
                    series,
                    title:
                        "\(schema.label.name): held-out accuracy per round (\(kind.rawValue), \(participants) participants)"
                )
                do {
                    try DurableFile.write(Array(chart.utf8), to: svg, mode: DurableFile.shared, replace: true)
                } catch {
                    throw CLIError(error.message)
                }
                print("wrote \(svg)")
            }
        }

        private func pad(_ n: Int, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: " ", count: max(0, width - s.count)) + s
        }
    }
}
