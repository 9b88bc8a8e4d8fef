import ArgumentParser
import CairnAudit
import CairnBroker
import CairnCrypto
import CairnNode
import CairnWire
import Foundation
import GRDB
import Glibc
import Testing

@testable import CairnCLI

@Suite struct CLITests {
    /// Help texts are golden files: a change to what users read is a deliberate change here.
    /// Regenerate with `CAIRN_UPDATE_GOLDEN=1 swift test --filter CLITests`.
    @Test(arguments: [
        "cairn-broker", "cairn-node", "cairn-node init", "cairn-node identity", "cairn-node data check",
        "cairn-node train", "cairn-node predict", "cairn-node simulate", "cairn-node privacy", "cairn-audit",
        "cairn-broker init",
        "cairn-audit export", "cairn-audit verify", "cairn-audit report", "cairn-audit prove",
        "cairn-audit people erase", "cairn-broker serve", "cairn-broker admin create-federation",
        "cairn-node enroll", "cairn-node run", "cairn-node status", "cairn-broker admin publish",
        "cairn-broker admin licence", "cairn-node models fetch", "cairn-node models list", "cairn-broker backup",
        "cairn-broker restore",
    ])
    func helpTextMatchesGoldenFile(_ command: String) throws {
        let help: String
        switch command {
        case "cairn-broker": help = BrokerCommand.helpMessage(columns: 100)
        case "cairn-audit": help = AuditCommand.helpMessage(columns: 100)
        case "cairn-broker init": help = BrokerCommand.helpMessage(for: BrokerCommand.Init.self, columns: 100)
        case "cairn-broker serve": help = BrokerCommand.helpMessage(for: BrokerCommand.Serve.self, columns: 100)
        case "cairn-broker backup": help = BrokerCommand.helpMessage(for: BrokerCommand.Backup.self, columns: 100)
        case "cairn-broker restore": help = BrokerCommand.helpMessage(for: BrokerCommand.Restore.self, columns: 100)
        case "cairn-broker admin create-federation":
            help = BrokerCommand.helpMessage(for: BrokerCommand.Admin.CreateFederation.self, columns: 100)
        case "cairn-node enroll": help = NodeCommand.helpMessage(for: NodeCommand.Enroll.self, columns: 100)
        case "cairn-node run": help = NodeCommand.helpMessage(for: NodeCommand.Run.self, columns: 100)
        case "cairn-node status": help = NodeCommand.helpMessage(for: NodeCommand.Status.self, columns: 100)
        case "cairn-audit export": help = AuditCommand.helpMessage(for: AuditCommand.Export.self, columns: 100)
        case "cairn-audit verify": help = AuditCommand.helpMessage(for: AuditCommand.Verify.self, columns: 100)
        case "cairn-audit report": help = AuditCommand.helpMessage(for: AuditCommand.Report.self, columns: 100)
        case "cairn-audit prove": help = AuditCommand.helpMessage(for: AuditCommand.Prove.self, columns: 100)
        case "cairn-audit people erase":
            help = AuditCommand.helpMessage(for: AuditCommand.People.Erase.self, columns: 100)
        case "cairn-node": help = NodeCommand.helpMessage(columns: 100)
        case "cairn-node init": help = NodeCommand.helpMessage(for: NodeCommand.Init.self, columns: 100)
        case "cairn-node data check": help = NodeCommand.helpMessage(for: NodeCommand.Check.self, columns: 100)
        case "cairn-node train": help = NodeCommand.helpMessage(for: NodeCommand.Train.self, columns: 100)
        case "cairn-node predict": help = NodeCommand.helpMessage(for: NodeCommand.Predict.self, columns: 100)
        case "cairn-node simulate": help = NodeCommand.helpMessage(for: NodeCommand.Simulate.self, columns: 100)
        case "cairn-node privacy": help = NodeCommand.helpMessage(for: NodeCommand.Privacy.self, columns: 100)
        case "cairn-broker admin publish":
            help = BrokerCommand.helpMessage(for: BrokerCommand.Admin.Publish.self, columns: 100)
        case "cairn-broker admin licence":
            help = BrokerCommand.helpMessage(for: BrokerCommand.Admin.Licence.self, columns: 100)
        case "cairn-node models fetch":
            help = NodeCommand.helpMessage(for: NodeCommand.Models.Fetch.self, columns: 100)
        case "cairn-node models list":
            help = NodeCommand.helpMessage(for: NodeCommand.Models.List.self, columns: 100)
        case "cairn-node identity": help = NodeCommand.helpMessage(for: NodeCommand.Identity.self, columns: 100)
        default:
            Issue.record("no help text wired for \(command)")
            return
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

    @Test func serveRefusesBadFlagsBeforeTouchingAnything() {
        func refusal(_ arguments: [String]) -> String {
            do {
                _ = try BrokerCommand.parseAsRoot(arguments)
                return "accepted"
            } catch {
                return BrokerCommand.message(for: error)
            }
        }
        #expect(refusal(["serve", "--port", "70000"]) == "--port must be 0 to 65535")
        #expect(refusal(["serve", "--log-level", "loud"]) == "unknown --log-level loud")
        #expect(refusal(["serve", "--concurrent-uploads", "0"]) == "--concurrent-uploads must be 1 to 64")
        // A negative price is a refused price, not a missing value.
        let publish = ["admin", "publish", "--federation", "f", "--description", "d"]
        #expect(refusal(publish + ["--price", "-5"]) == "--price must be a number of at least 0, not -5.0")
        #expect(
            refusal(publish + ["--pricing", "cost-plus", "--cost", "-1"])
                == "--cost must be a number of at least 0, not -1.0"
        )
        #expect(
            refusal(["admin", "status", "--federation", "f", "--wait", "-1"])
                == "--wait is a number of seconds from 0 to 86400, not -1.0"
        )
    }

    @Test func exportRefusesAnUnknownAction() {
        do {
            _ = try AuditCommand.parseAsRoot(["export", "--out", "/nonexistent/b", "--action", "round.submit"])
            Issue.record("an unknown action was accepted")
        } catch {
            #expect(
                AuditCommand.message(for: error)
                    == "no entry has the action round.submit; the actions are \(AuditEntry.actions.joined(separator: ", "))"
            )
        }
        #expect(throws: Never.self) {
            try AuditCommand.parseAsRoot(["export", "--out", "b", "--action", "licence.issue"])
        }
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

@Suite("cairn-broker init and cairn-audit, end to end")
struct AuditCLITests {
    @Test(
        "init, record a person, export, verify, prove, erase, report without the datum, verify against a later bundle"
    )
    func auditLifecycle() async throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-audit-cli-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        try DurableFile.write(Array("a long enough passphrase\n".utf8), to: folder + "/pp", replace: false)
        let data = folder + "/broker"
        let pp = ["--data-dir", data, "--passphrase-file", folder + "/pp"]
        func run(_ command: any ParsableCommand.Type, _ arguments: [String]) async throws {
            var parsed = try command.parseAsRoot(arguments)
            if var command = parsed as? any AsyncParsableCommand { try await command.run() } else { try parsed.run() }
        }
        try await run(
            BrokerCommand.self,
            ["init", "--kdf", "interactive", "--origin", "cairn.test/x", "--controller", "Example Ltd"] + pp
        )
        await #expect(throws: WireError(.io, "")) {
            try await run(BrokerCommand.self, ["init", "--kdf", "interactive"] + pp)
        }
        try await run(
            AuditCommand.self,
            [
                "people", "record", "ed25519:ada", "--name", "Dr Ada <Example>", "--contact", "ada@example.org",
                "--data-dir", data,
            ]
        )
        try await run(AuditCommand.self, ["export", "--out", folder + "/b1"] + pp)
        let key = data + "/checkpoint.pub"
        try await run(AuditCommand.self, ["verify", folder + "/b1", "--key", key])

        let home = try BrokerHome(path: data)
        let log = try home.openLog()
        #expect(log.size == 3)
        #expect(try log.entry(0).action == "broker.init" && log.entry(1).action == "person.record")
        #expect(try log.entry(2).action == "audit.export" && log.entry(2).actor == "operator")
        let report = try ComplianceReport(
            log: log,
            config: home.config,
            checkpointKey: try home.verifier(),
            generated: "2026-11-24T05:00:00Z"
        )
        #expect(report.render(.markdown).contains("| (a) Controller | Example Ltd, not set (edit broker.json) |"))
        #expect(report.render(.markdown).contains("| Personal-data records held now | 1 |"))
        #expect(report.render(.markdown).contains("| ed25519:ada | Dr Ada \\<Example\\> |"))
        #expect(report.render(.html).contains("<td>ed25519:ada</td><td>Dr Ada &lt;Example&gt;</td>"))

        // A proof of one entry, saved and verified; a tampered copy is refused.
        let proof = try AuditBundle.proofDocument(log: log, sequence: 1)
        try DurableFile.write(Array(proof.utf8), to: folder + "/p1", replace: false)
        try await run(AuditCommand.self, ["verify", folder + "/p1", "--key", key])
        try DurableFile.write(
            Array(proof.replacingOccurrences(of: "ed25519:ada", with: "ed25519:bob").utf8),
            to: folder + "/p2",
            replace: false
        )
        await #expect(throws: AuditError(.tampered, "")) {
            try await run(AuditCommand.self, ["verify", folder + "/p2", "--key", key])
        }
        await #expect(throws: AuditError(.outOfRange, "")) {
            try await run(AuditCommand.self, ["prove", "--sequence", "3", "--data-dir", data])
        }

        // Erasure: the report loses the name, verification stays green, old and new bundles agree.
        try await run(AuditCommand.self, ["people", "erase", "ed25519:ada", "--data-dir", data])
        await #expect(throws: AuditError(.outOfRange, "")) {
            try await run(AuditCommand.self, ["people", "erase", "ed25519:ada", "--data-dir", data])
        }
        try await run(AuditCommand.self, ["export", "--out", folder + "/b2"] + pp)
        try await run(AuditCommand.self, ["verify", folder + "/b1", "--key", key, "--later", folder + "/b2"])
        let after = try ComplianceReport(
            log: try home.openLog(),
            config: home.config,
            checkpointKey: try home.verifier(),
            generated: "2026-11-24T05:00:00Z"
        )
        for format in ComplianceReport.Format.allCases {
            #expect(!after.render(format).contains("Ada"))
        }
        #expect(after.render(.markdown).contains("| Personal-data records held now | 0 |"))
        await #expect(throws: (any Error).self) {
            try await run(AuditCommand.self, ["export", "--out", folder + "/b3", "--from", "yesterday"] + pp)
        }
        #expect(!DurableFile.exists(folder + "/b3"))

        // The database itself: verified in place; edited behind the log's back, it is refused by
        // every tool that opens it (the daemon included), naming the entry and what to run.
        try await run(AuditCommand.self, ["verify", "--data-dir", data])
        var forged = try log.entry(1)
        forged.objectID = "ed25519:bob"
        let forgedBytes = Data(try forged.encoded())
        let queue = try DatabaseQueue(path: data + "/audit.sqlite")
        try await queue.write { db in
            try db.execute(sql: "DROP TRIGGER entries_are_append_only_update")
            try db.execute(sql: "UPDATE entries SET entry = ? WHERE sequence = 1", arguments: [forgedBytes])
        }
        try queue.close()
        let expected =
            "the audit log in \(data) is not consistent: audit entry 1 does not hash to its stored leaf: the entry or its leaf was changed. Nothing will be signed or served over it. Investigate with `cairn-audit verify --data-dir \(data)`, and restore the folder from a backup (`cairn-broker restore`)."
        #expect(#expect(throws: AuditError.self) { try home.openLog() }?.message == expected)
        #expect(
            await #expect(throws: AuditError.self) {
                try await run(AuditCommand.self, ["verify", "--data-dir", data])
            }?.message
                == expected
        )
        #expect(
            await #expect(throws: AuditError.self) { try await run(AuditCommand.self, ["checkpoint"] + pp) }?.message
                == expected
        )
    }

    @Test("The data folder is the owner's alone whatever the umask, and an erased person is in none of its files")
    func privateFolderAndErasure() async throws {
        let previous = umask(0)
        defer { umask(previous) }
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-erase-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        try DurableFile.write(Array("a long enough passphrase\n".utf8), to: folder + "/pp", replace: false)
        let data = folder + "/broker"
        func run(_ command: any ParsableCommand.Type, _ arguments: [String]) async throws {
            var parsed = try command.parseAsRoot(arguments)
            if var command = parsed as? any AsyncParsableCommand { try await command.run() } else { try parsed.run() }
        }
        try await run(
            BrokerCommand.self,
            [
                "init", "--kdf", "interactive", "--origin", "cairn.test/e", "--data-dir", data, "--passphrase-file",
                folder + "/pp",
            ]
        )
        let (name, contact) = ("Zebedee Quillfeather-7f3a", "zebedee.7f3a@example.org")
        try await run(
            AuditCommand.self,
            ["people", "record", "ed25519:zq", "--name", name, "--contact", contact, "--data-dir", data]
        )
        // A log held open by another reader (as a report or the daemon would) does not stop it.
        let reader = try BrokerHome(path: data).openLog()
        #expect(try reader.people().count == 1)
        try await run(AuditCommand.self, ["people", "erase", "ed25519:zq", "--data-dir", data])
        var info = stat()
        #expect(stat(data, &info) == 0 && info.st_mode & 0o777 == 0o700)
        let files = try DurableFile.entries(in: data)
        #expect(files.contains("audit.sqlite") && files.contains("audit.sqlite-wal"))
        for file in files {
            let path = data + "/" + file
            #expect(
                stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600,
                "\(file) is \(String(info.st_mode & 0o777, radix: 8))"
            )
            let bytes = try DurableFile.read(path, maximum: 1 << 30)
            for value in [name, contact, "Quillfeather"] {
                let needle = Array(value.utf8)
                let found =
                    bytes.count >= needle.count
                    && (0...(bytes.count - needle.count)).contains {
                        bytes[$0..<$0 + needle.count].elementsEqual(needle)
                    }
                #expect(!found, "\(file) still holds \(value)")
            }
        }
    }

    @Test("The report: integrity, participation per round, lineage by model digest, licences, refusals, fingerprints")
    func reportSections() throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-report-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        let log = try AuditLog(path: folder + "/audit.sqlite")
        let model1 = SHA256.hash(Array("round 1 weights".utf8))
        let model2 = SHA256.hash(Array("round 3 weights".utf8))
        let (ann, bob, cat) = (
            "ed25519:" + String(repeating: "a", count: 32), "ed25519:" + String(repeating: "b", count: 32),
            "ed25519:" + String(repeating: "c", count: 32)
        )
        func add(
            _ actor: String,
            _ action: String,
            _ type: String,
            _ id: String,
            _ outcome: AuditEntry.Outcome = .succeeded,
            reason: String = "",
            digests: [AuditEntry.Digest] = []
        ) throws {
            try log.append {
                AuditEntry(
                    sequence: $0,
                    time: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + Int($0)),
                    actor: actor,
                    action: action,
                    objectType: type,
                    objectID: id,
                    outcome: outcome,
                    reason: reason,
                    digests: digests
                )
            }
        }
        try log.recordPerson(
            .init(id: ann, displayName: "<Ann>", contact: "a@x"),
            actor: "operator",
            time: "2026-11-24T03:00:00Z"
        )
        // Round 1 aggregates two inputs (one refused), round 2 aborts, round 3 aggregates three.
        try add("broker:ed25519:ff", "round.open", "round", "fed/1")
        try add("participant:" + ann, "round.mask", "round", "fed/1")
        try add("participant:" + bob, "round.mask", "round", "fed/1")
        try add("participant:" + cat, "round.mask", "round", "fed/1", .refused, reason: "stale timestamp")
        try add("broker", "round.aggregate", "round", "fed/1")
        try add(
            "broker",
            "model.update",
            "model",
            "fed/1",
            digests: [.init(name: "base", bytes: model2), .init(name: "model", bytes: model1)]
        )
        try add("broker", "round.open", "round", "fed/2")
        try add("broker", "round.abort", "round", "fed/2", .failed, reason: "only 1 participants sent masked inputs")
        try add("broker", "round.open", "round", "fed/3")
        for p in [ann, bob, cat] { try add("participant:" + p, "round.mask", "round", "fed/3") }
        try add("broker", "round.aggregate", "round", "fed/3")
        try add(
            "broker",
            "model.update",
            "model",
            "fed/3",
            digests: [.init(name: "base", bytes: model1), .init(name: "model", bytes: model2)]
        )
        try add(
            "operator",
            "model.publish",
            "model",
            "fed@1",
            digests: [.init(name: "model.parameters", bytes: model1)]
        )
        try add(
            "operator",
            "model.publish",
            "model",
            "fed@2",
            digests: [.init(name: "model.parameters", bytes: model2)]
        )
        try add("licensee:" + bob, "licence.request", "licence", "lic-1")
        let signer = try NoteSigner(name: "cairn.test/x", key: .init())
        try log.signCheckpoint(origin: "cairn.test/x", signer: signer)
        try add("operator", "licence.issue", "licence", "lic-1")
        let config = BrokerConfig(origin: "cairn.test/x", processing: .cairnDefaults(controller: "C", contact: "c@x"))
        let report = try ComplianceReport(
            log: log,
            config: config,
            checkpointKey: signer.verifier,
            generated: "2026-11-24T05:00:00Z"
        )
        let md = report.render(.markdown)
        #expect(
            md.hasPrefix(
                "# Cairn compliance report: cairn.test/x\n\n## Integrity\n\nChecked when this report was made: all 19 entries were decoded and each one's leaf hash recomputed; the stored tree head matches them; and 1 signed checkpoints verify with the broker's checkpoint key \(signer.verifier.encoded) and match the log, the latest covering 18 entries (1 newer entries are not yet in a checkpoint)."
            )
        )
        #expect(md.contains("| fed/1 | aggregated | 2 | 1 | \(ann) (participant), \\<Ann\\>; \(bob) (participant) |"))
        #expect(md.contains("| fed/2 | aborted: only 1 participants sent masked inputs | 0 | 0 |  |"))
        #expect(
            md.contains(
                "| fed/3 | aggregated | 3 | 0 | \(ann) (participant), \\<Ann\\>; \(bob) (participant); \(cat) (participant) |"
            )
        )
        #expect(md.contains("| fed@1 | 2026-11-18T11:06:55Z | fed/1 | 1 | 2 | \(Hex.encode(model1.prefix(8)))… |"))
        #expect(md.contains("| fed@2 | 2026-11-18T11:06:56Z | fed/3 | 2 | 3 | \(Hex.encode(model2.prefix(8)))… |"))
        #expect(md.contains("| 2026-11-18T11:06:57Z | licence.request | lic-1 | \(bob) (licensee) | succeeded |"))
        #expect(md.contains("| 2026-11-18T11:06:58Z | licence.issue | lic-1 | operator | succeeded |"))
        #expect(
            md.contains("| 2026-11-18T11:06:44Z | \(cat) (participant) | round.mask | round fed/1 | stale timestamp |")
        )
        #expect(md.contains("1 requests were refused."))
        #expect(md.contains("\n\nNo member's node has cosigned a checkpoint yet.\n"))
        let html = report.render(.html)
        #expect(html.contains("(participant), &lt;Ann&gt;; ") && !html.contains("<Ann>"))
        #expect(html.contains("table{table-layout:fixed;width:100%}") && html.contains("overflow-wrap:anywhere"))
        // A checkpoint that does not verify with the key given stops the report.
        let other = try NoteSigner(name: "cairn.test/x", key: .init())
        #expect(throws: AuditError.self) {
            try ComplianceReport(
                log: log,
                config: config,
                checkpointKey: other.verifier,
                generated: "2026-11-24T05:00:00Z"
            )
        }
    }
}
