import ArgumentParser
import CairnAudit
import CairnBroker
import CairnCrypto
import CairnWire
import Glibc

/// `cairn-broker`: the broker daemon and its admin commands.
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-broker",
        abstract: "The Cairn broker: secure aggregation, access control, audit trail and licensed model delivery.",
        discussion: """
            Start with init (keys, configuration, audit log), run serve (the HTTP daemon), then use the \
            admin commands, signed with the operator key from the same keystore, to create a federation, \
            invite participants and start training; then publish models and grant licences to them. The \
            daemon serves HTTPS with the certificate init made, whose fingerprint every invite carries.
            """,
        version: CairnVersion.software,
        subcommands: [Init.self, Serve.self, Admin.self, Backup.self, Restore.self]
    )

    init() {}
}

/// The broker's data folder, shared by `cairn-broker` and `cairn-audit`.
struct BrokerDataOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The broker's data folder. Default: $CAIRN_BROKER_DATA, else ~/.cairn/broker.",
            valueName: "folder"
        )
    )
    var dataDir: String?

    var resolved: String {
        if let dataDir { return dataDir }
        if let fromEnvironment = getenv("CAIRN_BROKER_DATA") { return String(cString: fromEnvironment) }
        let user = getenv("HOME").map { String(cString: $0) } ?? "."
        return user + "/.cairn/broker"
    }

    func open() throws -> BrokerHome { try BrokerHome(path: resolved) }
}

extension BrokerCommand {
    /// `cairn-broker init`.
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the broker's data folder: keys, configuration and audit log.",
            discussion: """
                Makes fresh Ed25519 identity, checkpoint, licence and operator keys and an X25519 transport key \
                in <data-dir>/broker.keystore \
                (Argon2id, mode 0600), writes <data-dir>/broker.json (the log's origin and the GDPR Art. 30 \
                record of processing, which you should review), starts the audit log <data-dir>/audit.sqlite \
                with a broker.init entry and a signed checkpoint, and writes <data-dir>/checkpoint.pub, the \
                public key auditors need to verify exports. Never replaces an existing keystore.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var passphrase: PassphraseOptions

        @Option(help: "The audit log's origin: a schema-less URL naming this exchange, e.g. cairn.example/exchange.")
        var origin: String = "cairn.local/exchange"

        @Option(help: "The data controller named in the record of processing.")
        var controller: String = "the operator of this broker (edit broker.json)"

        @Option(help: "The controller's contact address.")
        var contact: String = "not set (edit broker.json)"

        @Option(help: "Argon2id cost: interactive (64 MiB), moderate (256 MiB) or sensitive (1 GiB).")
        var kdf: KDFStrength = .moderate

        func run() throws {
            let config = BrokerConfig(
                origin: origin,
                processing: .cairnDefaults(controller: controller, contact: contact)
            )
            let secret = try passphrase.read(newKeystore: true)
            let home = try BrokerHome.create(
                path: data.resolved,
                config: config,
                passphrase: secret,
                parameters: kdf.parameters
            )
            print("created broker data folder \(home.path)")
            print("checkpoint key: \(try home.verifier().encoded)")
            print("broker identity fingerprint: \(try home.identityKey(passphrase: secret).fingerprint)")
        }
    }

    /// `cairn-broker backup`.
    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take an online, consistent backup of the broker's data folder.",
            discussion: """
                Safe while the daemon runs. Records broker.backup in the audit log, then snapshots \
                broker.sqlite and audit.sqlite with SQLite's online backup API (state first, log second, so the \
                log holds every entry the state reflects), copies broker.keystore (still passphrase-protected), \
                broker.json and checkpoint.pub, and writes a manifest of every file's SHA-256 signed by the \
                checkpoint key. The folder is written under a temporary name and appears only when complete. \
                Needs the keystore passphrase. Keep backups as private as the data folder: they hold the state.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var actor: OperatorOptions

        @Option(help: ArgumentHelp("The backup folder to create (it must not exist).", valueName: "folder"))
        var to: String

        func run() throws {
            let home = try data.open()
            let signer = try home.checkpointSigner(passphrase: try passphrase.read(newKeystore: false))
            let summary = try BrokerBackup.take(home: home, signer: signer, actor: actor.id, to: to)
            print("backup \(summary.id) of \(summary.origin) written to \(to) (\(summary.auditSize) audit entries)")
        }
    }

    /// `cairn-broker restore`.
    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a backup and restore it into a new data folder.",
            discussion: """
                Checks the backup's manifest signature (with --key, else with the backup's own checkpoint.pub: \
                compare the key ID printed with the one you know), every file's SHA-256, and the audit log \
                entry by entry; then writes the files into --data-dir, which must not exist, and records \
                broker.restore in the restored log. Start cairn-broker serve there: rounds that were open \
                resume or abort, as after a crash. Entries and state newer than the backup are not in it.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var actor: OperatorOptions

        @Option(help: ArgumentHelp("The backup folder written by cairn-broker backup.", valueName: "folder"))
        var from: String

        @Option(help: "The checkpoint key the backup must be signed by: checkpoint.pub's text or a path to it.")
        var key: String?

        func run() throws {
            let verifier = try key.map(readVerifier)
            let summary = try BrokerBackup.restore(from: from, to: data.resolved, key: verifier, actor: actor.id)
            let home = try data.open()
            print(
                "restored backup \(summary.id) taken \(summary.taken) into \(home.path) (\(summary.auditSize) audit entries, "
                    + "checkpoint key \(try home.verifier().encoded)); start cairn-broker serve --data-dir \(home.path)"
            )
        }
    }
}
