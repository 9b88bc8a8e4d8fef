import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import GRDB
import Testing

@testable import CairnAudit

private let origin = "cairn.example/audit"

/// A log of `count` varied entries (quotes and commas in text, digests, each outcome) and its signer.
private func sampleLog(_ count: Int) throws -> (log: AuditLog, path: String, signer: NoteSigner) {
    let path = temporaryDatabase()
    let log = try AuditLog(path: path)
    let actions = ["participant.enrol", "round.submit", "licence.issue"]
    for _ in 0..<count {
        try log.append { s in
            AuditEntry(
                sequence: s,
                time: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + Int(s) * 3600),
                actor: "ed25519:actor-\(s % 3)",
                action: actions[Int(s) % 3],
                objectType: "round",
                objectID: "fed-1/round-\(s / 2)",
                outcome: AuditEntry.Outcome.allCases[Int(s) % 3],
                reason: s % 2 == 0 ? "" : "said \"no\", twice",
                requestID: "req-\(s)",
                digests: s % 3 == 1 ? [.init(name: "round.submission", bytes: SHA256.hash([UInt8(s)]))] : []
            )
        }
    }
    return (log, path, try NoteSigner(name: origin, key: .init()))
}

private func bundleFolder() -> String { NSTemporaryDirectory() + "cairn-bundle-\(UUID().uuidString)" }

private func failure(_ directory: String, _ verifier: NoteVerifier) -> String? {
    do {
        _ = try AuditBundle.verify(directory: directory, verifier: verifier)
        return nil
    } catch let error as AuditError {
        return error.code == .tampered ? error.message : "wrong code \(error.code): \(error.message)"
    } catch {
        return "unexpected \(error)"
    }
}

/// Rewrites one file of a bundle.
private func edit(_ directory: String, _ name: String, _ change: (inout [UInt8]) -> Void) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
    change(&bytes)
    try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
}

@Suite("Audit bundles: export and offline verification")
struct AuditBundleTests {
    @Test("A whole-log export verifies, holds every entry and its own export entry, and matches the log")
    func roundTrip() throws {
        let (log, _, signer) = try sampleLog(12)
        let out = bundleFolder()
        let written = try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: out)
        let summary = try AuditBundle.verify(directory: out, verifier: signer.verifier)
        #expect(summary == written)
        #expect(try summary.logSize == 13 && summary.entryCount == 13 && summary.root == log.root())
        #expect(try log.entry(12).action == "audit.export" && log.entry(12).objectID == summary.exportID)
        let lines = try String(contentsOfFile: out + "/entries.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(
            lines[1]
                == #"{"sequence":1,"time":"2026-11-18T12:06:40Z","actor":"ed25519:actor-1","action":"round.submit","object_type":"round","object_id":"fed-1/round-0","outcome":"refused","reason":"said \"no\", twice","request_id":"req-1","digests":[{"name":"round.submission","hex":"4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"}]}"#
        )
        let csv = try String(contentsOfFile: out + "/entries.csv", encoding: .utf8)
        #expect(
            csv.contains(
                "1,2026-11-18T12:06:40Z,ed25519:actor-1,round.submit,round,fed-1/round-0,refused,\"said \"\"no\"\", twice\",req-1,round.submission=4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a\r\n"
            )
        )
        #expect(throws: AuditError(.storage, "")) {
            try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: out)
        }
    }

    @Test("Flipping any byte of any file of the bundle is detected; in entry lines and rows the entry is named")
    func everyByteFlip() throws {
        let (log, _, signer) = try sampleLog(5)
        let out = bundleFolder()
        // A second export, so consistency.jsonl holds a proof from the first checkpoint, which a
        // witness cosigned (cosignatures.jsonl).
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: bundleFolder())
        let first = try Checkpoint(text: SignedNote.open(try log.latestCheckpoint()!, verifier: signer.verifier))
        try log.addCosignature(
            try Cosignature.sign(first, identity: try Ed25519.PrivateKey(), time: 1_795_000_000),
            size: first.size
        )
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: out)
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(
            files == [
                "checkpoint", "consistency.jsonl", "cosignatures.jsonl", "entries.csv", "entries.jsonl", "leaves.bin",
                "manifest",
            ]
        )
        #expect(try AuditBundle.verify(directory: out, verifier: signer.verifier).witnesses[first.size]?.count == 1)
        let headerBytes = BundleText.csvHeader.utf8.count
        for name in files {
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out + "/" + name)))
            #expect(!original.isEmpty)
            for i in original.indices {
                try edit(out, name) { $0[i] ^= 0x01 }
                let message = failure(out, signer.verifier)
                if let message {
                    if name == "entries.jsonl" || (name == "entries.csv" && i >= headerBytes) {
                        #expect(message.hasPrefix("entry "), "\(name) byte \(i): \(message)")
                    }
                } else {
                    Issue.record("a flip of \(name) byte \(i) was not detected")
                }
                try edit(out, name) { $0 = original }
            }
        }
        #expect(failure(out, signer.verifier) == nil)
    }

    @Test("Deleting, reordering, repeating or inserting entries is detected and the first bad entry named")
    func entryEdits() throws {
        let (log, _, signer) = try sampleLog(6)
        let out = bundleFolder()
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: out)
        let original = try String(contentsOfFile: out + "/entries.jsonl", encoding: .utf8)
        var lines = original.split(separator: "\n").map(String.init)
        let cases: [(String, [String])] = [
            ("entry 3 is missing: entries.jsonl line 4 holds entry 4", Array(lines[0..<3] + lines[4...])),
            (
                "entry 2 is missing: entries.jsonl line 3 holds entry 3",
                Array(lines[0..<2] + [lines[3], lines[2]] + lines[4...])
            ),
            (
                "entry 3 (entries.jsonl line 4): the line holds entry 2, out of order or repeated",
                Array(lines[0..<3] + [lines[2]] + lines[3...])
            ),
            ("entry 6 is missing: entries.jsonl ends after 6 entries", Array(lines.dropLast())),
        ]
        for (expected, edited) in cases {
            try (edited.joined(separator: "\n") + "\n").write(
                toFile: out + "/entries.jsonl",
                atomically: true,
                encoding: .utf8
            )
            #expect(failure(out, signer.verifier) == expected)
        }
        // An inserted, well-formed entry that the log never held.
        lines[4] = lines[4].replacingOccurrences(of: "ed25519:actor-1", with: "ed25519:actor-9")
        try (lines.joined(separator: "\n") + "\n").write(
            toFile: out + "/entries.jsonl",
            atomically: true,
            encoding: .utf8
        )
        #expect(
            failure(out, signer.verifier)
                == "entry 4 (entries.jsonl line 5): it does not hash to leaf 4 of the checkpoint's tree"
        )
        try original.write(toFile: out + "/entries.jsonl", atomically: true, encoding: .utf8)
        try "x".write(toFile: out + "/extra", atomically: true, encoding: .utf8)
        #expect(failure(out, signer.verifier) == "the bundle holds files the manifest does not list: [\"extra\"]")
        try FileManager.default.removeItem(atPath: out + "/extra")
        #expect(failure(out, signer.verifier) == nil)
        #expect(throws: AuditError(.tampered, "")) {
            try AuditBundle.verify(directory: out, verifier: NoteSigner(name: origin, key: .init()).verifier)
        }
    }

    @Test("A filtered export carries inclusion proofs; a deleted or altered entry or proof is detected")
    func filtered() throws {
        let (log, _, signer) = try sampleLog(30)
        let out = bundleFolder()
        let filter = AuditBundle.Filter(
            from: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + 5 * 3600),
            to: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + 20 * 3600),
            action: "round.submit"
        )
        let written = try AuditBundle.export(
            log: log,
            origin: origin,
            signer: signer,
            filter: filter,
            actor: "operator:ana",
            to: out
        )
        let summary = try AuditBundle.verify(directory: out, verifier: signer.verifier)
        #expect(summary == written && summary.filter == filter)
        // Entries 7, 10, 13, 16 and 19 are round.submit inside the window.
        #expect(summary.entryCount == 5)
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(
            files == [
                "checkpoint", "consistency.jsonl", "cosignatures.jsonl", "entries.csv", "entries.jsonl", "manifest",
                "proofs.jsonl",
            ]
        )
        try edit(out, "proofs.jsonl") { bytes in
            let at = bytes.firstIndex(of: UInt8(ascii: "[")).map { $0 + 2 }!
            bytes[at] = bytes[at] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        }
        #expect(
            failure(out, signer.verifier)
                == "entry 7 (entries.jsonl line 1): its inclusion proof does not lead to the checkpoint's root"
        )
    }

    @Test("A row edited with the sqlite3 shell (triggers dropped) is refused at opening and at export, naming it")
    func sqliteShellEdits() throws {
        let (log, path, signer) = try sampleLog(8)
        let original = try log.entry(3)
        var forged = original
        forged.actor = "ed25519:someone-else"
        func shell(_ sql: String) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
            process.arguments = [path, sql]
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        try shell(
            "DROP TRIGGER entries_are_append_only_update; UPDATE entries SET entry = x'\(Hex.encode(try forged.encoded()))' WHERE sequence = 3;"
        )
        let edited = "audit entry 3 does not hash to its stored leaf: the entry or its leaf was changed"
        #expect(#expect(throws: AuditError.self) { try AuditLog(path: path) }?.message == edited)
        let export = #expect(throws: AuditError.self) {
            try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: bundleFolder())
        }
        #expect(export?.message == edited)
        // A deleted row leaves a gap that the log refuses to open past, naming the entry.
        try shell(
            "UPDATE entries SET entry = x'\(Hex.encode(try original.encoded()))' WHERE sequence = 3; DROP TRIGGER entries_are_append_only_delete; DELETE FROM entries WHERE sequence = 5;"
        )
        #expect(
            #expect(throws: AuditError.self) { try AuditLog(path: path) }?.message
                == "audit entry 5 is missing from the store"
        )
    }

    @Test("An earlier bundle is checked against a later one through the later bundle's consistency proofs")
    func laterBundle() throws {
        let (log, _, signer) = try sampleLog(9)
        let first = bundleFolder()
        let second = bundleFolder()
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: first)
        for _ in 0..<4 { try log.append { logEntry($0) } }
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: second)
        let earlier = try AuditBundle.verify(directory: first, verifier: signer.verifier)
        let later = try AuditBundle.verify(directory: second, verifier: signer.verifier)
        try AuditBundle.checkConsistency(earlier: earlier, later: later)
        try AuditBundle.checkConsistency(earlier: earlier, later: earlier)
        #expect(throws: AuditError(.inconsistent, "")) {
            try AuditBundle.checkConsistency(earlier: later, later: earlier)
        }
        // A forked log: same key, same size as the first bundle, different entries.
        let fork = try AuditLog(path: temporaryDatabase())
        for _ in 0..<9 { try fork.append { logEntry($0) } }
        let forked = bundleFolder()
        try AuditBundle.export(log: fork, origin: origin, signer: signer, actor: "operator:ana", to: forked)
        let forkSummary = try AuditBundle.verify(directory: forked, verifier: signer.verifier)
        #expect(throws: AuditError(.inconsistent, "")) {
            try AuditBundle.checkConsistency(earlier: forkSummary, later: later)
        }
    }

    @Test("Erasing a person's data leaves the log, its proofs and a new bundle valid; the data is gone from the file")
    func erasure() throws {
        let (log, path, signer) = try sampleLog(4)
        try log.recordPerson(
            .init(id: "ed25519:actor-1", displayName: "Dr Ada Example", contact: "ada@example.org"),
            actor: "operator:ana",
            time: "2026-11-24T04:00:00Z"
        )
        let before = bundleFolder()
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: before)
        #expect(try log.people().map(\.displayName) == ["Dr Ada Example"])
        try log.erasePerson("ed25519:actor-1", actor: "operator:ana", time: "2026-11-24T04:10:00Z")
        #expect(try log.people().isEmpty)
        #expect(throws: AuditError(.outOfRange, "")) {
            try log.erasePerson("ed25519:actor-1", actor: "operator:ana", time: "2026-11-24T04:10:00Z")
        }
        let after = bundleFolder()
        try AuditBundle.export(log: log, origin: origin, signer: signer, actor: "operator:ana", to: after)
        let summary = try AuditBundle.verify(directory: after, verifier: signer.verifier)
        try AuditBundle.checkConsistency(
            earlier: try AuditBundle.verify(directory: before, verifier: signer.verifier),
            later: summary
        )
        #expect(try log.entry(4).action == "person.record" && log.entry(6).action == "person.erase")
        // Nothing of the erased person survives in the database files (secure_delete, WAL checkpointed).
        _ = try DatabaseQueue(path: path).writeWithoutTransaction { try $0.checkpoint(.truncate) }
        for file in [path, path + "-wal"] where FileManager.default.fileExists(atPath: file) {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            #expect(bytes.range(of: Data("ada@example.org".utf8)) == nil, "\(file)")
            #expect(bytes.range(of: Data("Dr Ada Example".utf8)) == nil, "\(file)")
        }
    }

    @Test("Canonical lines: other spellings of the same JSON are refused")
    func canonicalLines() throws {
        let entry = logEntry(3)
        let line = BundleText.jsonLine(entry)
        #expect(try BundleText.entry(jsonLine: ArraySlice(line.utf8.dropLast())) == entry)
        for variant in [
            line.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":03"),
            line.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\": 3"),
            line.replacingOccurrences(of: "fed-1", with: "fed\\u002d1"),
            line.replacingOccurrences(of: "\"outcome\":\"succeeded\"", with: "\"outcome\":\"ok\""),
            line.replacingOccurrences(of: "}\n", with: "} \n"),
            line.replacingOccurrences(of: "participant.enrol", with: "Participant.enrol"),
        ] {
            #expect(throws: AuditError(.malformed, "")) {
                try BundleText.entry(jsonLine: ArraySlice(variant.utf8.dropLast()))
            }
        }
    }
}

@Suite("Actor-signed entries")
struct ActorSignatureTests {
    let broker = try! Ed25519.PrivateKey()
    let operatorKey = try! Ed25519.PrivateKey()
    let member = try! Ed25519.PrivateKey()

    /// `key`'s signed request for `target`, as the broker records it.
    func request(
        _ key: Ed25519.PrivateKey,
        _ target: String,
        time: Int64 = 1_795_000_000
    ) throws
        -> AuditEntry.SignedRequest
    {
        let digest = try RequestSignature.digest(Array(target.utf8))
        let signature = try RequestSignature.sign(
            method: "POST",
            target: target,
            bodyDigest: digest,
            identity: key,
            broker: broker.publicKey,
            time: time
        )
        return AuditEntry.SignedRequest(
            signature,
            method: "POST",
            target: target,
            bodyDigest: digest,
            broker: broker.publicKey
        )
    }

    /// A log as the broker writes it: init publishing its keys, an enrolment publishing the
    /// member's, the member's and the operator's signed actions, and a broker-only entry.
    func log() throws -> (AuditLog, String) {
        let path = temporaryDatabase()
        let log = try AuditLog(path: path)
        let entries: [(String, String, AuditEntry.SignedRequest?, [AuditEntry.Digest])] = [
            (
                "broker:" + broker.publicKey.fingerprint, "broker.init", nil,
                [
                    .init(name: "broker.identity", bytes: broker.publicKey.rawRepresentation),
                    .init(name: "operator.key", bytes: operatorKey.publicKey.rawRepresentation),
                ]
            ),
            (
                "participant:" + member.publicKey.fingerprint, "member.enrol", try request(member, "/v1/enrol"),
                [.init(name: "member.key", bytes: member.publicKey.rawRepresentation)]
            ),
            (
                "participant:" + member.publicKey.fingerprint, "round.mask", try request(member, "/v1/f/rounds/1/mask"),
                []
            ),
            (
                "operator:" + operatorKey.publicKey.fingerprint, "training.start",
                try request(operatorKey, "/v1/f/training"), []
            ),
            ("broker", "round.open", nil, []),
        ]
        for (actor, action, request, digests) in entries {
            try log.append {
                AuditEntry(
                    sequence: $0,
                    time: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + Int($0)),
                    actor: actor,
                    action: action,
                    objectType: "federation",
                    objectID: "f",
                    outcome: .succeeded,
                    digests: digests,
                    request: request
                )
            }
        }
        return (log, path)
    }

    /// Appends `entry` with plain SQL, as whoever holds the database can, with the tree head it
    /// should carry, so that the log opens and exports.
    func insertBehindTheLog(_ path: String, _ entry: AuditEntry) throws {
        let bytes = try entry.encoded()
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            let last = try Data.fetchOne(
                db,
                sql: "SELECT head FROM entries WHERE sequence = ?",
                arguments: [entry.sequence - 1]
            )!
            var frontier = Frontier(size: Int(entry.sequence), bytes: Array(last))!
            frontier.append(RFC6962.leafHash(bytes))
            try db.execute(
                sql: "INSERT INTO entries (sequence, entry, leaf, head) VALUES (?, ?, ?, ?)",
                arguments: [entry.sequence, Data(bytes), Data(RFC6962.leafHash(bytes).bytes), Data(frontier.bytes)]
            )
        }
        try queue.close()
    }

    func verification(_ path: String, _ signer: NoteSigner) throws -> Result<AuditBundle.Summary, AuditError> {
        let out = bundleFolder()
        try AuditBundle.export(
            log: try AuditLog(path: path),
            origin: origin,
            signer: signer,
            actor: "operator",
            to: out
        )
        return Result { () throws(AuditError) in
            do { return try AuditBundle.verify(directory: out, verifier: signer.verifier) } catch let e as AuditError {
                throw e
            } catch { throw AuditError(.storage, "\(error)") }
        }
    }

    @Test("Signed requests round-trip through the entry bytes and the bundle; verify checks and counts them")
    func signedEntriesVerify() throws {
        let (log, path) = try log()
        let entry = try log.entry(2)
        #expect(try AuditEntry(decoding: entry.encoded()) == entry)
        #expect(try entry.encoded().prefix(2) == [2, 0])
        #expect(try log.entry(4).encoded().prefix(2) == [1, 0])
        let signer = try NoteSigner(name: origin, key: .init())
        let summary = try verification(path, signer).get()
        #expect(summary.actorSigned == 3)
        #expect(summary.brokerOnly == 3)  // broker.init, round.open and the export's own entry
    }

    @Test(
        "An entry INSERTed behind the log naming a member fails verify: no signature, a replayed or foreign signature, an unpublished key"
    )
    func forgedEntriesFail() throws {
        let signer = try NoteSigner(name: origin, key: .init())
        let stranger = try Ed25519.PrivateKey()
        let fingerprint = member.publicKey.fingerprint
        let cases: [(AuditEntry.SignedRequest?, String, String)] = [
            (
                nil, "participant:" + fingerprint,
                "it names participant:\(fingerprint) as its actor but carries no request signed by \(fingerprint)"
            ),
            (
                try request(stranger, "/v1/f/rounds/1/mask"), "participant:" + fingerprint,
                "its request was signed by \(stranger.publicKey.fingerprint), not by its actor participant:\(fingerprint)"
            ),
            (
                try request(stranger, "/v1/f/rounds/1/mask"), "participant:" + stranger.publicKey.fingerprint,
                "its request was signed by \(stranger.publicKey.fingerprint), a key no earlier entry of the log publishes"
            ),
            {
                var altered = try! request(member, "/v1/f/rounds/1/mask")
                altered.target = "/v1/f/licences"
                return (
                    altered, "participant:" + fingerprint, "the signature of the request it records does not verify"
                )
            }(),
        ]
        for (signed, actor, why) in cases {
            let (log, path) = try log()
            try insertBehindTheLog(
                path,
                AuditEntry(
                    sequence: UInt64(log.size),
                    time: "2026-11-30T00:00:00Z",
                    actor: actor,
                    action: "licence.request",
                    objectType: "licence",
                    objectID: "l-1",
                    outcome: .succeeded,
                    request: signed
                )
            )
            let result = try verification(path, signer)
            #expect(result.failure?.message == "entry 5 (entries.jsonl line 6): \(why)")
        }
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
