import ArgumentParser
import CairnCrypto
import CairnNode
import CairnWire
import Glibc

/// `cairn-node`: the participant and licensee CLI.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-node",
        abstract: "The Cairn participant and licensee node.",
        discussion: """
            A participant creates its identity (init), enrols with an operator's invite (enroll), checks its \
            data against the federation's schema (data check) and takes part in secure rounds (run); status \
            shows its contribution record. A licensee (or participant) lists the published models, asks for \
            a licence and fetches a licensed model (models). train, predict and simulate work locally \
            without a broker.
            """,
        version: CairnVersion.software,
        subcommands: [
            Init.self, Identity.self, Enroll.self, DataCommand.self, Run.self, Status.self, Models.self, Train.self,
            Predict.self, Simulate.self, Privacy.self,
        ]
    )

    init() {}
}

/// The node's home folder, shared by every subcommand.
struct NodeHomeOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The node's home folder, which holds its keystore. Default: $CAIRN_NODE_HOME, else ~/.cairn/node.",
            valueName: "folder"
        )
    )
    var home: String?

    var resolved: String {
        if let home { return home }
        if let fromEnvironment = getenv("CAIRN_NODE_HOME") { return String(cString: fromEnvironment) }
        let user = getenv("HOME").map { String(cString: $0) } ?? "."
        return user + "/.cairn/node"
    }
}

/// `--federation`: which of the home's enrolments a command acts in.
struct EnrolmentChoice: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The federation to act in, when the home holds several enrolments (its id, or federation@brokerkeyprefix as cairn-node status lists them). Default: the home's only enrolment.",
            valueName: "id"
        )
    )
    var federation: String?

    /// The enrolment chosen in `home`.
    func held(_ home: NodeHomeOptions) throws -> Enrolment.Held {
        try Enrolment.select(home: home.resolved, federation: federation)
    }
}

/// Argon2id cost for a new keystore.
enum KDFStrength: String, ExpressibleByArgument, CaseIterable {
    case interactive, moderate, sensitive

    var parameters: Keystore.KDFParameters {
        switch self {
        case .interactive: .interactive
        case .moderate: .moderate
        case .sensitive: .sensitive
        }
    }
}

extension NodeCommand {
    /// `cairn-node init`: make a new identity.
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create this node's long-term keys in a passphrase-protected keystore.",
            discussion: """
                Makes a fresh Ed25519 identity key (it signs everything the node sends) and an X25519 \
                delivery key (licensed models are encrypted to it), and writes both to <home>/node.keystore \
                (mode 0600), encrypted under a key derived from the passphrase with Argon2id. An existing \
                keystore is never replaced. Prints the public keys and the identity fingerprint.
                """
        )

        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions

        @Option(help: "Argon2id cost: interactive (64 MiB), moderate (256 MiB) or sensitive (1 GiB).")
        var kdf: KDFStrength = .moderate

        func run() throws {
            let secret = try passphrase.read(newKeystore: true)
            let node = try NodeIdentity.create(home: home.resolved, passphrase: secret, parameters: kdf.parameters)
            print("created \(NodeIdentity.keystorePath(home: home.resolved))")
            printIdentity(node)
        }
    }

    /// `cairn-node identity`: unlock and show the identity.
    struct Identity: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unlock this node's keystore and show its public keys.",
            discussion: "Fails with a clear message when the passphrase is wrong or the keystore file was modified."
        )

        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions

        func run() throws {
            let node = try NodeIdentity.unlock(home: home.resolved, passphrase: try passphrase.read(newKeystore: false))
            printIdentity(node)
        }
    }
}

private func printIdentity(_ node: NodeIdentity) {
    print("identity fingerprint: \(node.identity.publicKey.fingerprint)")
    print("identity public key:  \(Hex.encode(node.identity.publicKey.rawRepresentation))")
    print("delivery public key:  \(Hex.encode(node.delivery.publicKey.rawRepresentation))")
}
