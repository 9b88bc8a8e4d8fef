public import CairnAudit
public import CairnCrypto
public import CairnExchange
public import CairnModels
import CairnSecAgg
public import CairnWire
import Foundation

/// What `cairn-node enroll` writes for each enrolment: where the broker is, who it is, and the
/// federation and role this node joined. A home holds several, one folder each under
/// `<home>/enrolments/<federation>@<broker key prefix>/` (``Held``), with the state of that
/// enrolment beside it (round state, witnessed checkpoint); a home enrolled before there were
/// several keeps its one enrolment in `<home>/enrolment.json`, with its state in the home itself.
public struct Enrolment: Codable, Sendable, Hashable {
    /// The format tag.
    public static let formatTag = "cairn-enrolment/v1"
    /// The file name in an enrolment's folder.
    public static let fileName = "enrolment.json"
    /// The folder in the home that holds the enrolments' folders.
    public static let foldersName = "enrolments"
    /// The format.
    public var format = Self.formatTag
    /// The broker's URL.
    public var broker: String
    /// The broker's identity key (hex), pinned from the invite.
    public var brokerKey: String
    /// The federation.
    public var federation: String
    /// The role.
    public var role: Role
    /// The broker's TLS certificate (PEM), pinned at enrolment by the invite's fingerprint; nil
    /// for a broker enrolled with over plain HTTP on loopback.
    public var tlsCertificate: String?

    /// An enrolment.
    public init(broker: String, brokerKey: String, federation: String, role: Role, tlsCertificate: String? = nil) {
        self.broker = broker
        self.brokerKey = brokerKey
        self.federation = federation
        self.role = role
        self.tlsCertificate = tlsCertificate
    }

    /// An enrolment as a home holds it: the enrolment and the folder that holds its state.
    public struct Held: Sendable, Hashable {
        /// The enrolment.
        public var enrolment: Enrolment
        /// Its folder: `<home>/enrolments/<name>`, or the home for one written before there
        /// were several.
        public var folder: String
        /// How `--federation` names it when a federation's id alone is ambiguous.
        public var name: String { enrolment.name }
    }

    /// Its folder's name: the federation, `@` and the first 16 hex digits of the broker's key
    /// (federation ids are unique at one broker only).
    public var name: String { federation + "@" + brokerKey.prefix(16) }

    /// The pinned certificate, if any.
    public var pin: TLSPin? {
        get throws { try tlsCertificate.map { try TLSPin(certificate: $0) } }
    }

    /// A client of the enrolled broker: its identity and transport key checked, its certificate pinned.
    public func connect(identity: Ed25519.PrivateKey) async throws -> (client: BrokerClient, info: BrokerInfo) {
        try await BrokerClient.connect(url: broker, identity: identity, broker: try brokerIdentity, pin: try pin)
    }

    /// Every enrolment `home` holds, by name.
    public static func all(home: String) throws -> [Held] {
        var held: [Held] = []
        if DurableFile.exists(home + "/" + fileName) {
            held.append(Held(enrolment: try read(folder: home), folder: home))
        }
        let folders = home + "/" + foldersName
        if DurableFile.isDirectory(folders) {
            for name in try DurableFile.entries(in: folders) where DurableFile.exists("\(folders)/\(name)/\(fileName)")
            {
                held.append(Held(enrolment: try read(folder: folders + "/" + name), folder: folders + "/" + name))
            }
        }
        return held.sorted { $0.name < $1.name }
    }

    /// The enrolment of `home` that `federation` names (a federation's id, or an enrolment's
    /// name, `federation@brokerkeyprefix`), or its only one when `federation` is nil.
    public static func select(home: String, federation: String?) throws -> Held {
        let held = try all(home: home)
        func list(_ held: [Held]) -> String {
            held.map { "\($0.name) (\($0.enrolment.role.rawValue) at \($0.enrolment.broker))" }.joined(separator: ", ")
        }
        guard !held.isEmpty else {
            throw ExchangeError(.notFound, "\(home) has not enrolled with a broker; run cairn-node enroll first")
        }
        guard let federation else {
            guard held.count == 1 else {
                throw ExchangeError(
                    .malformed,
                    "\(home) holds \(held.count) enrolments: choose one with --federation (\(list(held)))"
                )
            }
            return held[0]
        }
        let chosen = held.filter { $0.enrolment.federation == federation || $0.name == federation }
        guard chosen.count == 1 else {
            throw ExchangeError(
                chosen.isEmpty ? .notFound : .malformed,
                chosen.isEmpty
                    ? "\(home) is not enrolled in a federation \(federation); it holds \(list(held))"
                    : "federation \(federation) is enrolled at \(chosen.count) brokers: name one as --federation \(chosen.map(\.name).joined(separator: " or "))"
            )
        }
        return chosen[0]
    }

    private static func read(folder: String) throws -> Enrolment {
        let path = folder + "/" + fileName
        do {
            let value = try JSONDecoder().decode(
                Enrolment.self,
                from: Data(try DurableFile.read(path, maximum: 1 << 16))
            )
            guard value.format == formatTag else { throw ExchangeError(.malformed, "unknown format \(value.format)") }
            return value
        } catch {
            throw ExchangeError(.malformed, "\(path) is not a Cairn enrolment: \(error)")
        }
    }

    /// Writes it in its own folder of `home` (refused when the home already holds an enrolment
    /// of the same name) and returns it as held.
    @discardableResult
    public func write(home: String) throws -> Held {
        if let same = try Self.all(home: home).first(where: { $0.name == name }) {
            throw ExchangeError(
                .conflict,
                "\(home) already holds an enrolment in federation \(federation) at this broker (\(same.folder))"
            )
        }
        let folder = home + "/" + Self.foldersName + "/" + name
        try DurableFile.makeDirectory(folder)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try DurableFile.write(Array(try encoder.encode(self)), to: folder + "/" + Self.fileName, replace: false)
        return Held(enrolment: self, folder: folder)
    }

    /// The broker key.
    public var brokerIdentity: Ed25519.PublicKey {
        get throws { try Ed25519.PublicKey(rawRepresentation: try Hex.decode(brokerKey)) }
    }

    /// Enrols `identity` with an invite code (`secret.brokerkey[.fingerprint]`) at `url`: pins
    /// the broker's TLS certificate by the fingerprint (an `https` URL needs one), checks the
    /// broker is the one the invite names, sends the signed enrolment and returns what to write.
    public static func enrol(
        url: String,
        code: String,
        identity: NodeIdentity
    ) async throws -> (Enrolment, MemberRecord) {
        let parts = code.split(separator: ".")
        guard parts.count == 2 || parts.count == 3, parts[0].utf8.count == 32, parts[1].utf8.count == 64,
            let keyBytes = try? Hex.decode(String(parts[1])),
            let broker = try? Ed25519.PublicKey(rawRepresentation: keyBytes),
            parts.count == 2 || (parts[2].utf8.count == 64 && (try? Hex.decode(String(parts[2]))) != nil)
        else {
            throw ExchangeError(
                .malformed,
                "an invite code is 32 hex digits, a dot, the broker's 64-hex-digit key and, for a broker served over TLS, a dot and its certificate's 64-hex-digit fingerprint"
            )
        }
        var pin: TLSPin?
        if url.hasPrefix("https://") {
            guard parts.count == 3 else {
                throw ExchangeError(
                    .malformed,
                    "this invite carries no TLS certificate fingerprint, so \(url) cannot be pinned: ask for an invite from a broker that serves TLS"
                )
            }
            pin = try await TLSPin.learn(url: url, fingerprint: try Hex.decode(String(parts[2])))
        }
        let (client, _) = try await BrokerClient.connect(
            url: url,
            identity: identity.identity,
            broker: broker,
            pin: pin
        )
        let record: MemberRecord = try await client.json(
            "POST",
            "/v1/enrol",
            EnrolRequest(
                invite: String(parts[0]),
                deliveryKey: Hex.encode(identity.delivery.publicKey.rawRepresentation)
            )
        )
        return (
            Enrolment(
                broker: url,
                brokerKey: String(parts[1]),
                federation: record.federation,
                role: record.role,
                tlsCertificate: pin?.certificate
            ),
            record
        )
    }
}

/// A participant taking part in rounds: waits for a round, trains on its data, and answers every
/// SecAgg+ phase, keeping its round state encrypted on disk so a restart never makes it reveal
/// both shares of a peer.
public struct Participant: Sendable {
    /// Progress reports, for a terminal or a log.
    public enum Event: Sendable {
        /// A round this node is on opened.
        case roundOpened(round: Int, participants: Int)
        /// This node answered a phase.
        case answered(round: Int, phase: String, bytes: Int)
        /// A round finished, as the broker recorded it: whether this node's input is in its sum
        /// (`counted` such rounds so far in this run, of `target` when a number was asked), the new
        /// model's score on the held-out data, if any, and whether the broker recorded it for
        /// federated evaluation (or why not).
        case roundFinished(
            round: Int,
            included: Bool,
            counted: Int,
            target: Int?,
            evaluation: Evaluation?,
            refused: String?
        )
        /// This node has answered the open phase, which still waits for `participants` others
        /// until its deadline, `secondsLeft` from now.
        case waiting(round: Int, phase: String, participants: Int, secondsLeft: Int64)
        /// The federation stopped training: no round is open and none will be.
        case trainingStopped(counted: Int)
        /// The federation's statistics round finished: its pooled feature statistics now
        /// standardise every participant's inputs (`included`: this node's among them).
        case statisticsPooled(round: Int, included: Bool)
        /// A round went on or aborted without this node.
        case roundMissed(round: Int, reason: String)
        /// The broker could not be reached or was busy; the request is tried again in `wait` seconds.
        case retrying(failure: ExchangeError, wait: Double)
        /// This node witnessed the audit checkpoint of `size` entries (consistent with the one it
        /// saw before) and cosigned it; `witnesses` have cosigned it so far.
        case witnessed(size: Int, witnesses: Int)
    }

    var client: BrokerClient
    let home: String
    let federation: String
    let identity: NodeIdentity
    let transport: X25519.PublicKey
    /// The broker's checkpoint key, signed by its identity: what this node witnesses with.
    let checkpointKey: NoteVerifier
    /// How often to poll for the round's state, in seconds.
    public var pollInterval = 0.2

    /// A participant of the federation `federation` names among the enrolments in `home` (its
    /// only one when nil), keeping its round state in that enrolment's folder.
    public static func connect(
        home: String,
        federation: String? = nil,
        identity: NodeIdentity
    ) async throws
        -> Participant
    {
        let held = try Enrolment.select(home: home, federation: federation)
        let enrolment = held.enrolment
        guard enrolment.role == .participant else {
            throw ExchangeError(.forbidden, "this node enrolled as \(enrolment.role.rawValue), not participant")
        }
        let broker = try enrolment.brokerIdentity
        let (client, info) = try await withRetries { try await enrolment.connect(identity: identity.identity) }
        return Participant(
            client: client,
            home: held.folder,
            federation: enrolment.federation,
            identity: identity,
            transport: client.transport!,
            checkpointKey: try BrokerDeliveryKeys(info, broker: broker).checkpoint
        )
    }

    /// The federation's description and current model round.
    public func info() async throws -> FederationInfo {
        try await client.json("GET", "/v1/federations/\(federation)")
    }

    /// The current global model of the federation `spec` describes, its digest checked (over
    /// its standardisation too when the federation pools statistics, when it does not, the
    /// standardisation must be the one the schema gives; over SCAFFOLD's control variate, which
    /// a SCAFFOLD federation's model must carry and no other's may).
    public func model(spec: FederationSpec) async throws -> (file: ModelFile, round: Int, digest: [UInt8]) {
        let reply = try await client.send("GET", "/v1/federations/\(federation)/model")
        let file = try ModelFile.decode(reply.body, name: "the broker's model")
        guard spec.policy.poolsStatistics || file.standardisation == FederatedModel.standardisation(for: spec.schema)
        else {
            throw ExchangeError(.transport, "the model's standardisation is not the one the federation's schema gives")
        }
        let digest = try FederatedModel.digest(
            file.model,
            standardisation: file.standardisation,
            control: file.control,
            of: spec
        )
        guard let claimed = reply.headers["cairn-model-digest"], claimed == Hex.encode(digest) else {
            throw ExchangeError(.transport, "the model's digest does not match the one the broker names")
        }
        return (file, Int(reply.headers["cairn-model-round"] ?? "") ?? 0, digest)
    }

    /// This node's record.
    public func record() async throws -> MemberRecord {
        try await client.json("GET", "/v1/me?federation=\(federation)")
    }

    /// Witnesses the audit checkpoint signed when the federation's latest round finished: checks
    /// it against the last one this node accepted (``Witness``; a rewritten log or a split view
    /// throws, with the evidence kept) and sends the broker this node's cosignature.
    public func witness() async throws -> (checkpoint: Checkpoint, witnesses: Int) {
        let witness = Witness(home: home, checkpointKey: checkpointKey, identity: identity.identity)
        let view: WitnessView = try await client.json(
            "GET",
            "/v1/federations/\(federation)/checkpoint?from=\(try witness.size())"
        )
        let (checkpoint, cosignature) = try witness.observe(view, time: unixTime())
        let receipt: CosignatureReceipt = try await client.json(
            "POST",
            "/v1/federations/\(federation)/cosignatures",
            CosignatureReport(
                size: checkpoint.size,
                time: cosignature.time,
                signature: Hex.encode(cosignature.signature)
            )
        )
        return (checkpoint, receipt.witnesses)
    }

    /// Takes part in rounds until this node's input is in the sum of `rounds` training rounds
    /// (nil: no limit), or the federation stops training after it was seen training, training on
    /// `data` (validated by the caller, not standardised: each round standardises it, and
    /// `evaluation`, as the round's model file says), and reports each step. A round that finished
    /// without this node's input or aborted does not count. An answer the broker refuses makes
    /// the node sit that round out, its saved state for the round discarded (never resent).
    public func run(
        data: Dataset,
        evaluation: Dataset?,
        rounds: Int?,
        report: @escaping @Sendable (Event) -> Void
    ) async throws {
        var participant = self
        participant.client.onRetry = { failure, wait in report(.retrying(failure: failure, wait: wait)) }
        try await participant.take(data: data, evaluation: evaluation, rounds: rounds, report: report)
    }

    private func take(
        data: Dataset,
        evaluation: Dataset?,
        rounds: Int?,
        report: @Sendable (Event) -> Void
    ) async throws {
        let start = try await info()
        let spec = start.spec
        var lastModelRound = start.modelRound
        var counted = 0
        var state = RoundState()
        var first = true
        var sawTraining = false
        var lastWait: (round: Int, phase: String, waiting: Int)?
        let answering = ["advertise", "share", "mask", "check", "unmask"]
        while rounds.map({ counted < $0 }) ?? true {
            let view: RoundView = try await client.json("GET", "/v1/federations/\(federation)/round")
            if first, view.phase == "aborted" {
                // It aborted before this node started: not this node's to report.
                state.reportedAborts.insert(view.round)
            }
            first = false
            sawTraining = sawTraining || view.training
            let current = view.modelRound
            if current > lastModelRound {
                var score: (round: Int, evaluation: Evaluation, refused: String?)?
                if let evaluation { score = try await evaluate(on: evaluation, spec: spec) }
                let newest = max(current, score?.round ?? 0)
                // Each round as the broker recorded it: with this node's input in its sum, or not.
                let record: MemberRecord = try await client.json("GET", "/v1/me?federation=\(federation)")
                let summed = Set(record.rounds.filter(\.included).map(\.round))
                let aborted = Set(record.rounds.filter { $0.outcome == "aborted" }.map(\.round))
                let statistics = Set(record.rounds.filter { $0.statistics == true }.map(\.round))
                for r in (lastModelRound + 1)...newest {
                    if statistics.contains(r), !aborted.contains(r) {
                        report(.statisticsPooled(round: r, included: summed.contains(r)))
                        continue
                    }
                    if aborted.contains(r) {
                        // An aborted round made no model: said once, as aborted, never as finished.
                        if !state.reportedAborts.contains(r) {
                            state.reportedAborts.insert(r)
                            report(.roundMissed(round: r, reason: "the round aborted"))
                        }
                        continue
                    }
                    if summed.contains(r) { counted += 1 }
                    report(
                        .roundFinished(
                            round: r,
                            included: summed.contains(r),
                            counted: counted,
                            target: rounds,
                            evaluation: r == score?.round ? score?.evaluation : nil,
                            refused: r == score?.round ? score?.refused : nil
                        )
                    )
                }
                lastModelRound = newest
                try discardState(through: newest)
                let (checkpoint, witnesses) = try await witness()
                report(.witnessed(size: checkpoint.size, witnesses: witnesses))
                continue
            }
            if view.index >= 0, !view.answered, answering.contains(view.phase) {
                do {
                    try await step(view, spec: spec, data: data, state: &state, report: report)
                } catch let error as SecAggError {
                    state.refused.insert(view.round)
                    report(.roundMissed(round: view.round, reason: error.message))
                } catch let error as ExchangeError where error.code == .conflict {
                    // The phase moved on while this node answered; the next poll shows where it is.
                } catch let error as ExchangeError where !error.isRetryable {
                    // The broker refused this node's answer (one altered on the way, say): the node
                    // sits the round out and forgets it, so a restart does not send it again.
                    state.refused.insert(view.round)
                    try discardState(through: view.round)
                    report(
                        .roundMissed(
                            round: view.round,
                            reason: "its \(view.phase) answer was not accepted: \(error.message)"
                        )
                    )
                }
            } else if view.phase == "aborted", !state.reportedAborts.contains(view.round) {
                try discardState(through: view.round)
                state.reportedAborts.insert(view.round)
                report(
                    .roundMissed(
                        round: view.round,
                        reason: "the round aborted" + (view.reason.isEmpty ? "" : ": \(view.reason)")
                    )
                )
            } else if view.answered, answering.contains(view.phase),
                lastWait.map({ $0 != (view.round, view.phase, view.waiting) }) ?? true
            {
                lastWait = (view.round, view.phase, view.waiting)
                report(
                    .waiting(
                        round: view.round,
                        phase: view.phase,
                        participants: view.waiting,
                        secondsLeft: max(0, view.deadline - unixTime())
                    )
                )
            } else if sawTraining, !view.training, !answering.contains(view.phase) {
                report(.trainingStopped(counted: counted))
                return
            }
            try await Task.sleep(for: .seconds(pollInterval))
        }
    }

    /// Scores the current global model on `heldOut` and reports the score to the broker for
    /// federated evaluation (only the row count, accuracy and log-loss leave this node). A refusal
    /// (a different score already given for that round, say) is returned, not thrown: training
    /// goes on. A model that has not been trained yet (round 0's parameters, as after the
    /// statistics round) is neither scored nor reported: nil.
    func evaluate(
        on heldOut: Dataset,
        spec: FederationSpec
    ) async throws -> (
        round: Int, evaluation: Evaluation, refused: String?
    )? {
        let (file, round, digest) = try await model(spec: spec)
        if file.model.parameters == (try FederatedModel.initialModel(of: spec)).parameters { return nil }
        let heldOut = file.standardisation.apply(to: heldOut)
        let evaluation = Evaluation(
            probabilities: file.model.probabilities(heldOut.features),
            labels: heldOut.labels,
            classes: file.model.architecture.classes
        )
        do {
            let _: EvaluationReport = try await client.json(
                "POST",
                "/v1/federations/\(federation)/evaluations",
                EvaluationReport(
                    round: round,
                    parametersDigest: Hex.encode(digest),
                    samples: evaluation.sampleCount,
                    accuracy: evaluation.accuracy,
                    logLoss: evaluation.logLoss
                )
            )
            return (round, evaluation, nil)
        } catch let error as ExchangeError where [.conflict, .malformed, .notFound].contains(error.code) {
            return (round, evaluation, error.message)
        }
    }

    /// What this process remembers between polls.
    struct RoundState {
        var round = 0
        var client: SecAggClient?
        var update: (words: [UInt32], samples: UInt32)?
        var refused: Set<Int> = []
        var reportedAborts: Set<Int> = []
    }

    private func step(
        _ view: RoundView,
        spec: FederationSpec,
        data: Dataset,
        state: inout RoundState,
        report: (Event) -> Void
    ) async throws {
        guard !state.refused.contains(view.round) else { return }
        let config = try RoundConfig(decoding: try Hex.decode(view.config))
        guard config.federation == federation, config.round == UInt64(view.round) else {
            throw SecAggError(.wrongSession, "the broker's round configuration is for another federation or round")
        }
        if state.round != view.round {
            state = RoundState(round: view.round, refused: state.refused, reportedAborts: state.reportedAborts)
            state.client = try loadState(round: view.round)
        }
        let message = try Hex.decode(view.message)
        let base = "/v1/federations/\(federation)/rounds/\(view.round)/"
        switch view.phase {
        case "advertise":
            report(.roundOpened(round: view.round, participants: config.participantCount))
            var client = try state.client ?? SecAggClient(config: config, identity: identity.identity)
            let advert = try client.advertise()
            try saveState(client, round: view.round)
            state.client = client
            try await post(base + "advertise", advert.encoded, view, report)
        case "share":
            let answer = try answering(&state, view) { try $0.shareKeys(try KeyList(decoding: message)).encoded }
            try await post(base + "share", answer, view, report)
        case "mask":
            guard var client = state.client, !message.isEmpty else {
                throw SecAggError(.wrongPhase, "this node dropped out before the masking phase")
            }
            if state.update == nil { state.update = try await input(spec: spec, config: config, data: data) }
            let (words, samples) = state.update!
            let masked = try client.maskInput(try ShareDelivery(decoding: message), input: words, sampleCount: samples)
            try saveState(client, round: view.round)
            state.client = client
            let layout = MaskedUpload(wordCount: config.wordCount, session: masked.session, sender: masked.sender)
            var body: [UInt8] = []
            body.reserveCapacity(layout.bodyByteCount)
            let commitment = try layout.encrypt(masked.words, key: try client.uploadKey(brokerKey: transport)) {
                body += $0
            }
            try await post(base + "input", body, view, report, digest: commitment)
        case "check":
            let answer = try answering(&state, view) {
                try $0.signSurvivors(try ConsistencyRequest(decoding: message)).encoded
            }
            try await post(base + "check", answer, view, report)
        case "unmask":
            let answer = try answering(&state, view) { try $0.unmask(try UnmaskRequest(decoding: message)).encoded }
            try await post(base + "unmask", answer, view, report)
        default:
            return
        }
    }

    /// Runs one step of the saved client and writes its new state to disk before the answer is
    /// returned, so nothing leaves this node that its saved state does not record (above all,
    /// which share of each peer it revealed).
    private func answering(
        _ state: inout RoundState,
        _ view: RoundView,
        _ step: (inout SecAggClient) throws -> [UInt8]
    ) throws -> [UInt8] {
        guard var client = state.client else {
            throw SecAggError(.wrongPhase, "this node has no state for round \(view.round)")
        }
        let answer = try step(&client)
        try saveState(client, round: view.round)
        state.client = client
        return answer
    }

    private func post(
        _ path: String,
        _ body: [UInt8],
        _ view: RoundView,
        _ report: (Event) -> Void,
        digest: [UInt8]? = nil
    ) async throws {
        _ = try await client.send("POST", path, body: body, bodyDigest: digest, contentType: "application/octet-stream")
        report(.answered(round: view.round, phase: view.phase, bytes: body.count))
    }

    /// This node's input to the round: in a statistics round, its feature statistics; else local
    /// training from the round's base model on the data standardised as the model file says, as
    /// the quantised, weighted update. With the row count either way.
    private func input(spec: FederationSpec, config: RoundConfig, data: Dataset) async throws -> ([UInt32], UInt32) {
        let (file, _, digest) = try await model(spec: spec)
        let policy = spec.policy
        if spec.policy.poolsStatistics, config.baseModelDigest == (try FeatureStatistics.roundDigest(base: digest)),
            config.dimension == FeatureStatistics.dimension(inputs: data.inputCount)
        {
            return try FeatureStatistics.input(of: data, maximumRows: Int(policy.maximumSampleCount))
        }
        guard digest == config.baseModelDigest else {
            throw SecAggError(.wrongSession, "the broker's model is not the one this round starts from")
        }
        let data = file.standardisation.apply(to: data)
        let settings = TrainingSettings(
            optimizer: .sgd,
            epochs: policy.localEpochs,
            batchSize: policy.batchSize,
            learningRate: policy.learningRate,
            l2: policy.l2,
            seed: config.round &* 7919 &+ UInt64(identity.identity.publicKey.rawRepresentation[0]),
            proximal: policy.proximal
        )
        let samples = min(data.count, Int(policy.maximumSampleCount))
        guard FederatedModel.usesControlVariates(spec), let server = file.control else {
            let (local, _) = try Trainer.localRound(from: file.model, on: data, settings: settings)
            let words = try FederatedModel.quantisedUpdate(
                local: local,
                global: file.model,
                sampleCount: samples,
                policy: policy
            )
            return (words, UInt32(samples))
        }
        let own = try await controlVariate(before: Int(config.round), parameters: file.model.parameters.count)
        let (local, next) = try Trainer.localRound(
            from: file.model,
            on: data,
            settings: settings,
            control: (server, own)
        )
        // Kept before the input leaves: it becomes this node's cᵢ only if the round sums the input.
        try ControlVariateFiles.write(next!, round: Int(config.round), to: ControlVariateFiles.pending, in: home)
        let words = try FederatedModel.quantisedUpdate(
            try local.delta(from: file.model) + zip(next!, own).map { $0 - $1 },
            sampleCount: samples,
            policy: policy
        )
        return (words, UInt32(samples))
    }

    // MARK: SCAFFOLD's control variate on disk

    /// This node's cᵢ for round `round` (zeros before its first summed round), after settling a
    /// pending one from an earlier round against the broker's record of which rounds summed
    /// this node's input.
    private func controlVariate(before round: Int, parameters: Int) async throws -> [Float] {
        let pending = try ControlVariateFiles.read(ControlVariateFiles.pending, in: home, parameters: parameters)
        var summed: Set<Int> = []
        if let pending, pending.round < round {
            summed = Set(try await record().rounds.filter(\.included).map(\.round))
        }
        return try ControlVariateFiles.settle(in: home, before: round, summed: summed, parameters: parameters)
    }

    // MARK: Round state on disk

    private var statePath: String { home + "/round.state" }

    private func stateKey(round: Int) throws -> SymmetricKey {
        var context = ByteWriter()
        context.string(federation)
        context.u64(UInt64(round))
        return try BLAKE2b.deriveKey(from: identity.identity.seed, domain: .nodeRoundState, context: context.bytes)
    }

    /// Encrypts the client's state (XChaCha20-Poly1305 under a key derived from the identity
    /// key, the federation and the round) and writes it atomically.
    private func saveState(_ client: SecAggClient, round: Int) throws {
        var w = ByteWriter()
        w.u64(UInt64(round))
        let nonce = XChaCha20Poly1305.Nonce()
        let sealed = try XChaCha20Poly1305.seal(
            client.savedState(),
            key: try stateKey(round: round),
            nonce: nonce,
            authenticating: w.bytes
        )
        try DurableFile.write(w.bytes + nonce.bytes + sealed, to: statePath, replace: true)
    }

    /// Deletes the saved round state once its round (`round` or an earlier one) has ended: it
    /// holds the round's secret keys and mask seed, which nothing needs after that.
    private func discardState(through round: Int) throws {
        guard DurableFile.exists(statePath) else { return }
        let bytes = try DurableFile.read(statePath, maximum: 64 << 20)
        var reader = ByteReader(bytes)
        let saved = (try? reader.u64("round")).map { Int(clamping: $0) } ?? 0
        if saved <= round { unlink(statePath) }
    }

    private func loadState(round: Int) throws -> SecAggClient? {
        guard DurableFile.exists(statePath) else { return nil }
        let bytes = try DurableFile.read(statePath, maximum: 64 << 20)
        guard bytes.count > 32 else { return nil }
        var reader = ByteReader(bytes)
        guard try reader.u64("round") == UInt64(round) else { return nil }
        let nonce = try XChaCha20Poly1305.Nonce(bytes: try reader.fixed(24, "nonce"))
        let plain = try XChaCha20Poly1305.openSecret(
            try reader.fixed(reader.remaining, "state"),
            key: try stateKey(round: round),
            nonce: nonce,
            authenticating: Array(bytes[0..<8])
        )
        return try SecAggClient(restoring: plain, identity: identity.identity)
    }
}

/// SCAFFOLD's control variate in an enrolment folder: `scaffold.control` holds this node's cᵢ
/// and `scaffold.pending` the one its latest input carried, each as the round it came from
/// (u64) then float32 values, little-endian. The pending one replaces cᵢ once a later round
/// needs cᵢ and the broker's record shows that the pending one's round summed this node's input;
/// otherwise it is dropped, so cᵢ only ever moves by a change the federation's `c` took in.
enum ControlVariateFiles {
    static let current = "scaffold.control"
    static let pending = "scaffold.pending"

    static func write(_ values: [Float], round: Int, to name: String, in folder: String) throws {
        var w = ByteWriter(capacity: 8 + 4 * values.count)
        w.u64(UInt64(round))
        for x in values { w.u32(x.bitPattern) }
        try DurableFile.write(w.bytes, to: folder + "/" + name, replace: true)
    }

    static func read(_ name: String, in folder: String, parameters: Int) throws -> (round: Int, values: [Float])? {
        let path = folder + "/" + name
        guard DurableFile.exists(path) else { return nil }
        var reader = ByteReader(try DurableFile.read(path, maximum: 8 + 4 * parameters))
        let round = Int(clamping: try reader.u64("round"))
        let values = try reader.u32Words(parameters, "control variate").map(Float.init(bitPattern:))
        guard reader.remaining == 0, values.allSatisfy(\.isFinite) else {
            throw ExchangeError(.internal, "\(path) is not a control variate of \(parameters) finite values")
        }
        return (round, values)
    }

    /// cᵢ for round `round`, after settling a pending one from an earlier round: kept as cᵢ when
    /// its round is in `summed`, dropped otherwise.
    static func settle(in folder: String, before round: Int, summed: Set<Int>, parameters: Int) throws -> [Float] {
        if let pending = try read(pending, in: folder, parameters: parameters), pending.round < round {
            if summed.contains(pending.round) {
                try write(pending.values, round: pending.round, to: current, in: folder)
            }
            unlink(folder + "/" + Self.pending)
        }
        return try read(current, in: folder, parameters: parameters)?.values ?? [Float](repeating: 0, count: parameters)
    }
}

extension Domain {
    /// The key a node's saved round state is encrypted under.
    static let nodeRoundState = Domain("cairn/node-round-state/v1")
}
