import ArgumentParser
import CairnAudit
import CairnBroker
import CairnExchange
import CairnNode
import CairnWire
import Foundation

/// `cairn-audit`: export, verify and report on the broker's audit trail.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-audit",
        abstract: "Export the Cairn audit trail as a verifiable bundle, verify it offline, and report on it.",
        discussion: """
            The broker keeps an append-only log of every decision in <data-dir>/audit.sqlite, hashed into \
            an RFC 6962 Merkle tree whose checkpoints it signs. export, report, prove, checkpoint and people \
            work on the broker's data folder; verify needs only a bundle (or proof) and the broker's \
            checkpoint key (<data-dir>/checkpoint.pub), so anyone can run it without trusting the operator. \
            An auditor without the data folder runs export and report with --broker, as a member enrolled \
            with an auditor invite (cairn-node init, then cairn-node enroll).
            """,
        version: CairnVersion.software,
        subcommands: [Export.self, Verify.self, Report.self, Prove.self, SignCheckpoint.self, People.self]
    )

    init() {}
}

/// `--broker` and `--home`: the audit log read from the daemon by an enrolled auditor.
struct RemoteAuditOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Read the audit log from this broker's daemon instead of a data folder, as the auditor (or operator) enrolled in --home; the passphrase is then that keystore's.",
            valueName: "url"
        )
    )
    var broker: String?

    @OptionGroup var home: NodeHomeOptions
    @OptionGroup var wait: WaitOption

    /// A client of the broker the home enrolled with, and the checkpoint key its identity signed.
    func connect(passphrase: PassphraseOptions) async throws -> (client: BrokerClient, checkpoint: NoteVerifier) {
        let held = try Enrolment.all(home: home.resolved)
        guard !held.isEmpty else {
            throw CLIError(
                "\(home.resolved) has not enrolled with a broker; enrol it as an auditor first (cairn-node enroll)"
            )
        }
        // An auditor's enrolment at that broker, else any (the operator's own is not in a node home).
        let atBroker = held.filter { $0.enrolment.broker == broker }
        guard let enrolment = (atBroker.first { $0.enrolment.role == .auditor } ?? atBroker.first)?.enrolment else {
            throw CLIError(
                "\(home.resolved) is enrolled with \(Set(held.map(\.enrolment.broker)).sorted().joined(separator: ", ")), not \(broker ?? ""): give that URL, or the home enrolled with this one (--home)"
            )
        }
        let identity = try NodeIdentity.unlock(home: home.resolved, passphrase: try passphrase.read(newKeystore: false))
        return try await cliCall(wait.waiting) {
            let (client, info) = try await enrolment.connect(identity: identity.identity)
            return (client, try BrokerDeliveryKeys(info, broker: try enrolment.brokerIdentity).checkpoint)
        }
    }
}

/// Who is acting, for the audit entries a command appends.
struct OperatorOptions: ParsableArguments {
    @Option(
        name: .customLong("operator"),
        help: ArgumentHelp("The pseudonymous id recorded as the actor (never a name).", valueName: "id")
    )
    var id: String = "operator"
}

extension AuditCommand {
    /// `cairn-audit export`.
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a verifiable bundle of the audit log (all of it, or the entries a filter keeps).",
            discussion: """
                Records the export itself (an audit.export entry), signs a checkpoint covering it (only if the \
                log is consistent with the last checkpoint), then writes <out>/: entries.jsonl and entries.csv, \
                leaves.bin (whole-log exports) or proofs.jsonl (filtered exports: one inclusion proof per \
                entry), consistency.jsonl (proofs from every earlier checkpoint), the signed checkpoint, and a \
                signed manifest with the SHA-256 of every file. Needs the keystore passphrase (the checkpoint \
                key signs). <out> must not exist; it appears only when complete.

                With --broker, the daemon makes the same bundle for the auditor enrolled in --home (its \
                audit.export entry carries the auditor's signed request), sealed to the auditor's key; the \
                bundle is verified with the checkpoint key that the broker's identity, pinned at enrolment, \
                signed, before <out> appears.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var actor: OperatorOptions
        @OptionGroup var remote: RemoteAuditOptions

        @Option(help: ArgumentHelp("The bundle folder to create.", valueName: "folder"))
        var out: String

        @Option(help: "Only entries at or after this time (RFC 3339 UTC, e.g. 2026-11-24T00:00:00Z).")
        var from: String?
        @Option(help: "Only entries before this time (RFC 3339 UTC).")
        var to: String?
        @Option(name: .customLong("actor"), help: "Only entries by this actor id.")
        var byActor: String?
        @Option(
            help:
                "Only entries with this action, e.g. request.refused or licence.issue (Protocol/README.md, Audit actions)."
        )
        var action: String?

        func validate() throws {
            if let action, !AuditEntry.actions.contains(action) {
                throw ValidationError(
                    "no entry has the action \(action); the actions are \(AuditEntry.actions.joined(separator: ", "))"
                )
            }
        }

        func run() async throws {
            if remote.broker != nil { return try await exportRemotely() }
            let home = try data.open()
            let signer = try home.checkpointSigner(passphrase: try passphrase.read(newKeystore: false))
            let summary = try AuditBundle.export(
                log: try home.openLog(),
                origin: home.config.origin,
                signer: signer,
                filter: .init(from: from, to: to, actor: byActor, action: action),
                actor: actor.id,
                to: out
            )
            print("exported \(summary.entryCount) of \(summary.logSize) entries to \(out)")
            print("export id \(summary.exportID), checkpoint root \(summary.root)")
        }

        /// The bundle from the daemon: written under a temporary name, verified, then renamed.
        private func exportRemotely() async throws {
            guard !DurableFile.exists(out) else {
                throw CLIError("\(out) already exists; choose a new folder for the bundle")
            }
            let (client, checkpoint) = try await remote.connect(passphrase: passphrase)
            var query: [String] = []
            for (name, value) in [("from", from), ("to", to), ("actor", byActor), ("action", action)] {
                guard let value else { continue }
                var allowed = CharacterSet.urlQueryAllowed
                allowed.remove(charactersIn: "&=+?#")
                query.append(name + "=" + (value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value))
            }
            let target = "/v1/audit/bundle" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
            let bundle: AuditBundleFiles = try await cliCall(remote.wait.waiting) {
                try await client.json("GET", target)
            }
            let partial = out + ".partial"
            try DurableFile.makeDirectory(partial)
            for file in bundle.files {
                guard !file.name.isEmpty, !file.name.contains("/"), !file.name.hasPrefix("."),
                    let bytes = Data(base64Encoded: file.data)
                else {
                    throw CLIError(
                        "the broker's bundle holds a file named \(file.name.prefix(80)) or one that is not base64"
                    )
                }
                try DurableFile.write(
                    Array(bytes),
                    to: partial + "/" + file.name,
                    mode: DurableFile.shared,
                    replace: false
                )
            }
            let summary = try AuditBundle.verify(directory: partial, verifier: checkpoint)
            guard rename(partial, out) == 0 else { throw CLIError("cannot rename \(partial) to \(out)") }
            print("exported \(summary.entryCount) of \(summary.logSize) entries to \(out) from \(remote.broker ?? "")")
            print("export id \(summary.exportID), checkpoint root \(summary.root)")
            print(
                "verified with the broker's checkpoint key \(checkpoint.encoded), signed by its identity pinned at enrolment (save it to a file for cairn-audit verify --key)"
            )
        }
    }

    /// `cairn-audit verify`.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a bundle (or a proof from prove) offline, or the broker's own database.",
            discussion: """
                With a bundle: checks the manifest's and the checkpoint's signatures, recomputes every entry's \
                leaf hash and the root (or each inclusion proof), checks the CSV against the JSON lines, the \
                consistency proofs and every file's SHA-256. On the first problem it names the file and, for \
                entries, the first bad entry and why, and exits with status 1. Entries caused by a member's or \
                the operator's request carry that request as its actor signed it: each signature is checked \
                against the actor's key (published in the log's broker.init and member.enrol entries), and an \
                entry that names a key as its actor without one is refused. Witnesses' cosignatures \
                (cosignatures.jsonl) are checked against the checkpoints they cosign and the members' keys, and \
                the latest cosigned checkpoint and its witnesses are printed. With --later, also checks that the \
                later bundle's log extends this one's (no entry changed or removed in between).

                Without a path: checks the audit database in --data-dir, read only (run it when the broker \
                refuses to start over its log): every entry decoded and its leaf recomputed, the tree head, \
                and every stored checkpoint's signature (with --key, else <data-dir>/checkpoint.pub) and root.
                """
        )

        @Argument(help: ArgumentHelp("A bundle folder, or a proof file written by prove.", valueName: "path"))
        var path: String?

        @Option(
            help:
                "The checkpoint key: the text of checkpoint.pub (name+id+key), or a path to that file. Needed with a path."
        )
        var key: String?

        @Option(help: ArgumentHelp("A later bundle of the same log to check this one against.", valueName: "folder"))
        var later: String?

        @OptionGroup var data: BrokerDataOptions

        func validate() throws {
            if path != nil, key == nil { throw ValidationError("--key is needed to verify a bundle or proof") }
            if path == nil, later != nil { throw ValidationError("--later needs a bundle path") }
        }

        func run() throws {
            guard let path else {
                let home = try data.open()
                let log = try home.openLog()
                let sizes = try log.checkStoredCheckpoints(verifier: try key.map(readVerifier) ?? home.verifier())
                print(
                    "OK: the audit log in \(home.path): \(log.size) entries, each decoded and its leaf recomputed; "
                        + "tree head consistent; \(sizes.count) signed checkpoints verify and match it"
                        + (sizes.last.map { " (the last covers \($0) entries)" } ?? "")
                )
                return
            }
            let verifier = try readVerifier(key ?? "")
            if !DurableFile.isDirectory(path) {
                let (entry, checkpoint) = try AuditBundle.verifyProofDocument(
                    try DurableFile.read(path, maximum: 1 << 20),
                    verifier: verifier
                )
                print(
                    "OK: entry \(entry.sequence) (\(entry.action)) is in the log \(checkpoint.origin) of \(checkpoint.size) entries"
                )
                return
            }
            let summary = try AuditBundle.verify(directory: path, verifier: verifier)
            print(
                "OK: \(summary.entryCount) entries of the log \(summary.origin) (\(summary.logSize) entries, root \(summary.root)); "
                    + "\(summary.actorSigned) signed by their actors (signatures checked), \(summary.brokerOnly) by the broker alone"
            )
            if let (size, names) = summary.witnesses.max(by: { $0.key < $1.key }) {
                print(
                    "OK: \(summary.witnesses.count) checkpoints cosigned by members' nodes; the latest, of \(size) entries"
                        + (size == summary.logSize ? " (this bundle's)" : ", proved consistent with this bundle's")
                        + ", by \(names.count): \(names.sorted().joined(separator: ", "))"
                )
            } else {
                print("no checkpoint of this log carries a witness's cosignature")
            }
            if let later {
                let newer = try AuditBundle.verify(directory: later, verifier: verifier)
                try AuditBundle.checkConsistency(earlier: summary, later: newer)
                print("OK: the later bundle's log (\(newer.logSize) entries) extends this one")
            }
        }
    }

    /// `cairn-audit report`.
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a compliance report (Markdown or HTML) from the audit log and the broker's configuration.",
            discussion: """
                Participation per round, model lineage, licences and deliveries, refused requests, activity by \
                action, and a GDPR Art. 30 record of processing filled from broker.json. People appear by \
                pseudonymous id, with a display name while one is held; erased data never appears. Reads only. \
                With --broker, the daemon makes it for the auditor enrolled in --home, sealed to its key.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var remote: RemoteAuditOptions
        @OptionGroup var passphrase: PassphraseOptions

        @Option(help: "markdown or html.")
        var format: ReportFormat = .markdown

        @Option(help: ArgumentHelp("Write the report here instead of standard output.", valueName: "path"))
        var out: String?

        func run() async throws {
            let text: String
            if remote.broker != nil {
                let (client, _) = try await remote.connect(passphrase: passphrase)
                let reply = try await cliCall(remote.wait.waiting) {
                    try await client.send("GET", "/v1/audit/report?format=\(format.format.rawValue)")
                }
                text = String(decoding: reply.body, as: UTF8.self)
            } else {
                let home = try data.open()
                text = try ComplianceReport(
                    log: try home.openLog(),
                    config: home.config,
                    checkpointKey: try home.verifier(),
                    generated: AuditEntry.now()
                ).render(format.format)
            }
            if let out {
                try DurableFile.write(Array(text.utf8), to: out, mode: DurableFile.shared, replace: true)
                print("wrote \(out)")
            } else {
                print(text, terminator: "")
            }
        }
    }

    /// `cairn-audit prove`.
    struct Prove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the inclusion proof of one entry against the latest signed checkpoint.",
            discussion: """
                Prints the entry's JSON line, its leaf hash and inclusion proof, and the signed checkpoint: \
                save it to a file and anyone can check it with `cairn-audit verify <file> --key …`. An entry \
                newer than the latest checkpoint needs `cairn-audit checkpoint` first.
                """
        )

        @OptionGroup var data: BrokerDataOptions

        @Option(help: "The entry's sequence number (from 0).")
        var sequence: Int

        func run() throws {
            print(try AuditBundle.proofDocument(log: try data.open().openLog(), sequence: sequence), terminator: "")
        }
    }

    /// `cairn-audit checkpoint`.
    struct SignCheckpoint: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint",
            abstract: "Sign and print a checkpoint of the whole log.",
            discussion: """
                Refuses when the log is not consistent with the last checkpoint (entries changed or lost). \
                Prints the last checkpoint again when the log has not grown. Needs the keystore passphrase.
                """
        )

        @OptionGroup var data: BrokerDataOptions
        @OptionGroup var passphrase: PassphraseOptions

        func run() throws {
            let home = try data.open()
            let signer = try home.checkpointSigner(passphrase: try passphrase.read(newKeystore: false))
            print(try home.openLog().signCheckpoint(origin: home.config.origin, signer: signer), terminator: "")
        }
    }

    /// `cairn-audit people`.
    struct People: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Personal data held apart from the log: record, list, erase.",
            subcommands: [Record.self, List.self, Erase.self]
        )

        struct Record: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Record (or replace) the display name and contact of a pseudonymous id.",
                discussion: "Appends a person.record entry that names the id only."
            )
            @OptionGroup var data: BrokerDataOptions
            @OptionGroup var actor: OperatorOptions
            @Argument(help: "The pseudonymous id (e.g. a key fingerprint).") var id: String
            @Option(help: "The display name.") var name: String
            @Option(help: "The contact address.") var contact: String

            func run() throws {
                let entry = try data.open().openLog().recordPerson(
                    .init(id: id, displayName: name, contact: contact),
                    actor: actor.id,
                    time: AuditEntry.now()
                )
                print("recorded personal data for \(id) (audit entry \(entry.sequence))")
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the personal data held, by id.")
            @OptionGroup var data: BrokerDataOptions

            func run() throws {
                for p in try data.open().openLog().people() { print("\(p.id)\t\(p.displayName)\t\(p.contact)") }
            }
        }

        struct Erase: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Erase a person's personal data (GDPR Art. 17).",
                discussion: """
                    Deletes the record and overwrites it in the database file; appends a person.erase entry. \
                    The log's entries hold no personal data, so every hash, proof and checkpoint stays valid.
                    """
            )
            @OptionGroup var data: BrokerDataOptions
            @OptionGroup var actor: OperatorOptions
            @Argument(help: "The pseudonymous id.") var id: String

            func run() throws {
                let entry = try data.open().openLog().erasePerson(id, actor: actor.id, time: AuditEntry.now())
                print("erased the personal data of \(id) (audit entry \(entry.sequence))")
            }
        }
    }
}

/// `--format` values of `report`.
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case markdown, html
    var format: ComplianceReport.Format { ComplianceReport.Format(rawValue: rawValue)! }
}

/// A verifier key given inline or as a path to a file holding it.
func readVerifier(_ key: String) throws -> NoteVerifier {
    if let inline = try? NoteVerifier(encoded: key) { return inline }
    guard DurableFile.exists(key) else {
        throw CLIError("--key is neither a checkpoint key (name+id+key) nor a readable file")
    }
    let text = String(decoding: try DurableFile.read(key, maximum: 4096), as: UTF8.self)
    return try NoteVerifier(encoded: String(text.filter { !$0.isWhitespace }))
}
