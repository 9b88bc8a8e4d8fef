public import CairnCrypto
public import CairnModels
import CairnWire

// The JSON bodies of the registry, catalogue and licensing endpoints (`Protocol/openapi.yaml`).

/// How a listing is priced. `fixed`: `price` per licence; `cost-plus`: `cost × (1 + margin)` per
/// licence (the broker computes `price`); `usage`: `price` per `unit` of use.
public struct LicenceOffer: Codable, Sendable, Hashable {
    /// What a licence grants: `inference`, `fine-tuning`.
    public var entitlements: [String]
    /// Days a licence is valid from its grant (1–366).
    public var licenceDays: Int
    /// Containers one licence may fetch (1–1000).
    public var deliveryLimit: Int
    /// `fixed`, `cost-plus` or `usage`.
    public var pricing: String
    /// The price (for `cost-plus`, computed).
    public var price: Double
    /// `cost-plus` only: the cost.
    public var cost: Double?
    /// `cost-plus` only: the margin (0.2 = 20 %).
    public var margin: Double?
    /// `usage` only: what one unit is (for example `1000 predictions`).
    public var unit: String?
    /// The currency (ISO 4217 code).
    public var currency: String
    /// Whether a participant of the federation that asks is granted at once.
    public var autoGrantParticipants: Bool

    /// An offer.
    public init(
        entitlements: [String] = ["inference"],
        licenceDays: Int = 30,
        deliveryLimit: Int = 3,
        pricing: String = "fixed",
        price: Double = 0,
        cost: Double? = nil,
        margin: Double? = nil,
        unit: String? = nil,
        currency: String = "EUR",
        autoGrantParticipants: Bool = true
    ) {
        self.entitlements = entitlements
        self.licenceDays = licenceDays
        self.deliveryLimit = deliveryLimit
        self.pricing = pricing
        self.price = price
        self.cost = cost
        self.margin = margin
        self.unit = unit
        self.currency = currency
        self.autoGrantParticipants = autoGrantParticipants
    }
}

/// `POST /v1/admin/federations/{federation}/publish`: publish the current global model as the
/// next version and (re)list it.
public struct PublishRequest: Codable, Sendable, Hashable {
    /// What the model does, for licensees (at most 1000 bytes).
    public var description: String
    /// The licence terms offered.
    public var offer: LicenceOffer

    /// A request.
    public init(description: String, offer: LicenceOffer) {
        self.description = description
        self.offer = offer
    }
}

/// One immutable model version in the registry, with the broker licence key's signature over its
/// canonical encoding (`Protocol/README.md`, "Model registry").
public struct ModelVersion: Codable, Sendable, Hashable {
    /// The model (its federation's id).
    public var model: String
    /// 1, 2, …
    public var version: Int
    /// The round whose model this is, and the rounds since the previous version.
    public var rounds: [Int]
    /// Participants whose inputs are in each of those rounds' sums.
    public var contributors: [Int]
    /// `cairn/model-parameters/v1` digest of the parameters (hex), as in the round's audit entry.
    public var parametersDigest: String
    /// `cairn/model-file/v1` digest of the safetensors file delivered (hex).
    public var fileDigest: String
    /// Evaluation metrics by name.
    public var metrics: [String: Double]
    /// When it was published (Unix seconds).
    public var published: Int64
    /// Broker licence key's signature (hex), domain `cairn/model-version/v1`.
    public var signature: String

    /// A version.
    public init(
        model: String,
        version: Int,
        rounds: [Int],
        contributors: [Int],
        parametersDigest: String,
        fileDigest: String,
        metrics: [String: Double],
        published: Int64,
        signature: String
    ) {
        self.model = model
        self.version = version
        self.rounds = rounds
        self.contributors = contributors
        self.parametersDigest = parametersDigest
        self.fileDigest = fileDigest
        self.metrics = metrics
        self.published = published
        self.signature = signature
    }
}

/// `GET /v1/federations/{federation}/listing`: the catalogue entry.
public struct Listing: Codable, Sendable, Hashable {
    /// The model (its federation's id).
    public var model: String
    /// What it does.
    public var description: String
    /// binary or multiclass.
    public var task: String
    /// The feature schema its inputs follow.
    public var schema: DataSchema
    /// Every version, oldest first.
    public var versions: [ModelVersion]
    /// The terms offered.
    public var offer: LicenceOffer

    /// A listing.
    public init(
        model: String,
        description: String,
        task: String,
        schema: DataSchema,
        versions: [ModelVersion],
        offer: LicenceOffer
    ) {
        self.model = model
        self.description = description
        self.task = task
        self.schema = schema
        self.versions = versions
        self.offer = offer
    }
}

/// `POST /v1/federations/{federation}/evaluations`: a participant's score of one round's global
/// model on its own held-out rows (federated evaluation). The rows never leave the node; the
/// broker averages the scores of a round by row count into the metrics of the version published
/// from it.
public struct EvaluationReport: Codable, Sendable, Hashable {
    /// Fewer scores of a round than this and its version gets no metrics: with one, the
    /// "average" would be that participant's own score.
    public static let minimumEvaluators = 2

    /// The round whose model was scored.
    public var round: Int
    /// That model's `cairn/model-parameters/v1` digest (hex), as the broker served it.
    public var parametersDigest: String
    /// Held-out rows scored (1–10^9).
    public var samples: Int
    /// Share of rows whose most probable class is the label (0–1).
    public var accuracy: Double
    /// Mean cross-entropy per row, natural log (0–1000).
    public var logLoss: Double

    /// A report.
    public init(round: Int, parametersDigest: String, samples: Int, accuracy: Double, logLoss: Double) {
        self.round = round
        self.parametersDigest = parametersDigest
        self.samples = samples
        self.accuracy = accuracy
        self.logLoss = logLoss
    }
}

/// `POST /v1/federations/{federation}/licences`: ask for a licence to the listing.
public struct LicenceRequest: Codable, Sendable, Hashable {
    /// The entitlements wanted, a subset of the offer's.
    public var entitlements: [String]

    /// A request.
    public init(entitlements: [String]) { self.entitlements = entitlements }
}

/// `POST /v1/admin/licences/{id}`: the operator's decision.
public struct LicenceDecision: Codable, Sendable, Hashable {
    /// `grant`, `refuse` or `revoke`.
    public var action: String
    /// Why (recorded in the audit log; at most 200 bytes).
    public var reason: String
    /// `grant` only: the first version the licence covers (default 1; at most the newest).
    public var firstVersion: Int?
    /// `grant` only: the last version it covers (default the newest published; a later one also
    /// covers versions published before the licence expires).
    public var lastVersion: Int?

    /// A decision.
    public init(action: String, reason: String = "", firstVersion: Int? = nil, lastVersion: Int? = nil) {
        self.action = action
        self.reason = reason
        self.firstVersion = firstVersion
        self.lastVersion = lastVersion
    }
}

/// Where a licence's `licence.issue` entry sits in the audit log: the entry, its inclusion proof
/// and a checkpoint signed by the broker's checkpoint key that the proof leads to.
public struct LicenceProof: Codable, Sendable, Hashable {
    /// The entry's index (its sequence number).
    public var index: Int
    /// The entry's canonical encoding (hex).
    public var entry: String
    /// The inclusion proof's hashes (hex), RFC 9162 order.
    public var hashes: [String]
    /// The signed checkpoint note.
    public var checkpoint: String

    /// A proof.
    public init(index: Int, entry: String, hashes: [String], checkpoint: String) {
        self.index = index
        self.entry = entry
        self.hashes = hashes
        self.checkpoint = checkpoint
    }
}

/// A licence request and what became of it.
public struct LicenceRecord: Codable, Sendable, Hashable {
    /// The licence id (32 hex digits).
    public var id: String
    /// The model.
    public var model: String
    /// The licensee's identity key (hex).
    public var licensee: String
    /// `requested`, `granted`, `refused` or `revoked`.
    public var status: String
    /// When it was requested.
    public var requested: Int64
    /// The entitlements asked for (granted ones once granted).
    public var entitlements: [String]
    /// The terms it was requested under.
    public var offer: LicenceOffer
    /// The signed licence (hex), once granted.
    public var licence: String
    /// The first and last versions it covers, once granted.
    public var versions: [Int]?
    /// Containers delivered under it.
    public var deliveries: Int
    /// Its `licence.issue` entry in the audit log, once granted.
    public var proof: LicenceProof?
    /// The licensee's display name recorded with `cairn-audit people record`; only in the
    /// operator's list, absent when none is recorded.
    public var licenseeName: String?

    /// A record.
    public init(
        id: String,
        model: String,
        licensee: String,
        status: String,
        requested: Int64,
        entitlements: [String],
        offer: LicenceOffer,
        licence: String,
        versions: [Int]? = nil,
        deliveries: Int,
        proof: LicenceProof?
    ) {
        self.id = id
        self.model = model
        self.licensee = licensee
        self.status = status
        self.requested = requested
        self.entitlements = entitlements
        self.offer = offer
        self.licence = licence
        self.versions = versions
        self.deliveries = deliveries
        self.proof = proof
    }
}

extension Domain {
    /// The broker licence key's signature on a model version's metadata.
    public static let modelVersion = Domain("cairn/model-version/v1")
    /// The broker identity's signature on its licence key (`GET /v1/broker`).
    public static let brokerLicenceKey = Domain("cairn/broker-licence-key/v1")
    /// The broker identity's signature on its checkpoint verifier key (`GET /v1/broker`).
    public static let brokerCheckpointKey = Domain("cairn/broker-checkpoint-key/v1")
}

extension ModelVersion {
    /// The bytes the broker signs (`Protocol/README.md`, "Model registry"): `u16 1 ‖ label model ‖
    /// u32 version ‖ u32 n ‖ n × (u32 round ‖ u32 contributors) ‖ parameters digest (32) ‖ file
    /// digest (32) ‖ u32 m ‖ m × (label name ‖ u64 IEEE-754 bits), names in byte order ‖ u64 published`.
    public func signedBytes() throws -> [UInt8] {
        guard rounds.count == contributors.count, let p = try? Hex.decode(parametersDigest), p.count == 32,
            let f = try? Hex.decode(fileDigest), f.count == 32, version >= 1
        else { throw ExchangeError(.malformed, "model version \(model) \(version) is malformed") }
        var w = ByteWriter()
        w.u16(1)
        w.label(model)
        w.u32(UInt32(version))
        w.u32(UInt32(rounds.count))
        for (r, c) in zip(rounds, contributors) {
            w.u32(UInt32(r))
            w.u32(UInt32(c))
        }
        w.raw(p)
        w.raw(f)
        let names = metrics.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        w.u32(UInt32(names.count))
        for name in names {
            w.label(name)
            w.u64(metrics[name]!.bitPattern)
        }
        w.u64(UInt64(published))
        return w.bytes
    }

    /// Whether the signature verifies under the broker's licence key.
    public func isSigned(by key: Ed25519.PublicKey) -> Bool {
        guard let bytes = try? signedBytes(), let signature = try? Hex.decode(self.signature) else { return false }
        return key.isValidSignature(signature, for: bytes, domain: .modelVersion)
    }
}
