import ArgumentParser
import CairnAudit
import CairnBroker
import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnWire
import Foundation
import Logging

extension BrokerCommand {
    /// `cairn-broker serve`.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the broker daemon: the HTTP API, the round clock, /healthz and /metrics.",
            discussion: """
                Unlocks the keystore, resumes any round a previous run left open (each open phase gets its \
                full deadline again; answers given since the phase opened are asked for again), and serves \
                until SIGTERM or SIGINT, then stops taking requests, lets those in flight finish and signs a \
                last audit checkpoint. The address comes from --host/--port, else "listen" in broker.json, \
                else 127.0.0.1:7400; port 0 picks a free port. The URL served is written to \
                <data-dir>/serve.url. It serves HTTPS with the data folder's self-signed certificate \
                (tls.crt, made by init), whose SHA-256 fingerprint every invite carries so that nodes pin \
                it; --plain-http serves HTTP on a loopback address. Logs go to standard error, one line per event with key=value metadata; \
                they never hold keys, shares, masks or model updates.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var passphrase: PassphraseOptions

        @Option(help: "Address to bind (overrides broker.json).")
        var host: String?

        @Option(help: "TCP port (overrides broker.json; 0 picks a free port).")
        var port: Int?

        @Option(help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        @Option(help: "Masked-input uploads decrypted at once (each holds 4·(D+1) bytes).")
        var concurrentUploads = 2

        @Flag(
            help: ArgumentHelp(
                "Serve plain HTTP instead of TLS; only on a loopback address (127.0.0.1, ::1, localhost).",
                discussion: "Secrets still travel sealed to the broker's keys; TLS also hides what is asked for."
            )
        )
        var plainHTTP = false

        func validate() throws {
            if let port, !(0...65_535).contains(port) { throw ValidationError("--port must be 0 to 65535") }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("unknown --log-level \(logLevel)")
            }
            guard (1...64).contains(concurrentUploads) else {
                throw ValidationError("--concurrent-uploads must be 1 to 64")
            }
        }

        func run() async throws {
            let home = try data.open()
            let host = host ?? home.config.listen?.host ?? "127.0.0.1"
            let port = port ?? home.config.listen?.port ?? 7400
            guard !plainHTTP || ["127.0.0.1", "::1", "localhost"].contains(host) else {
                throw ValidationError(
                    "--plain-http serves only a loopback address, not \(host): without TLS anyone on the path sees which member asks for what"
                )
            }
            let keys = try home.exchangeKeys(passphrase: try passphrase.read(newKeystore: false))
            var logger = Logger(label: "cairn-broker")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            var settings = Exchange.Settings()
            settings.concurrentUploads = concurrentUploads
            let tls = plainHTTP ? nil : try BrokerTLS.serverConfiguration(folder: home.path)
            if !plainHTTP { settings.certificate = try BrokerTLS.certificate(in: home.path) }
            let exchange = try Exchange(
                folder: home.path,
                log: try home.openLog(),
                keys: keys,
                origin: home.config.origin,
                settings: settings,
                metrics: ExchangeMetrics(),
                logger: logger
            )
            try await BrokerServer.run(exchange, host: host, port: port, tls: tls, logger: logger) { bound in
                let url = "\(plainHTTP ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(bound)"
                try? DurableFile.write(
                    Array((url + "\n").utf8),
                    to: home.path + "/" + BrokerHome.urlFileName,
                    replace: true
                )
                say(
                    "cairn-broker \(CairnVersion.software) serving \(url) (identity \(keys.identity.publicKey.fingerprint))"
                )
            }
            print("cairn-broker stopped")
        }
    }

    /// `cairn-broker admin`: the operator's commands, sent as signed requests to the daemon.
    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Operator commands, signed with the operator key and sent to the running daemon.",
            subcommands: [
                CreateFederation.self, Federations.self, Invite.self, Participants.self, Suspend.self, Resume.self,
                Start.self, Stop.self, Status.self,
                Publish.self, Licences.self, Licence.self,
            ]
        )
    }
}

/// What every admin command needs: the data folder (for the operator key) and the daemon's URL.
struct AdminOptions: ParsableArguments {
    @OptionGroup var data: BrokerDataOptions
    @OptionGroup var passphrase: PassphraseOptions
    @OptionGroup var wait: WaitOption

    @Option(
        help: ArgumentHelp(
            "The daemon's URL. Default: <data-dir>/serve.url, else https://127.0.0.1:7400.",
            valueName: "url"
        )
    )
    var broker: String?

    /// A client signing with the operator key, pinned to the broker identity this data folder
    /// holds: a daemon at the URL with any other identity key is refused before anything is sent.
    func client() async throws -> BrokerClient {
        let home = try data.open()
        let (key, identity) = try home.adminKeys(passphrase: try passphrase.read(newKeystore: false))
        let url = broker ?? home.servedURL ?? "https://127.0.0.1:7400"
        // The daemon serves this folder's certificate: pinned from the file, not learnt.
        let pin = try url.hasPrefix("https://") ? TLSPin(certificate: try BrokerTLS.certificate(in: home.path)) : nil
        return try await BrokerClient.connect(url: url, identity: key, broker: identity, pin: pin).client
    }
}

extension AdminOptions {
    /// `POST …/participants/{member}/suspend` or `…/resume`.
    func setStanding(_ federation: String, _ member: String, _ action: String) async throws -> MemberRecord {
        guard let name = member.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union([":"])) else {
            throw CLIError("\(member) is not a fingerprint or key")
        }
        return try await cliCall(wait.waiting) {
            try await client().json(
                "POST",
                "/v1/admin/federations/\(federation)/participants/\(name)/\(action)",
                nil as Bool?
            )
        }
    }
}

/// `--federation`.
struct FederationOption: ParsableArguments {
    @Option(help: "The federation's id.")
    var federation: String
}

/// Encodes for people.
func printJSON(_ value: some Encodable) throws { print(try encodeJSON(value)) }

extension BrokerCommand.Admin {
    struct CreateFederation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-federation",
            abstract: "Create a federation: its task, data schema, model and round policy.",
            discussion: """
                The round's neighbours k and thresholds t and T are chosen for each round from the number of \
                active participants with --dropout-fraction and --corrupt-fraction (Protocol/README.md, "Round \
                parameters"); below the rule's reach (a handful of participants) a round uses full SecAgg with \
                no dropout tolerance. Quantisation must not overflow: participants × (scale × clip bound + 1) \
                < 2^31 is checked when each round opens.
                """
        )

        @OptionGroup var admin: AdminOptions
        @Option(help: "1–64 characters of a-z 0-9 - _ .") var id: String
        @Option(help: "What the federation is for.") var description = ""
        @Option(help: ArgumentHelp("The data schema (JSON).", valueName: "file")) var schema: String
        @Option(help: "logistic, softmax or mlp.") var model: ModelKindArgument = .softmax
        @Option(help: "Hidden units of an mlp (default 64, as cairn-node train's).") var hidden: Int?
        @Option(help: "A round opens only with this many active participants (≥ 3).") var minimumParticipants = 3
        @Option(help: "Fraction of participants that may drop out of a round.") var dropoutFraction = 0.1
        @Option(help: "Fraction of participants that may collude with the broker.") var corruptFraction = 0.05
        @Option(help: "Seconds for advertise, share, mask, check and unmask, comma-separated.") var deadlines =
            "60,30,120,30,30"
        @Option(help: "Each coordinate of a weighted update is clipped to ± this.") var clipBound: Float = 4
        @Option(help: "Fixed-point scale.") var scale: Float = 1_048_576
        @Option(help: "The most training rows a participant may declare.") var maximumSamples: UInt32 = 100_000
        @Option(help: "Local epochs per round.") var localEpochs = 2
        @Option(help: "Local step size.") var learningRate: Float = 0.05
        @Option(help: "Local mini-batch size.") var batchSize = 16
        @Option(help: "Local L2 penalty.") var l2: Float = 0.001
        @Option(
            help: """
                Rounds in a row a participant may answer nothing in before it is left out of \
                rosters (until its node calls again).
                """
        ) var inactiveAfter = RoundPolicy.defaultInactiveAfter
        @Option(
            help: """
                Where inputs are standardised from: pooled (a statistics round before the first \
                training round sums every participant's per-input count, sum and sum of squares \
                through secure aggregation) or schema (the middle and half-width of each feature's \
                schema range).
                """
        ) var standardise: StandardisingArgument = .pooled
        @Option(
            help: """
                How the broker applies a round's mean update: fedavg, fedavgm (server momentum), \
                fedadagrad, fedadam or fedyogi (Reddi et al. 2021), or scaffold (FedAvg with \
                control variates that correct each participant's local gradients, Karimireddy et al. \
                2020: every input carries twice the parameters).
                """
        ) var serverOptimiser: ServerOptimiserArgument = .fedavg
        @Option(help: "The server optimiser's step size η (default: the rule's own; 1 for fedavg).")
        var serverLearningRate: Float?
        @Option(help: "The server optimiser's momentum β₁ (default 0.9).") var serverMomentum: Float?
        @Option(help: "FedProx's μ for local training: the loss gains μ/2 · ‖w − w_global‖² (default: none).")
        var proximal: Float?
        @Option(
            help: """
                Federated early stopping: training stops once the median log loss that participants \
                report (those that run with --evaluate score each round's model) has not improved \
                for this many scored rounds, even with rounds left; 0 runs every round asked for.
                """
        ) var patience = 5

        func run() async throws {
            let parts = deadlines.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 5 else { throw ValidationError("--deadlines takes five whole numbers of seconds") }
            let schemaValue = try DataSchema.load(from: schema)
            let spec = FederationSpec(
                id: id,
                description: description,
                schema: schemaValue,
                model: ModelChoice(kind: model.kind, hidden: model == .mlp ? hidden ?? 64 : hidden ?? 0),
                policy: RoundPolicy(
                    minimumParticipants: minimumParticipants,
                    dropoutFraction: dropoutFraction,
                    corruptFraction: corruptFraction,
                    deadlines: PhaseDeadlines(
                        advertise: parts[0],
                        share: parts[1],
                        mask: parts[2],
                        check: parts[3],
                        unmask: parts[4]
                    ),
                    clipBound: clipBound,
                    scale: scale,
                    maximumSampleCount: maximumSamples,
                    localEpochs: localEpochs,
                    learningRate: learningRate,
                    batchSize: batchSize,
                    l2: l2,
                    inactiveAfter: inactiveAfter,
                    standardisation: standardise.value,
                    serverOptimiser: serverOptimiser == .fedavg && serverLearningRate == nil
                        ? nil
                        : ServerOptimiser(
                            serverOptimiser.kind,
                            learningRate: serverLearningRate,
                            momentum: serverMomentum
                        ),
                    proximal: proximal,
                    patience: patience
                )
            )
            let unbounded = schemaValue.features.filter { $0.type != .category && ($0.min == nil || $0.max == nil) }
            if standardise == .schema, !unbounded.isEmpty {
                FileHandle.standardError.write(
                    Data(
                        "warning: --standardise schema leaves \(unbounded.count) feature\(unbounded.count == 1 ? "" : "s") without both a min and a max unstandardised (\(unbounded.prefix(3).map(\.name).joined(separator: ", "))\(unbounded.count > 3 ? ", …" : "")); --standardise pooled standardises on the participants' pooled statistics\n"
                            .utf8
                    )
                )
            }
            let status: FederationStatus = try await cliCall(admin.wait.waiting) {
                try await admin.client().json("POST", "/v1/admin/federations", spec)
            }
            print("created federation \(status.id); initial model \(status.modelDigest.prefix(16))…")
        }
    }

    struct Invite: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a single-use, expiring invite for a role in a federation.",
            discussion: "Prints the code to hand over (secret.brokerkey); the broker keeps only a digest of the secret."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Option(help: "participant, licensee or auditor.") var role: RoleArgument = .participant
        @Option(help: "Seconds until it expires.") var validFor = 86_400

        func run() async throws {
            let invite: CairnExchange.Invite = try await cliCall(admin.wait.waiting) {
                try await admin.client().json(
                    "POST",
                    "/v1/admin/federations/\(federation.federation)/invites",
                    InviteRequest(role: role.role, validFor: validFor)
                )
            }
            print(invite.code)
        }
    }

    struct Participants: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a federation's members and their round records."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption

        func run() async throws {
            let members: [MemberRecord] = try await cliCall(admin.wait.waiting) {
                try await admin.client().json("GET", "/v1/admin/federations/\(federation.federation)/participants")
            }
            for m in members {
                let included = m.rounds.filter(\.included).count
                print(
                    "\(m.fingerprint)\(m.name.map { " (\($0))" } ?? "")  \(m.role.rawValue)  \(m.status)  in \(included) of \(m.rounds.count) rounds  \(m.key)"
                )
            }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Suspend a member: its requests are refused and later rounds leave it out (admin resume undoes it)."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Argument(help: "The member: its fingerprint (as admin participants lists it) or its 64-hex-digit key.")
        var member: String

        func run() async throws {
            let record = try await admin.setStanding(federation.federation, member, "suspend")
            print("suspended \(record.fingerprint)")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a suspended member: its requests are accepted and later rounds take it again."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Argument(help: "The member: its fingerprint (as admin participants lists it) or its 64-hex-digit key.")
        var member: String

        func run() async throws {
            let record = try await admin.setStanding(federation.federation, member, "resume")
            print("\(record.fingerprint) is \(record.status)")
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start training: run this many more rounds.")
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Option(help: "Rounds to run (1–10000).") var rounds = 10

        func run() async throws {
            let status: FederationStatus = try await cliCall(admin.wait.waiting) {
                try await admin.client().json(
                    "POST",
                    "/v1/admin/federations/\(federation.federation)/training",
                    TrainingRequest(action: "start", rounds: rounds)
                )
            }
            print(
                "\(status.id): training, \(status.roundsLeft) rounds to run, \(status.participants) active participants"
            )
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop training: no new round opens; one in progress runs to its end."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption

        func run() async throws {
            let status: FederationStatus = try await cliCall(admin.wait.waiting) {
                try await admin.client().json(
                    "POST",
                    "/v1/admin/federations/\(federation.federation)/training",
                    TrainingRequest(action: "stop")
                )
            }
            print("\(status.id): \(status.state)")
        }
    }

    struct Federations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the broker's federations: state, rounds left, active participants, model round."
        )
        @OptionGroup var admin: AdminOptions
        @Flag(help: "Print the JSON the daemon answered.") var json = false

        func run() async throws {
            let all: [FederationStatus] = try await cliCall(admin.wait.waiting) {
                try await admin.client().json("GET", "/v1/admin/federations")
            }
            if json { return try printJSON(all) }
            if all.isEmpty { print("no federations yet; cairn-broker admin create-federation makes one") }
            for status in all {
                print(summary(status))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a federation's state and its rounds, newest first."
        )
        @OptionGroup var admin: AdminOptions
        @OptionGroup var federation: FederationOption
        @Flag(help: "Print the JSON the daemon answered.") var json = false

        func run() async throws {
            let status: FederationStatus = try await cliCall(admin.wait.waiting) {
                try await admin.client().json("GET", "/v1/admin/federations/\(federation.federation)")
            }
            if json { return try printJSON(status) }
            print(summary(status))
            for r in status.rounds {
                let waiting =
                    r.waitingFor.isEmpty
                    ? ""
                    : "; waiting for \(r.waitingFor.joined(separator: ", ")), \(max(0, r.deadline - unixTime())) s left"
                let detail =
                    r.phase == "aborted"
                    ? r.reason
                    : r.phase == "finished" ? "\(r.included) inputs summed" : "answered \(r.answered)\(waiting)"
                print(
                    "  round \(r.round): \(r.phase), n = \(r.participants), k = \(r.neighbours), t = \(r.threshold), T = \(r.signatureThreshold); \(detail)"
                )
            }
        }
    }
}

/// `--role`.
enum RoleArgument: String, ExpressibleByArgument, CaseIterable {
    case participant, licensee, auditor
    var role: Role { Role(rawValue: rawValue)! }
}

/// Runs a network call with `waiting` as every broker client's policy (``Waiting/current``),
/// turning its errors into one-line CLI errors.
func cliCall<T>(_ waiting: Waiting, _ body: () async throws -> T) async throws -> T {
    Waiting.current = waiting
    // A broker's answer names itself (`the broker refused (403): …`); a check made here before
    // anything was sent (a URL without a scheme, say) is said as it is.
    do { return try await body() } catch let error as ExchangeError { throw CLIError(error.message) }
}

/// A federation's state in one line, for `admin federations` and `admin status`.
private func summary(_ status: FederationStatus) -> String {
    func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
    return "\(status.id): \(status.state), \(count(status.roundsLeft, "round")) left, "
        + "\(count(status.participants, "active participant")), model from round \(status.modelRound)"
        + (status.stoppedBecause.map { " (\($0))" } ?? "")
}
