import ArgumentParser
import CairnExchange
import CairnLicensing
import CairnModels
import CairnNode
import CairnWire
import Foundation

extension NodeCommand {
    /// `cairn-node models`: the catalogue, licences and licensed models.
    struct Models: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Browse the federation's model listing, ask for a licence, fetch and use a licensed model.",
            subcommands: [List.self, Request.self, Licences.self, Fetch.self, Predict.self, Evaluate.self]
        )
    }
}

extension NodeCommand.Models {
    /// Unlocks the node and connects as a licensee.
    static func licensee(
        _ home: NodeHomeOptions,
        _ passphrase: PassphraseOptions,
        _ wait: WaitOption,
        _ choice: EnrolmentChoice
    ) async throws -> Licensee {
        _ = try choice.held(home)  // refuses an unknown or ambiguous choice before unlocking
        let identity = try NodeIdentity.unlock(home: home.resolved, passphrase: try passphrase.read(newKeystore: false))
        return try await cliCall(wait.waiting) {
            try await Licensee.connect(home: home.resolved, federation: choice.federation, identity: identity)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the federation's model listing: description, schema, versions, metrics and terms.",
            discussion: "Every version's registry entry is checked against the broker's licence key."
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice
        @Flag(help: "Print the listing's JSON.") var json = false

        func run() async throws {
            let client = try await NodeCommand.Models.licensee(home, passphrase, wait, choice)
            let listing = try await cliCall(wait.waiting) { try await client.listing() }
            if json { return try printJSON(listing) }
            let o = listing.offer
            let terms =
                switch o.pricing {
                case "cost-plus":
                    "\(o.price) \(o.currency) per licence (cost \(o.cost ?? 0) + \(Int(((o.margin ?? 0) * 100).rounded())) %)"
                case "usage": "\(o.price) \(o.currency) per \(o.unit ?? "unit")"
                default: "\(o.price) \(o.currency) per licence"
                }
            print("\(listing.model): \(listing.description)")
            let names = listing.schema.features.map(\.name)
            let shown =
                names.count <= 6
                ? names.joined(separator: ", ") : "\(names[0]), \(names[1]), … \(names[names.count - 1])"
            print("  task \(listing.task), \(listing.schema.inputCount) inputs (\(shown))")
            print(
                "  terms: \(o.entitlements.joined(separator: ", ")); \(terms); \(o.licenceDays) days; \(o.deliveryLimit) deliveries\(o.autoGrantParticipants ? "; participants granted at once" : "")"
            )
            for v in listing.versions {
                let metrics = v.metrics.keys.sorted().map { name in
                    let x = v.metrics[name]!
                    return "\(name) " + (x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : rounded(x))
                }
                let consecutive = v.rounds.count > 2 && zip(v.rounds, v.rounds.dropFirst()).allSatisfy { $1 == $0 + 1 }
                let rounds =
                    consecutive ? "\(v.rounds[0])–\(v.rounds.last!)" : v.rounds.map(String.init).joined(separator: ",")
                let contributors =
                    Set(v.contributors).count == 1 && v.contributors.count > 1
                    ? "\(v.contributors[0]) each" : v.contributors.map(String.init).joined(separator: ",")
                print(
                    "  version \(v.version): rounds \(rounds), contributors \(contributors), file \(v.fileDigest.prefix(16))…"
                )
                if !metrics.isEmpty { print("    federated evaluation: " + metrics.joined(separator: ", ")) }
            }
        }
    }

    struct Request: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask for a licence to the listing's model.",
            discussion: """
                Prints the licence id and its status: granted at once for a participant when the listing \
                says so, otherwise requested until the operator decides.
                """
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice
        @Option(help: "Entitlements wanted, comma-separated: inference, fine-tuning.") var entitlements = "inference"

        func run() async throws {
            let client = try await NodeCommand.Models.licensee(home, passphrase, wait, choice)
            let record = try await cliCall(wait.waiting) {
                try await client.request(entitlements: entitlements.split(separator: ",").map(String.init))
            }
            print("licence \(record.id): \(record.status)")
        }
    }

    struct Licences: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show this node's licences and requests, newest first, as the broker records them.",
            discussion: """
                A key's licences are listed whatever federation they are for, so --federation is needed \
                only when the home's enrolments are at several brokers.
                """
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice
        @Flag(help: "Print the broker's JSON.") var json = false

        func run() async throws {
            // A key's licences are the broker's to list whatever the federation: with several
            // enrolments at one broker, any of them asks.
            var choice = choice
            let held = try Enrolment.all(home: home.resolved)
            if choice.federation == nil, held.count > 1, Set(held.map(\.enrolment.brokerKey)).count == 1 {
                choice.federation = held[0].name
            }
            let client = try await NodeCommand.Models.licensee(home, passphrase, wait, choice)
            let records = try await cliCall(wait.waiting) { try await client.licences() }
            if json { return try printJSON(records) }
            if records.isEmpty { print("no licences; ask for one with cairn-node models request") }
            for r in records {
                let versions = r.versions.map { "versions \($0[0])–\($0[1]), " } ?? ""
                print(
                    "\(r.id)  \(r.status)  \(r.model) \(versions)\(r.entitlements.joined(separator: ","))  \(r.deliveries) of \(r.offer.deliveryLimit) deliveries"
                )
            }
        }
    }

    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a licensed model, verify it and decrypt it to a safetensors file.",
            discussion: """
                Checks the licence (the broker's signature, this node as licensee, its validity window and \
                its entry in the broker's audit log, by inclusion proof to a signed checkpoint), then the \
                container (the header's signature, every chunk, the final tag) and the model file's digest \
                against the signed registry entry. Only then is anything written: the safetensors file and, \
                beside it, <output>.json with the version's registry entry and the licence's terms. Each fetch \
                counts against the licence's delivery limit, so an existing output file is refused before \
                anything is asked of the broker, unless --overwrite.
                """
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice
        @Option(help: "The licence id (32 hex digits; default: this node's newest granted licence).")
        var licence: String?
        @Option(help: "The model version (default: the newest the licence covers).") var modelVersion: Int?
        @Option(help: ArgumentHelp("Where to write the model (safetensors).", valueName: "file")) var output: String
        @Flag(help: "Replace existing output files.") var overwrite = false

        func run() async throws {
            try refuseExisting([output, output + ".json"], overwrite: overwrite)
            let client = try await NodeCommand.Models.licensee(home, passphrase, wait, choice)
            let id: String
            if let licence {
                id = licence
            } else {
                let granted = try await cliCall(wait.waiting) { try await client.licences() }.first {
                    $0.status == "granted"
                }
                guard let granted else {
                    throw CLIError("this node holds no granted licence; see cairn-node models licences")
                }
                id = granted.id
            }
            let fetched: (version: ModelVersion, licence: SignedLicence, file: [UInt8])
            do {
                fetched = try await cliCall(wait.waiting) { try await client.fetch(licence: id, version: modelVersion) }
            } catch let error as LicensingError {
                throw CLIError("refused: \(error.message)")
            }
            let terms = fetched.licence.licence
            let metadata = FetchedModel(
                version: fetched.version,
                licence: terms.idHex,
                entitlements: terms.entitlements.names,
                notAfter: terms.notAfter
            )
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                try DurableFile.write(fetched.file, to: output, mode: DurableFile.shared, replace: overwrite)
                try DurableFile.write(
                    Array(try encoder.encode(metadata)),
                    to: output + ".json",
                    mode: DurableFile.shared,
                    replace: overwrite
                )
            } catch let error as WireError {
                throw CLIError(error.message)
            }
            print(
                "fetched \(fetched.version.model) version \(fetched.version.version) under licence \(terms.idHex) to \(output) (\(fetched.file.count) bytes, digest verified)"
            )
        }
    }

    struct Evaluate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate a model file on a labelled CSV: accuracy, log-loss and per-class scores.",
            discussion: """
                Prints the row count, accuracy, log-loss and macro averages, then per class its precision, \
                recall, F1 and row count, the confusion matrix (rows: the true class; columns: the predicted \
                one) and, for two classes, the ROC AUC. --json writes all of it as JSON.
                """
        )
        @Argument(help: ArgumentHelp("The labelled CSV file (header row first).", valueName: "csv")) var csv: String
        @Option(help: ArgumentHelp("The model (safetensors).", valueName: "file")) var model: String
        @Flag(help: "Print the evaluation as JSON.") var json = false

        func run() throws {
            let file = try ModelFile.read(from: model)
            let (data, _) = try DataValidator.load(csv, schema: file.schema)
            let classes = file.schema.label.classes
            let e = Evaluation(
                probabilities: try file.probabilities(data),
                labels: data.labels,
                classes: file.model.architecture.classes
            )
            if json { return try printJSON(e) }
            print(
                "\(e.sampleCount) rows: accuracy \(rounded(e.accuracy)), log-loss \(rounded(e.logLoss)), macro precision \(rounded(e.macroPrecision)), macro recall \(rounded(e.macroRecall)), macro F1 \(rounded(e.macroF1))"
            )
            if let auc = e.rocAUC { print("ROC AUC \(rounded(auc)) (\(classes[1]) as the positive class)") }
            let width = max(5, classes.map(\.count).max() ?? 0)
            func cell(_ text: String, _ w: Int) -> String {
                String(repeating: " ", count: max(0, w - text.count)) + text
            }
            print(cell("class", width) + cell("precision", 11) + cell("recall", 9) + cell("F1", 9) + cell("rows", 8))
            for c in classes.indices {
                print(
                    cell(classes[c], width) + cell(rounded(e.precision[c]), 11) + cell(rounded(e.recall[c]), 9)
                        + cell(rounded(e.f1[c]), 9) + cell(String(e.support[c]), 8)
                )
            }
            print("confusion matrix (rows: true class, columns: predicted):")
            let column = max(width, e.confusion.joined().map { String($0).count }.max() ?? 0) + 1
            print(cell("", width) + classes.map { cell($0, column) }.joined())
            for c in classes.indices {
                print(cell(classes[c], width) + e.confusion[c].map { cell(String($0), column) }.joined())
            }
        }
    }
}

/// What `models fetch` writes beside the model.
struct FetchedModel: Codable {
    var version: ModelVersion
    var licence: String
    var entitlements: [String]
    var notAfter: Int64
}
