import ArgumentParser
import CairnCrypto
import CairnNode
import CairnWire
import Glibc
import Testing

@testable import CairnCLI

@Suite struct CLITests {
    /// Help texts are golden files: a change to what users read is a deliberate change here.
    /// Regenerate with `CAIRN_UPDATE_GOLDEN=1 swift test --filter CLITests`.
    @Test(arguments: [
        "cairn-broker", "cairn-node", "cairn-node init", "cairn-node identity", "cairn-node data check",
        "cairn-node train", "cairn-node predict", "cairn-node simulate", "cairn-audit",
    ])
    func helpTextMatchesGoldenFile(_ command: String) throws {
        let help: String
        switch command {
        case "cairn-broker": help = BrokerCommand.helpMessage(columns: 100)
        case "cairn-audit": help = AuditCommand.helpMessage(columns: 100)
        case "cairn-node": help = NodeCommand.helpMessage(columns: 100)
        case "cairn-node init": help = NodeCommand.helpMessage(for: NodeCommand.Init.self, columns: 100)
        case "cairn-node data check": help = NodeCommand.helpMessage(for: NodeCommand.Check.self, columns: 100)
        case "cairn-node train": help = NodeCommand.helpMessage(for: NodeCommand.Train.self, columns: 100)
        case "cairn-node predict": help = NodeCommand.helpMessage(for: NodeCommand.Predict.self, columns: 100)
        case "cairn-node simulate": help = NodeCommand.helpMessage(for: NodeCommand.Simulate.self, columns: 100)
        default: help = NodeCommand.helpMessage(for: NodeCommand.Identity.self, columns: 100)
        }
        let path = goldenFolder + "/" + command.replacingSpaces + ".txt"
        if getenv("CAIRN_UPDATE_GOLDEN") != nil {
            try DurableFile.write(Array(help.utf8), to: path, mode: 0o644, replace: true)
        }
        let golden = String(decoding: try DurableFile.read(path, maximum: 1 << 16), as: UTF8.self)
        #expect(help == golden)
    }

    @Test func versionIsTheSoftwareVersion() {
        #expect(BrokerCommand.configuration.version == CairnVersion.software)
        #expect(NodeCommand.configuration.version == CairnVersion.software)
        #expect(AuditCommand.configuration.version == CairnVersion.software)
    }

    @Test func brokerAndAuditAcceptNoSubcommandYet() {
        #expect(throws: (any Error).self) { try BrokerCommand.parseAsRoot(["serve"]) }
        #expect(throws: (any Error).self) { try AuditCommand.parseAsRoot(["export"]) }
    }

    @Test func nodeInitThenIdentityUnlocksWithThePassphraseOnly() throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-cli-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        try DurableFile.write(Array("a long enough passphrase\n".utf8), to: folder + "/pp", replace: false)
        try DurableFile.write(Array("another passphrase\n".utf8), to: folder + "/wrong", replace: false)
        try DurableFile.write(Array("short\n".utf8), to: folder + "/short", replace: false)
        let home = folder + "/node"

        var short = try NodeCommand.parseAsRoot(["init", "--home", home, "--passphrase-file", folder + "/short"])
        #expect(throws: (any Error).self) { try short.run() }
        #expect(!DurableFile.exists(home + "/node.keystore"))

        var create = try NodeCommand.parseAsRoot(
            ["init", "--home", home, "--passphrase-file", folder + "/pp", "--kdf", "interactive"])
        try create.run()
        let created = try DurableFile.read(home + "/node.keystore", maximum: 1 << 16)

        var again = try NodeCommand.parseAsRoot(["init", "--home", home, "--passphrase-file", folder + "/pp"])
        #expect(throws: WireError(.io, "")) { try again.run() }
        #expect(try DurableFile.read(home + "/node.keystore", maximum: 1 << 16) == created)

        var show = try NodeCommand.parseAsRoot(["identity", "--home", home, "--passphrase-file", folder + "/pp"])
        try show.run()
        var wrong = try NodeCommand.parseAsRoot(["identity", "--home", home, "--passphrase-file", folder + "/wrong"])
        #expect(throws: CryptoError(.keystoreLocked, "")) { try wrong.run() }

        // The library view of the same keystore: both keys are there and distinct.
        let node = try NodeIdentity.unlock(
            home: home,
            passphrase: SecretBytes(copying: Array("a long enough passphrase".utf8))
        )
        #expect(node.identity.publicKey.rawRepresentation != node.delivery.publicKey.rawRepresentation)
        #expect(throws: (any Error).self) { try NodeCommand.parseAsRoot(["init", "--kdf", "extreme"]) }
    }

    private var goldenFolder: String {
        let file = #filePath
        return String(file[..<file.lastIndex(of: "/")!]) + "/Golden"
    }
}

extension String {
    fileprivate var replacingSpaces: String { String(map { $0 == " " ? "-" : $0 }) }
}
