import ArgumentParser
import CairnCrypto
import CairnExchange
import CairnNode
import CairnWire

extension BrokerCommand.Admin {
    /// `cairn-broker admin publish`.
    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish the federation's current model as the next registry version and list it.",
            discussion: """
                The version is immutable and signed with the broker's licence key: its rounds and the \
                contributors of each, the parameter and file digests, and the federated evaluation: the \
                participants' scores of that round's model on their own held-out rows (cairn-node run \
                --evaluate), averaged by row count, when at least 2 reported one. The listing shows the description and \
                these terms to the federation's participants and licensees; the terms a licence is asked \
                under are recorded with it. Pricing: fixed (--price per licence), cost-plus (--cost and \
                --margin; the price is cost × (1 + margin)) or usage (--price per --unit). A model already \
                published is refused: a new version needs a new round.
                """
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Option(help: "What the model does, for licensees.") var description: String
        @Option(help: "fixed, cost-plus or usage.") var pricing = "fixed"
        // Unconditional: `--price -5` is read as a (refused) price, not as a missing value.
        @Option(parsing: .unconditional, help: "The price (fixed: per licence; usage: per unit).") var price: Double = 0
        @Option(parsing: .unconditional, help: "cost-plus: the cost.") var cost: Double?
        @Option(parsing: .unconditional, help: "cost-plus: the margin, e.g. 0.2 for 20 %.") var margin: Double?
        @Option(help: "usage: what one unit is, e.g. \"1000 predictions\".") var unit: String?
        @Option(help: "ISO 4217 currency code.") var currency = "EUR"
        @Option(help: "Entitlements offered, comma-separated: inference, fine-tuning.") var entitlements = "inference"
        @Option(help: "Days a licence is valid from its grant (1–366).") var licenceDays = 30
        @Option(help: "Containers one licence may fetch (1–1000).") var deliveryLimit = 3
        @Flag(help: "Make participants of the federation ask and wait like anyone else (default: granted at once).")
        var noAutoGrant = false

        func validate() throws {
            for (name, value) in [("--price", price), ("--cost", cost), ("--margin", margin)] {
                if let value, !(value.isFinite && value >= 0) {
                    throw ValidationError("\(name) must be a number of at least 0, not \(value)")
                }
            }
        }

        func run() async throws {
            let offer = LicenceOffer(
                entitlements: entitlements.split(separator: ",").map(String.init),
                licenceDays: licenceDays,
                deliveryLimit: deliveryLimit,
                pricing: pricing,
                price: price,
                cost: cost,
                margin: margin,
                unit: unit,
                currency: currency,
                autoGrantParticipants: !noAutoGrant
            )
            let version: ModelVersion = try await cliCall(admin.wait.waiting) {
                try await admin.client().json(
                    "POST",
                    "/v1/admin/federations/\(federation.federation)/publish",
                    PublishRequest(description: description, offer: offer)
                )
            }
            print(
                "published \(version.model) version \(version.version) (round \(version.rounds.last ?? 0), file \(version.fileDigest.prefix(16))…)"
            )
            let m = version.metrics
            if let accuracy = m["accuracy"], let loss = m["log-loss"], let rows = m["evaluation-rows"],
                let n = m["evaluators"]
            {
                print(
                    "federated evaluation: accuracy \(rounded(accuracy)), log-loss \(rounded(loss)) on \(Int(rows)) held-out rows of \(Int(n)) participants"
                )
            } else {
                print(
                    "no federated evaluation: fewer than \(EvaluationReport.minimumEvaluators) participants reported a score for round \(version.rounds.last ?? 0) (cairn-node run --evaluate)"
                )
            }
        }
    }

    /// `cairn-broker admin licences`.
    struct Licences: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the licence requests for a federation's model.")
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Flag(help: "Print the JSON the daemon answered.") var json = false

        func run() async throws {
            let records: [LicenceRecord] = try await cliCall(admin.wait.waiting) {
                try await admin.client().json("GET", "/v1/admin/federations/\(federation.federation)/licences")
            }
            if json { return try printJSON(records) }
            for r in records {
                print(
                    "\(r.id)  \(r.status)  \(r.entitlements.joined(separator: ","))  \(r.offer.pricing) \(r.offer.price) \(r.offer.currency)  \(r.deliveries) of \(r.offer.deliveryLimit) deliveries  licensee \(fingerprint(hexKey: r.licensee))\(r.licenseeName.map { " (\($0))" } ?? "")"
                )
            }
        }
    }

    /// `cairn-broker admin licence grant|refuse|revoke`.
    struct Licence: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Grant or refuse a requested licence, or revoke a granted one.",
            discussion: """
                A grant signs the licence with the broker's licence key (the versions of --versions, by \
                default 1 to the newest published; valid for the listing's days, with its delivery limit) and \
                records it in the audit log, whose inclusion proof the licensee checks before using it. Every \
                decision is an audit entry.
                """
        )
        enum Action: String, ExpressibleByArgument, CaseIterable { case grant, refuse, revoke }
        @OptionGroup var admin: AdminOptions
        @Argument(help: "grant, refuse or revoke.") var action: Action
        @Argument(help: "The licence id (32 hex digits).") var id: String
        @Option(help: "Why, for the audit log.") var reason = ""
        @Option(
            help: ArgumentHelp(
                "grant: the versions covered, N or FIRST-LAST; LAST may be beyond the newest, to cover versions published while the licence is valid. (default: 1 to the newest)",
                valueName: "range"
            )
        )
        var versions: String?

        func validate() throws {
            if versions != nil && action != .grant { throw ValidationError("--versions applies to grant only") }
            _ = try range()
        }

        /// `--versions` as (first, last); nil when not given.
        func range() throws -> (Int, Int)? {
            guard let versions else { return nil }
            let parts = versions.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...2).contains(parts.count), let first = parts[0], let last = parts[parts.count - 1], first >= 1,
                last >= first
            else { throw ValidationError("--versions is N or FIRST-LAST with 1 ≤ FIRST ≤ LAST, not \(versions)") }
            return (first, last)
        }

        func run() async throws {
            let range = try range()
            let record: LicenceRecord = try await cliCall(admin.wait.waiting) {
                try await admin.client().json(
                    "POST",
                    "/v1/admin/licences/\(id)",
                    LicenceDecision(
                        action: action.rawValue,
                        reason: reason,
                        firstVersion: range?.0,
                        lastVersion: range?.1
                    )
                )
            }
            print(
                "licence \(record.id): \(record.status)"
                    + (record.versions.map { action == .grant ? " for versions \($0[0])–\($0[1])" : "" } ?? "")
            )
        }
    }
}

/// The fingerprint of an Ed25519 key given in hex, as every member is named (the hex itself when
/// it is not a key).
func fingerprint(hexKey: String) -> String {
    (try? Ed25519.PublicKey(rawRepresentation: Hex.decode(hexKey)))?.fingerprint ?? hexKey
}
