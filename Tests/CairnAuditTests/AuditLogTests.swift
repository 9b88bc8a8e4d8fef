import CairnCrypto
import CairnWire
import Foundation
import GRDB
import Testing

@testable import CairnAudit

func logEntry(_ sequence: UInt64, _ action: String = "participant.enrol") -> AuditEntry {
    AuditEntry(
        sequence: sequence,
        time: "2026-11-24T03:25:00Z",
        actor: "ed25519:\(sequence)",
        action: action,
        objectType: "federation",
        objectID: "fed-1",
        outcome: .succeeded
    )
}

func temporaryDatabase() -> String {
    let folder = NSTemporaryDirectory() + "cairn-audit-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder + "/audit.sqlite"
}

@Suite("Audit log in SQLite")
struct AuditLogTests {
    @Test("Appends get consecutive sequence numbers; reopening rebuilds the same tree from stored leaves")
    func appendAndReopen() throws {
        let path = temporaryDatabase()
        var reference = MerkleTree()
        do {
            let log = try AuditLog(path: path)
            for i in 0..<100 {
                let e = try log.append { logEntry($0) }
                #expect(e.sequence == UInt64(i))
                reference.append(RFC6962.leafHash(try e.encoded()))
            }
            #expect(try log.root() == reference.root())
        }
        let reopened = try AuditLog(path: path)
        #expect(try reopened.writerSynchronousMode == 2)  // FULL: every commit syncs the WAL
        #expect(reopened.size == 100)
        #expect(try reopened.root() == reference.root())
        #expect(try reopened.entry(42) == logEntry(42))
        let proof = try reopened.inclusionProof(index: 42)
        #expect(
            RFC6962.verifyInclusion(
                leaf: reference.leaf(42),
                index: 42,
                size: 100,
                proof: proof,
                root: try reference.root()
            )
        )
        #expect(throws: AuditError(.outOfRange, "")) { try reopened.entry(100) }
    }

    @Test("UPDATE and DELETE are aborted by triggers, even through raw SQL; the log is unchanged")
    func appendOnly() throws {
        let path = temporaryDatabase()
        let log = try AuditLog(path: path)
        for _ in 0..<3 { try log.append { logEntry($0) } }
        let root = try log.root()
        let queue = try DatabaseQueue(path: path)
        for sql in [
            "UPDATE entries SET entry = x'00' WHERE sequence = 1", "DELETE FROM entries WHERE sequence = 2",
            "DELETE FROM entries",
        ] {
            do {
                try queue.write { try $0.execute(sql: sql) }
                Issue.record("\(sql) was allowed")
            } catch let error as DatabaseError {
                #expect(error.message == "audit entries are append-only")
            }
        }
        #expect(try AuditLog(path: path).root() == root)
    }

    @Test("A bad entry or a wrong sequence appends nothing")
    func refusals() throws {
        let log = try AuditLog(path: temporaryDatabase())
        try log.append { logEntry($0) }
        #expect(throws: AuditError(.malformed, "")) { try log.append { logEntry($0, "Bad Action") } }
        #expect(throws: AuditError(.malformed, "")) { try log.append { logEntry($0 + 5) } }
        #expect(log.size == 1)
        #expect(try log.append { logEntry($0) }.sequence == 1)
    }

    @Test("Concurrent appends from many tasks get distinct, consecutive sequence numbers")
    func concurrentAppends() async throws {
        let path = temporaryDatabase()
        let log = try AuditLog(path: path)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<25 { try log.append { logEntry($0) } } }
            }
            try await group.waitForAll()
        }
        #expect(log.size == 200)
        let reopened = try AuditLog(path: path)
        #expect(try reopened.root() == log.root())
        #expect(try (0..<200).allSatisfy { try reopened.entry($0).sequence == UInt64($0) })
    }
}

@Suite("Checkpoints of the audit log")
struct AuditCheckpointTests {
    @Test("Checkpoints are signed, stored before they are returned, and repeat when the log has not grown")
    func signing() throws {
        let path = temporaryDatabase()
        let log = try AuditLog(path: path)
        let signer = try NoteSigner(name: "cairn.example/log", key: .init())
        #expect(try log.latestCheckpoint() == nil)
        for _ in 0..<10 { try log.append { logEntry($0) } }
        let first = try log.signCheckpoint(origin: "cairn.example/log", signer: signer)
        let checkpoint = try Checkpoint(text: SignedNote.open(first, verifier: signer.verifier))
        let root = try log.root()
        #expect(checkpoint.size == 10 && checkpoint.root == root && checkpoint.origin == "cairn.example/log")
        #expect(try AuditLog(path: path).latestCheckpoint() == first)
        #expect(try log.signCheckpoint(origin: "cairn.example/log", signer: signer) == first)
        for _ in 0..<5 { try log.append { logEntry($0) } }
        let second = try Checkpoint(
            text: SignedNote.open(
                log.signCheckpoint(origin: "cairn.example/log", signer: signer),
                verifier: signer.verifier
            )
        )
        #expect(second.size == 15)
        let proof = try log.consistencyProof(from: 10)
        #expect(
            RFC6962.verifyConsistency(
                oldSize: 10,
                newSize: 15,
                oldRoot: checkpoint.root,
                newRoot: second.root,
                proof: proof
            )
        )
    }

    /// One way of editing the database behind the log's back, and what the refusal must name.
    struct Tamper: CustomTestStringConvertible, Sendable {
        let name: String
        let sql: String
        let arguments: [Data]
        let names: String
        var testDescription: String { name }
    }

    static let tampers: [Tamper] = {
        let forged = try! logEntry(5, "participant.suspend").encoded()
        let shifted = try! logEntry(6).encoded()
        let inserted = try! logEntry(8).encoded()
        return [
            Tamper(
                name: "edited blob, old leaf",
                sql: "UPDATE entries SET entry = ? WHERE sequence = 5",
                arguments: [Data(forged)],
                names: "audit entry 5 does not hash to its stored leaf"
            ),
            Tamper(
                name: "wrong leaf",
                sql: "UPDATE entries SET leaf = ? WHERE sequence = 5",
                arguments: [Data(SHA256.hash(Array("not the leaf".utf8)))],
                names: "audit entry 5 does not hash to its stored leaf"
            ),
            Tamper(
                name: "undecodable blob",
                sql: "UPDATE entries SET entry = ?, leaf = ? WHERE sequence = 5",
                arguments: [Data([0, 1, 2]), Data(RFC6962.leafHash([0, 1, 2]).bytes)],
                names: "audit entry 5 does not decode"
            ),
            Tamper(
                name: "wrong sequence",
                sql: "UPDATE entries SET entry = ?, leaf = ? WHERE sequence = 5",
                arguments: [Data(shifted), Data(RFC6962.leafHash(shifted).bytes)],
                names: "audit entry 5 carries sequence number 6"
            ),
            Tamper(
                name: "edited entry, leaf re-hashed",
                sql: "UPDATE entries SET entry = ?, leaf = ? WHERE sequence = 5",
                arguments: [Data(forged), Data(RFC6962.leafHash(forged).bytes)],
                names: "audit entry 5 and its leaf were changed after it was appended"
            ),
            Tamper(
                name: "entry INSERTed directly",
                sql: "INSERT INTO entries (sequence, entry, leaf) VALUES (8, ?, ?)",
                arguments: [Data(inserted), Data(RFC6962.leafHash(inserted).bytes)],
                names: "audit entries 8–8 were written into the database directly"
            ),
        ]
    }()

    @Test(
        "Database tampering (triggers dropped) is refused at signing, at export and at opening, naming the entry",
        arguments: tampers
    )
    func tamperedLogIsRefused(tamper: Tamper) throws {
        let path = temporaryDatabase()
        let signer = try NoteSigner(name: "cairn.example/log", key: .init())
        // The running daemon: it appended entries 0–7 and signed a checkpoint at 4.
        let daemon = try AuditLog(path: path)
        for _ in 0..<5 { try daemon.append { logEntry($0) } }
        let note = try daemon.signCheckpoint(origin: "cairn.example/log", signer: signer)
        for _ in 0..<3 { try daemon.append { logEntry($0) } }
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER entries_are_append_only_update")
            try db.execute(sql: tamper.sql, arguments: StatementArguments(tamper.arguments))
        }
        try queue.close()

        func refusal(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "accepted"
            } catch let error as AuditError {
                return error.code == .inconsistent ? error.message : "\(error.code): \(error.message)"
            } catch {
                return "\(error)"
            }
        }
        let signing = refusal { try daemon.signCheckpoint(origin: "cairn.example/log", signer: signer) }
        #expect(signing.contains(tamper.names), "signing: \(signing)")
        let export = refusal {
            try AuditBundle.export(
                log: daemon,
                origin: "cairn.example/log",
                signer: signer,
                actor: "operator:ana",
                to: NSTemporaryDirectory() + "cairn-bundle-\(UUID().uuidString)"
            )
        }
        #expect(export.contains(tamper.names), "export: \(export)")
        let opening = refusal { _ = try AuditLog(path: path) }
        // A fresh process sees the edited rows as they are (9 with the export's entry): a re-hashed
        // edit breaks the tree head.
        let atOpening =
            tamper.name == "edited entry, leaf re-hashed"
            ? "the tree head stored with audit entry 8 does not match the leaves of the 9 entries" : tamper.names
        #expect(opening.contains(atOpening), "opening: \(opening)")
        #expect(try daemon.latestCheckpoint() == note)
    }

    @Test("Two logs on one file (two processes) append into one tree; each signs over what the other wrote")
    func twoWriters() throws {
        let path = temporaryDatabase()
        let signer = try NoteSigner(name: "cairn.example/log", key: .init())
        let daemon = try AuditLog(path: path)
        let tool = try AuditLog(path: path)
        var reference = MerkleTree()
        for i in 0..<40 {
            let e = try (i % 3 == 0 ? tool : daemon).append { logEntry($0) }
            #expect(e.sequence == UInt64(i))
            reference.append(RFC6962.leafHash(try e.encoded()))
            if i % 7 == 0 {
                let note = try (i % 2 == 0 ? tool : daemon).signCheckpoint(origin: "cairn.example/log", signer: signer)
                let checkpoint = try Checkpoint(text: SignedNote.open(note, verifier: signer.verifier))
                #expect(checkpoint.size == i + 1)
                #expect(checkpoint.root == (try reference.root()))
            }
        }
        #expect(daemon.size == 40)
        #expect(try daemon.root() == reference.root())
        #expect(try tool.inclusionProof(index: 39, size: 40) == reference.inclusionProof(index: 39))
        #expect(try AuditLog(path: path).root() == reference.root())
    }
}
