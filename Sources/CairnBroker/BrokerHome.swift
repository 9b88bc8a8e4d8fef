public import CairnAudit
public import CairnCrypto
import CairnWire
import Foundation

/// The broker's data folder (`Keys/README.md` for the keys):
/// - `broker.keystore`: the identity, checkpoint and licence keys (Ed25519), passphrase-protected;
/// - `broker.json`: the configuration (``BrokerConfig``);
/// - `audit.sqlite`: the audit log (``AuditLog``), with its personal-data table;
/// - `checkpoint.pub`: the checkpoint key's C2SP verifier string, the one thing auditors need;
/// - `tls.crt`, `tls.key`: the self-signed TLS certificate `serve` presents (``BrokerTLS``).
public struct BrokerHome: Sendable {
    /// The keystore's file name.
    public static let keystoreFileName = "broker.keystore"
    /// The configuration's file name.
    public static let configFileName = "broker.json"
    /// The audit log's file name.
    public static let auditFileName = "audit.sqlite"
    /// The checkpoint verifier key's file name.
    public static let verifierFileName = "checkpoint.pub"
    /// Key names in the keystore.
    public static let identityKeyName = "identity"
    /// The checkpoint key signs audit checkpoints and bundle manifests, nothing else.
    public static let checkpointKeyName = "checkpoint"
    /// The licence key signs model metadata, licences and container headers (issue #8).
    public static let licenceKeyName = "licence"
    /// The operator's key signs admin requests to the daemon (role `operator`).
    public static let operatorKeyName = "operator"
    /// The X25519 transport key: masked inputs are encrypted to it.
    public static let transportKeyName = "transport"
    /// Where `serve` writes the URL it listens on, for admin commands and scripts.
    public static let urlFileName = "serve.url"

    /// The folder.
    public let path: String
    /// Its configuration.
    public let config: BrokerConfig

    /// Opens an existing data folder (reads the configuration; unlocks nothing).
    public init(path: String) throws {
        let file = path + "/" + Self.configFileName
        guard DurableFile.exists(file) else {
            throw WireError(
                .io,
                "\(path) is not a broker data folder (no \(Self.configFileName)); run cairn-broker init"
            )
        }
        self.path = path
        config = try BrokerConfig(json: try DurableFile.read(file, maximum: 1 << 20), source: file)
    }

    /// Creates the data folder (mode 0700) with fresh keys, the configuration, the audit log
    /// (its first entry `broker.init`, then a signed checkpoint) and `checkpoint.pub`. Refuses a
    /// folder that already holds a keystore.
    @discardableResult
    public static func create(
        path: String,
        config: BrokerConfig,
        passphrase: SecretBytes,
        parameters: Keystore.KDFParameters = .moderate
    ) throws -> BrokerHome {
        let keystorePath = path + "/" + keystoreFileName
        if DurableFile.exists(keystorePath) {
            throw WireError(.io, "\(keystorePath) already exists; refusing to replace the broker's keys")
        }
        try config.check()
        try DurableFile.makeDirectory(path)
        let identity = try Ed25519.PrivateKey()
        let checkpoint = try Ed25519.PrivateKey()
        let operatorKey = try Ed25519.PrivateKey()
        let keystore = try Keystore(entries: [
            .init(name: identityKeyName, ed25519: identity),
            .init(name: checkpointKeyName, ed25519: checkpoint),
            .init(name: licenceKeyName, ed25519: try Ed25519.PrivateKey()),
            .init(name: operatorKeyName, ed25519: operatorKey),
            .init(name: transportKeyName, x25519: try X25519.PrivateKey()),
        ])
        try keystore.write(to: keystorePath, passphrase: passphrase, parameters: parameters)
        try DurableFile.write(config.json(), to: path + "/" + configFileName, replace: false)
        let signer = try NoteSigner(name: config.origin, key: checkpoint)
        try DurableFile.write(
            Array((signer.verifier.encoded + "\n").utf8),
            to: path + "/" + verifierFileName,
            replace: true
        )
        try BrokerTLS.create(in: path, names: config.listen.map { [$0.host] } ?? [])
        let home = try BrokerHome(path: path)
        let log = try home.openLog()
        try log.append {
            AuditEntry(
                sequence: $0,
                time: AuditEntry.now(),
                actor: "broker:" + identity.publicKey.fingerprint,
                action: "broker.init",
                objectType: "broker",
                objectID: config.origin,
                outcome: .succeeded,
                // The keys that sign requests the log records: the broker's identity (in every
                // signed message) and the operator's; members' keys arrive with their enrolment.
                digests: [
                    .init(name: "broker.identity", bytes: identity.publicKey.rawRepresentation),
                    .init(name: "operator.key", bytes: operatorKey.publicKey.rawRepresentation),
                ]
            )
        }
        try log.signCheckpoint(origin: config.origin, signer: signer)
        return home
    }

    /// Opens the audit log, which checks all of it first. A log that fails the check (entries or
    /// leaves edited, removed or written behind the log's back) is refused with the entry named and
    /// how to investigate: nothing then signs, exports or serves over it.
    public func openLog() throws -> AuditLog {
        do {
            return try AuditLog(path: path + "/" + Self.auditFileName)
        } catch let error as AuditError where error.code == .inconsistent {
            throw AuditError(
                .inconsistent,
                "the audit log in \(path) is not consistent: \(error.message). Nothing will be signed or served over it. Investigate with `cairn-audit verify --data-dir \(path)`, and restore the folder from a backup (`cairn-broker restore`)."
            )
        }
    }

    /// The checkpoint verifier key, from `checkpoint.pub`.
    public func verifier() throws -> NoteVerifier {
        let text = String(
            decoding: try DurableFile.read(path + "/" + Self.verifierFileName, maximum: 4096),
            as: UTF8.self
        )
        return try NoteVerifier(encoded: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The identity key's public half, for `init` to print.
    public func identityKey(passphrase: SecretBytes) throws -> Ed25519.PublicKey {
        try Keystore.read(from: path + "/" + Self.keystoreFileName, passphrase: passphrase)
            .ed25519Key(named: Self.identityKeyName).publicKey
    }

    /// Unlocks the keystore and returns what the daemon needs.
    public func exchangeKeys(passphrase: SecretBytes) throws -> Exchange.Keys {
        let keystore = try Keystore.read(from: path + "/" + Self.keystoreFileName, passphrase: passphrase)
        let signer = try NoteSigner(name: config.origin, key: try keystore.ed25519Key(named: Self.checkpointKeyName))
        guard signer.verifier == (try verifier()) else {
            throw WireError(.invalidValue, "\(Self.verifierFileName) does not hold this keystore's checkpoint key")
        }
        return Exchange.Keys(
            identity: try keystore.ed25519Key(named: Self.identityKeyName),
            transport: try keystore.x25519Key(named: Self.transportKeyName),
            checkpoint: signer,
            licence: try keystore.ed25519Key(named: Self.licenceKeyName),
            operatorKey: try keystore.ed25519Key(named: Self.operatorKeyName).publicKey
        )
    }

    /// Unlocks the keystore and returns the operator's key (admin commands sign with it).
    public func operatorKey(passphrase: SecretBytes) throws -> Ed25519.PrivateKey {
        try adminKeys(passphrase: passphrase).operator
    }

    /// Unlocks the keystore once and returns the operator's key and the broker's identity key,
    /// which admin commands pin the daemon to.
    public func adminKeys(passphrase: SecretBytes) throws -> (operator: Ed25519.PrivateKey, broker: Ed25519.PublicKey) {
        let keystore = try Keystore.read(from: path + "/" + Self.keystoreFileName, passphrase: passphrase)
        return (
            try keystore.ed25519Key(named: Self.operatorKeyName),
            try keystore.ed25519Key(named: Self.identityKeyName).publicKey
        )
    }

    /// The URL `serve` last listened on, if it wrote one.
    public var servedURL: String? {
        guard let bytes = try? DurableFile.read(path + "/" + Self.urlFileName, maximum: 1024) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    /// Unlocks the keystore and returns the checkpoint signer.
    public func checkpointSigner(passphrase: SecretBytes) throws -> NoteSigner {
        let keystore = try Keystore.read(from: path + "/" + Self.keystoreFileName, passphrase: passphrase)
        let signer = try NoteSigner(name: config.origin, key: try keystore.ed25519Key(named: Self.checkpointKeyName))
        guard signer.verifier == (try verifier()) else {
            throw WireError(.invalidValue, "\(Self.verifierFileName) does not hold this keystore's checkpoint key")
        }
        return signer
    }
}

/// The broker's configuration file, `broker.json` (JSON, `cairn-broker-config/v1`).
public struct BrokerConfig: Codable, Hashable, Sendable {
    /// The format tag.
    public static let formatTag = "cairn-broker-config/v1"

    /// Always ``formatTag``.
    public var format = BrokerConfig.formatTag
    /// The audit log's origin (a schema-less URL such as `cairn.example/exchange`); the name of
    /// its checkpoint key.
    public var origin: String
    /// The GDPR Art. 30 record of processing the compliance report prints.
    public var processing: ProcessingRecord
    /// Where `serve` listens unless flags say otherwise (default 127.0.0.1:7400).
    public var listen: Listen?

    /// A bind address.
    public struct Listen: Codable, Hashable, Sendable {
        /// Host name or address.
        public var host: String
        /// TCP port (0: any free port).
        public var port: Int

        /// An address.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// A configuration.
    public init(origin: String, processing: ProcessingRecord, listen: Listen? = Listen(host: "127.0.0.1", port: 7400)) {
        self.origin = origin
        self.processing = processing
        self.listen = listen
    }

    /// GDPR Art. 30(1) record of processing activities: who processes what, why, for whom, for how
    /// long and how it is protected.
    public struct ProcessingRecord: Codable, Hashable, Sendable {
        /// (a) The controller's name.
        public var controller: String
        /// (a) Its contact details.
        public var controllerContact: String
        /// (a) The data protection officer's contact, if any.
        public var dataProtectionOfficer: String
        /// (b) The purposes of the processing.
        public var purposes: [String]
        /// (c) The categories of data subjects.
        public var dataSubjects: [String]
        /// (c) The categories of personal data.
        public var personalData: [String]
        /// (d) The categories of recipients.
        public var recipients: [String]
        /// (e) Transfers to third countries or international organisations.
        public var transfers: String
        /// (f) The time limits for erasure.
        public var retention: String
        /// (g) The technical and organisational security measures.
        public var securityMeasures: [String]

        /// Cairn's processing as it is built, for `controller` reachable at `contact`.
        public static func cairnDefaults(controller: String, contact: String) -> ProcessingRecord {
            ProcessingRecord(
                controller: controller,
                controllerContact: contact,
                dataProtectionOfficer: "none designated",
                purposes: [
                    "Coordinating federated training of shared models without collecting participants' data",
                    "Controlling access to, licensing and delivering the resulting models",
                    "Keeping a tamper-evident audit trail for accountability (GDPR Art. 5(2))",
                ],
                dataSubjects: [
                    "Representatives of participating organisations", "Representatives of licensees",
                    "Broker operators",
                ],
                personalData: [
                    "Display names and contact addresses, held apart from the audit log and erasable",
                    "Pseudonymous key fingerprints in audit entries",
                ],
                recipients: [
                    "Auditors and regulators given an audit export", "Participants and licensees (their own records)",
                ],
                transfers: "none",
                retention:
                    "Contact data until erased on request or when the organisation leaves; audit entries hold no personal data and are kept for the life of the federation",
                securityMeasures: [
                    "Training data never leaves participants; updates are masked by secure aggregation",
                    "Every request signed with Ed25519; keys in Argon2id-protected keystores",
                    "Append-only SQLite log with an RFC 6962 Merkle tree and signed checkpoints",
                    "Erased personal data overwritten in the database file (SQLite secure_delete)",
                ]
            )
        }
    }

    /// Decodes `broker.json`; `source` names the file in errors.
    public init(json: [UInt8], source: String) throws {
        do {
            self = try JSONDecoder().decode(BrokerConfig.self, from: Data(json))
        } catch {
            throw WireError(.invalidValue, "\(source) is not a valid broker configuration: \(error)")
        }
        guard format == Self.formatTag else {
            throw WireError(.invalidValue, "\(source): format '\(format)' is not \(Self.formatTag)")
        }
        try check()
    }

    /// Pretty JSON with sorted keys, ending in a newline.
    public func json() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [0x0A]
    }

    func check() throws {
        try NoteSigner.checkName(origin)
    }
}
