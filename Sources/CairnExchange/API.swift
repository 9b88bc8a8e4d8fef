public import CairnModels

// The JSON bodies of the broker's HTTP API (`Protocol/openapi.yaml` is the reference). Keys and
// digests are lowercase hex; times are Unix seconds.

/// Who a caller is to the broker. Every enrolled key has exactly one role.
public enum Role: String, Codable, Sendable, CaseIterable {
    /// Runs the broker: creates federations, invites, suspends, starts and stops training.
    case `operator`
    /// Holds data and takes part in rounds.
    case participant
    /// Holds or requests licences for models (issue #8).
    case licensee
    /// Reads audit material.
    case auditor
}

/// `GET /v1/broker`: who the broker is. The node pins ``identityKey`` from its invite and checks
/// ``transportSignature`` before it encrypts anything to ``transportKey``.
public struct BrokerInfo: Codable, Sendable, Hashable {
    /// The audit log's origin (names the exchange).
    public var origin: String
    /// The broker's Ed25519 identity key.
    public var identityKey: String
    /// The broker's X25519 transport key (masked inputs are encrypted to it).
    public var transportKey: String
    /// The identity key's signature (`cairn/broker-transport-key/v1`) over the transport key.
    public var transportSignature: String
    /// The broker's Ed25519 licence key (hex): it signs licences, container headers and model versions.
    public var licenceKey: String
    /// The identity key's signature (`cairn/broker-licence-key/v1`) over the licence key.
    public var licenceKeySignature: String
    /// The audit log's checkpoint verifier key (C2SP form, `<origin>+<id>+<base64>`).
    public var checkpointKey: String
    /// The identity key's signature (`cairn/broker-checkpoint-key/v1`) over the verifier key's UTF-8.
    public var checkpointKeySignature: String
    /// The software release.
    public var version: String
    /// The TLS certificate the broker serves (PEM), when it serves TLS: a node compares its
    /// fingerprint (``TLSCertificate/fingerprint(pem:)``) with the one in its invite and then
    /// trusts this certificate alone.
    public var tlsCertificate: String?

    /// A broker description.
    public init(
        origin: String,
        identityKey: String,
        transportKey: String,
        transportSignature: String,
        licenceKey: String,
        licenceKeySignature: String,
        checkpointKey: String,
        checkpointKeySignature: String,
        version: String,
        tlsCertificate: String? = nil
    ) {
        self.origin = origin
        self.identityKey = identityKey
        self.transportKey = transportKey
        self.transportSignature = transportSignature
        self.licenceKey = licenceKey
        self.licenceKeySignature = licenceKeySignature
        self.checkpointKey = checkpointKey
        self.checkpointKeySignature = checkpointKeySignature
        self.version = version
        self.tlsCertificate = tlsCertificate
    }
}

/// The deadlines of a round's five phases, in seconds each.
public struct PhaseDeadlines: Codable, Sendable, Hashable {
    /// AdvertiseKeys (includes the participants' local training).
    public var advertise: Int
    /// ShareKeys.
    public var share: Int
    /// MaskedInput uploads.
    public var mask: Int
    /// ConsistencyCheck signatures.
    public var check: Int
    /// Unmasking responses.
    public var unmask: Int

    /// Deadlines.
    public init(advertise: Int = 60, share: Int = 30, mask: Int = 120, check: Int = 30, unmask: Int = 30) {
        self.advertise = advertise
        self.share = share
        self.mask = mask
        self.check = check
        self.unmask = unmask
    }

    /// All five, in phase order.
    public var all: [Int] { [advertise, share, mask, check, unmask] }
}

/// A federation's round policy.
public struct RoundPolicy: Codable, Sendable, Hashable {
    /// A round opens only with at least this many active participants (≥ 3).
    public var minimumParticipants: Int
    /// The fraction of participants that may drop out of a round (δ of the parameter rule).
    public var dropoutFraction: Double
    /// The fraction of participants that may collude with the broker (γ of the parameter rule).
    public var corruptFraction: Double
    /// Per-phase deadlines.
    public var deadlines: PhaseDeadlines
    /// Each coordinate of a weighted update is clipped to ±clipBound before quantisation.
    public var clipBound: Float
    /// The fixed-point scale.
    public var scale: Float
    /// The largest sample count a participant may declare; updates are weighted by count / this.
    public var maximumSampleCount: UInt32
    /// Local training per round: epochs over the participant's rows.
    public var localEpochs: Int
    /// Local training: step size.
    public var learningRate: Float
    /// Local training: rows per mini-batch.
    public var batchSize: Int
    /// Local training: L2 penalty.
    public var l2: Float
    /// A participant that answers nothing in this many consecutive rounds is marked inactive and
    /// left out of later rosters until its node calls again (nil: ``defaultInactiveAfter``).
    public var inactiveAfter: Int?

    /// Where the standardisation of the inputs comes from; nil (a policy stored before there was
    /// a choice) is ``Standardising/schema``.
    public var standardisation: Standardising?
    /// How the broker turns a round's mean update into the next model; nil is FedAvg.
    public var serverOptimiser: ServerOptimiser?
    /// FedProx's μ for local training (``TrainingSettings/proximal``): the loss gains
    /// `μ / 2 · ‖w − w_global‖²`; nil or 0 is plain local training.
    public var proximal: Float?
    /// Federated early stopping: the broker stops training once the median of the participants'
    /// reported log losses of a round's model (``FederatedModel/median(_:)``) has not
    /// fallen below 0.9999 of its best for this many scored rounds since training was last
    /// started, whatever rounds are left; nil or 0 runs every round asked for.
    public var patience: Int?

    /// Where a federation's standardisation comes from.
    public enum Standardising: String, Codable, Sendable, Hashable, CaseIterable {
        /// Pooled statistics: a statistics round before the first training round sums every
        /// participant's per-input count, sum and sum of squares through SecAgg+
        /// (``FeatureStatistics``); what `cairn-broker admin create-federation` makes.
        case pooled
        /// The middle and half-width of each number feature's schema range (0 and 1 without one).
        case schema
    }

    /// Whether the federation standardises on pooled statistics.
    public var poolsStatistics: Bool { standardisation == .pooled }

    /// Rounds missed in a row before a participant is inactive, when the policy does not say.
    public static let defaultInactiveAfter = 3

    /// A policy; the defaults suit the shipped datasets.
    public init(
        minimumParticipants: Int = 3,
        dropoutFraction: Double = 0.1,
        corruptFraction: Double = 0.05,
        deadlines: PhaseDeadlines = PhaseDeadlines(),
        clipBound: Float = 4,
        scale: Float = 1_048_576,
        maximumSampleCount: UInt32 = 100_000,
        localEpochs: Int = 2,
        learningRate: Float = 0.05,
        batchSize: Int = 16,
        l2: Float = 0.001,
        inactiveAfter: Int? = nil,
        standardisation: Standardising? = nil,
        serverOptimiser: ServerOptimiser? = nil,
        proximal: Float? = nil,
        patience: Int? = nil
    ) {
        self.minimumParticipants = minimumParticipants
        self.dropoutFraction = dropoutFraction
        self.corruptFraction = corruptFraction
        self.deadlines = deadlines
        self.clipBound = clipBound
        self.scale = scale
        self.maximumSampleCount = maximumSampleCount
        self.localEpochs = localEpochs
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.l2 = l2
        self.inactiveAfter = inactiveAfter
        self.standardisation = standardisation
        self.serverOptimiser = serverOptimiser
        self.proximal = proximal
        self.patience = patience
    }
}

/// The model family a federation trains.
public struct ModelChoice: Codable, Sendable, Hashable {
    /// logistic, softmax or mlp.
    public var kind: ModelArchitecture.Kind
    /// Hidden units (mlp only).
    public var hidden: Int

    /// A choice.
    public init(kind: ModelArchitecture.Kind, hidden: Int = 0) {
        self.kind = kind
        self.hidden = hidden
    }
}

/// `POST /v1/admin/federations`: a federation to create.
public struct FederationSpec: Codable, Sendable, Hashable {
    /// 1–64 characters of `a-z 0-9 - _ .`.
    public var id: String
    /// What the federation is for, for people.
    public var description: String
    /// The data every participant's CSV must follow.
    public var schema: DataSchema
    /// The model.
    public var model: ModelChoice
    /// The round policy.
    public var policy: RoundPolicy

    /// A federation.
    public init(id: String, description: String, schema: DataSchema, model: ModelChoice, policy: RoundPolicy) {
        self.id = id
        self.description = description
        self.schema = schema
        self.model = model
        self.policy = policy
    }
}

/// `POST /v1/admin/federations/{federation}/invites`.
public struct InviteRequest: Codable, Sendable, Hashable {
    /// The role the invite grants.
    public var role: Role
    /// Seconds until it expires (60 s to 30 days).
    public var validFor: Int

    /// A request.
    public init(role: Role, validFor: Int = 86_400) {
        self.role = role
        self.validFor = validFor
    }
}

/// An invite: single use, expiring. ``code`` is `secret.brokerkey` (both hex); the broker keeps
/// only a digest of the secret.
public struct Invite: Codable, Sendable, Hashable {
    /// The code to hand to the invitee.
    public var code: String
    /// The federation.
    public var federation: String
    /// The role.
    public var role: Role
    /// When it expires.
    public var expires: Int64

    /// An invite.
    public init(code: String, federation: String, role: Role, expires: Int64) {
        self.code = code
        self.federation = federation
        self.role = role
        self.expires = expires
    }
}

/// `POST /v1/enrol`: signed by the new key.
public struct EnrolRequest: Codable, Sendable, Hashable {
    /// The invite's secret part (32 hex digits).
    public var invite: String
    /// The X25519 key licensed models are encrypted to (hex).
    public var deliveryKey: String

    /// A request.
    public init(invite: String, deliveryKey: String) {
        self.invite = invite
        self.deliveryKey = deliveryKey
    }
}

/// One enrolled key, as the operator (`GET …/participants`) and the key itself (`GET /v1/me`) see it.
public struct MemberRecord: Codable, Sendable, Hashable {
    /// The identity key (hex).
    public var key: String
    /// Its short fingerprint.
    public var fingerprint: String
    /// Its role.
    public var role: Role
    /// Its federation.
    public var federation: String
    /// `active` or `suspended`.
    public var status: String
    /// When it enrolled.
    public var enrolled: Int64
    /// Its part in each round it was on the roster of, newest first.
    public var rounds: [Contribution]
    /// The display name recorded for its fingerprint with `cairn-audit people record`; only in
    /// the operator's lists, absent when none is recorded.
    public var name: String?

    /// A record.
    public init(
        key: String,
        fingerprint: String,
        role: Role,
        federation: String,
        status: String,
        enrolled: Int64,
        rounds: [Contribution]
    ) {
        self.key = key
        self.fingerprint = fingerprint
        self.role = role
        self.federation = federation
        self.status = status
        self.enrolled = enrolled
        self.rounds = rounds
    }
}

/// A participant's part in one round.
public struct Contribution: Codable, Sendable, Hashable {
    /// The round.
    public var round: Int
    /// The phases it answered, in order (`advertise`, `share`, `mask`, `check`, `unmask`).
    public var phases: [String]
    /// Whether its input is in the round's sum: the round finished and its masked input was
    /// accepted (the sum holds every input accepted before masking closed, also of a participant
    /// that answered nothing after it).
    public var included: Bool
    /// The round's outcome: `open`, `finished` or `aborted`.
    public var outcome: String
    /// True for the federation's statistics round (``FeatureStatistics``), which trains nothing;
    /// absent for a training round.
    public var statistics: Bool?

    /// A contribution.
    public init(round: Int, phases: [String], included: Bool, outcome: String) {
        self.round = round
        self.phases = phases
        self.included = included
        self.outcome = outcome
    }
}

/// `POST /v1/admin/federations/{federation}/training`.
public struct TrainingRequest: Codable, Sendable, Hashable {
    /// `start` or `stop`.
    public var action: String
    /// With `start`: how many more rounds to run (1–10,000).
    public var rounds: Int?

    /// A request.
    public init(action: String, rounds: Int? = nil) {
        self.action = action
        self.rounds = rounds
    }
}

/// One round as the operator sees it.
public struct RoundSummary: Codable, Sendable, Hashable {
    /// The round number (1, 2, …).
    public var round: Int
    /// `advertise`, `share`, `mask`, `check`, `unmask`, `finished` or `aborted`.
    public var phase: String
    /// The open phase's deadline (Unix seconds); 0 once closed.
    public var deadline: Int64
    /// The roster size.
    public var participants: Int
    /// k, t and T.
    public var neighbours: Int
    /// t.
    public var threshold: Int
    /// T.
    public var signatureThreshold: Int
    /// How many answered each phase so far, in phase order.
    public var answered: [Int]
    /// Participants whose inputs are in the sum (finished rounds).
    public var included: Int
    /// Why it aborted, or empty.
    public var reason: String
    /// The digest of the model the round produced (finished rounds), hex.
    public var modelDigest: String
    /// The open phase: the fingerprints of the participants it still waits for (empty when the
    /// round is not open).
    public var waitingFor: [String]

    /// A summary.
    public init(
        round: Int,
        phase: String,
        deadline: Int64,
        participants: Int,
        neighbours: Int,
        threshold: Int,
        signatureThreshold: Int,
        answered: [Int],
        included: Int,
        reason: String,
        modelDigest: String,
        waitingFor: [String] = []
    ) {
        self.waitingFor = waitingFor
        self.round = round
        self.phase = phase
        self.deadline = deadline
        self.participants = participants
        self.neighbours = neighbours
        self.threshold = threshold
        self.signatureThreshold = signatureThreshold
        self.answered = answered
        self.included = included
        self.reason = reason
        self.modelDigest = modelDigest
    }
}

/// `GET /v1/admin/federations/{federation}`.
public struct FederationStatus: Codable, Sendable, Hashable {
    /// The federation.
    public var id: String
    /// `idle` (never started), `training` or `stopped`.
    public var state: String
    /// Rounds still to run.
    public var roundsLeft: Int
    /// Active participants.
    public var participants: Int
    /// The current model's digest (hex) and the round that produced it (0: the initial model).
    public var modelDigest: String
    /// The round that produced the current model.
    public var modelRound: Int
    /// Every round, newest first.
    public var rounds: [RoundSummary]
    /// Why the broker itself stopped training (federated early stopping), while it stays stopped;
    /// nil otherwise.
    public var stoppedBecause: String?

    /// A status.
    public init(
        id: String,
        state: String,
        roundsLeft: Int,
        participants: Int,
        modelDigest: String,
        modelRound: Int,
        rounds: [RoundSummary],
        stoppedBecause: String? = nil
    ) {
        self.stoppedBecause = stoppedBecause
        self.id = id
        self.state = state
        self.roundsLeft = roundsLeft
        self.participants = participants
        self.modelDigest = modelDigest
        self.modelRound = modelRound
        self.rounds = rounds
    }
}

/// `GET /v1/federations/{federation}`: what a participant needs to train.
public struct FederationInfo: Codable, Sendable, Hashable {
    /// The federation as created.
    public var spec: FederationSpec
    /// The current model's digest (hex).
    public var modelDigest: String
    /// The round that produced it.
    public var modelRound: Int

    /// Info.
    public init(spec: FederationSpec, modelDigest: String, modelRound: Int) {
        self.spec = spec
        self.modelDigest = modelDigest
        self.modelRound = modelRound
    }
}

/// `GET /v1/federations/{federation}/round`: the open round as one participant sees it.
public struct RoundView: Codable, Sendable, Hashable {
    /// The round number; 0 when no round is open.
    public var round: Int
    /// `none`, `advertise`, `share`, `mask`, `check`, `unmask`, `finished` or `aborted`.
    public var phase: String
    /// The open phase's deadline (Unix seconds).
    public var deadline: Int64
    /// This participant's roster index, or -1 when it is not on the roster.
    public var index: Int
    /// The round configuration (`RoundConfig` encoding, hex).
    public var config: String
    /// The message this participant answers in this phase (hex): the KeyList (share), its
    /// ShareDelivery (mask), the ConsistencyRequest (check) or the UnmaskRequest (unmask); empty
    /// in advertise, and when the participant has dropped out of the round.
    public var message: String
    /// Whether the broker already holds this participant's answer for this phase.
    public var answered: Bool
    /// The round that produced the current global model (0: the initial model).
    public var modelRound: Int
    /// How many participants the open phase still waits for (0 when no round is open).
    public var waiting: Int
    /// Why the round aborted, when `phase` is `aborted`; else empty.
    public var reason: String
    /// Whether the federation is training: it will open another round after this one.
    public var training: Bool

    /// A view.
    public init(
        round: Int,
        phase: String,
        deadline: Int64,
        index: Int,
        config: String,
        message: String,
        answered: Bool,
        modelRound: Int,
        waiting: Int = 0,
        reason: String = "",
        training: Bool = false
    ) {
        self.modelRound = modelRound
        self.waiting = waiting
        self.reason = reason
        self.training = training
        self.round = round
        self.phase = phase
        self.deadline = deadline
        self.index = index
        self.config = config
        self.message = message
        self.answered = answered
    }
}

/// Every error response: the stable code and a message for a person.
public struct Problem: Codable, Sendable, Hashable {
    /// The error code (`malformed`, `unauthenticated`, …).
    public var error: String
    /// What went wrong.
    public var message: String

    /// A problem.
    public init(error: String, message: String) {
        self.error = error
        self.message = message
    }
}

/// `GET /v1/federations/{federation}/checkpoint?from=M`: an audit checkpoint for the node to
/// witness, and the consistency proof from the size it saw before (`Protocol/README.md`,
/// "Witnessed checkpoints").
public struct WitnessView: Codable, Sendable, Hashable {
    /// The signed checkpoint (C2SP note, signed by the broker's checkpoint key).
    public var checkpoint: String
    /// The size the proof starts from (the `from` asked for).
    public var from: Int
    /// The RFC 6962 consistency proof from `from` to the checkpoint's size, hex hashes.
    public var proof: [String]

    /// A view.
    public init(checkpoint: String, from: Int, proof: [String]) {
        self.checkpoint = checkpoint
        self.from = from
        self.proof = proof
    }
}

/// `POST /v1/federations/{federation}/cosignatures`: the node's C2SP tlog-cosignature/v1 of the
/// checkpoint of `size` entries, by its identity key.
public struct CosignatureReport: Codable, Sendable, Hashable {
    /// The cosigned checkpoint's size.
    public var size: Int
    /// The cosignature's time (Unix seconds).
    public var time: Int64
    /// The Ed25519 signature, 128 hex digits.
    public var signature: String

    /// A report.
    public init(size: Int, time: Int64, signature: String) {
        self.size = size
        self.time = time
        self.signature = signature
    }
}

/// The answer to a ``CosignatureReport``: how many witnesses have cosigned that checkpoint.
public struct CosignatureReceipt: Codable, Sendable, Hashable {
    /// The checkpoint's size.
    public var size: Int
    /// The witnesses whose cosignature of it the broker holds, this one included.
    public var witnesses: Int

    /// A receipt.
    public init(size: Int, witnesses: Int) {
        self.size = size
        self.witnesses = witnesses
    }
}

/// `GET /v1/audit/bundle`: an audit bundle (`cairn-audit export`'s folder) as its files, for an
/// auditor's or the operator's node to write out and verify.
public struct AuditBundleFiles: Codable, Sendable, Hashable {
    /// One file of the bundle.
    public struct File: Codable, Sendable, Hashable {
        /// Its name in the bundle folder (no slashes).
        public var name: String
        /// Its bytes, base64.
        public var data: String

        /// A file.
        public init(name: String, data: String) {
            self.name = name
            self.data = data
        }
    }

    /// The files, by name.
    public var files: [File]

    /// The files.
    public init(files: [File]) { self.files = files }
}
