import CairnAudit
import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import GRDB
import Glibc

/// The entry the benchmark and the crash test append at `sequence`: its content follows from the
/// sequence number alone, so a checker can tell exactly what every acknowledged entry must be.
func syntheticEntry(_ sequence: UInt64) -> AuditEntry {
    AuditEntry(
        sequence: sequence,
        time: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + Int(sequence)),
        actor: "ed25519:" + Hex.encode(SHA256.hash(Array("actor \(sequence % 97)".utf8)).prefix(16)),
        action: ["round.submit", "participant.enrol", "licence.issue", "model.deliver"][Int(sequence % 4)],
        objectType: "round",
        objectID: "federation-1/round-\(sequence / 100)",
        outcome: sequence % 10 == 9 ? .refused : .succeeded,
        reason: sequence % 10 == 9 ? "stale timestamp" : "",
        requestID: "req-\(sequence)",
        digests: [.init(name: "round.submission", bytes: SHA256.hash(Array("payload \(sequence)".utf8)))]
    )
}

/// `cairn-bench audit`: durable and batched append rates against raw SQLite inserts of the same
/// rows with the same durability, and the offline verification rate of a whole-log bundle.
struct AuditBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "audit")
        let folder = NSTemporaryDirectory() + "cairn-bench-audit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }

        // Appends: Cairn's log against GRDB executing the same INSERT of the same precomputed rows in
        // a database with the same schema, WAL and synchronous=FULL. Both commit once per batch.
        for batch in [1, 256] {
            let chunk = batch == 1 ? (quick ? 100 : 500) : (quick ? 2560 : 25600)
            let reps = quick ? 2 : 5
            let log = try AuditLog(path: folder + "/log-\(batch).sqlite")
            let raw = try rawDatabase(folder + "/raw-\(batch).sqlite")
            var rawNext = 0
            let times = try bestOfInterleaved(
                repetitions: reps,
                subject: {
                    for _ in 0..<(chunk / batch) { try log.append(count: batch) { syntheticEntry($0) } }
                },
                reference: {
                    let rows = try (rawNext..<(rawNext + chunk)).map { s -> [UInt8] in
                        try syntheticEntry(UInt64(s)).encoded()
                    }
                    let leaves = rows.map { RFC6962.leafHash($0).bytes }
                    try rawInsert(raw, first: rawNext, rows: rows, leaves: leaves, batch: batch)
                    rawNext += chunk
                }
            )
            report.cases.append(
                BenchCase(
                    name: batch == 1 ? "durable-append" : "batched-append",
                    params: [("entries_per_commit", "\(batch)"), ("entries", "\(chunk)")],
                    value: Double(chunk) / times.subject,
                    unit: "entries/s",
                    floor: Double(chunk) / times.reference
                )
            )
        }

        // Verification of a whole-log bundle, against the hashing alone (leaf hashes of the same
        // canonical entries and the root) on the same entries.
        let count = quick ? 10_000 : 1_000_000
        let log = try AuditLog(path: folder + "/verify.sqlite")
        var appended = 0
        while appended < count {
            let n = min(4096, count - appended)
            try log.append(count: n) { syntheticEntry($0) }
            appended += n
        }
        let signer = try NoteSigner(name: "bench.cairn/audit", key: .init())
        let bundle = folder + "/bundle"
        let exportTime = try seconds {
            try AuditBundle.export(log: log, origin: "bench.cairn/audit", signer: signer, actor: "bench", to: bundle)
        }
        let encoded = try (0..<log.size).map { try log.entry($0).encoded() }
        let expectedRoot = try log.root()
        var verifyTime = Double.infinity
        var hashTime = Double.infinity
        for _ in 0..<(quick ? 1 : 3) {
            verifyTime = min(
                verifyTime,
                try seconds { _ = try AuditBundle.verify(directory: bundle, verifier: signer.verifier) }
            )
            hashTime = min(
                hashTime,
                try seconds {
                    var tree = MerkleTree()
                    for e in encoded { tree.append(RFC6962.leafHash(e)) }
                    let root = try tree.root()
                    precondition(root == expectedRoot)
                }
            )
        }
        let entries = Double(log.size)
        report.cases.append(
            BenchCase(
                name: "export",
                params: [("entries", "\(log.size)")],
                value: entries / exportTime,
                unit: "entries/s",
                floor: nil
            )
        )
        report.cases.append(
            BenchCase(
                name: "verify",
                params: [("entries", "\(log.size)")],
                value: entries / verifyTime,
                unit: "entries/s",
                floor: entries / hashTime
            )
        )
        try verifySigned(into: &report, folder: folder)
        return report
    }

    /// Verification of a whole-log bundle whose entries all carry the request their actor signed
    /// (as a member's entries do), against Ed25519 verification alone of the same signatures over
    /// the same messages: the actor-signature check's floor.
    private func verifySigned(into report: inout BenchReport, folder: String) throws {
        let count = quick ? 2_000 : 50_000
        let broker = try Ed25519.PrivateKey()
        let members = try (0..<16).map { _ in try Ed25519.PrivateKey() }
        let log = try AuditLog(path: folder + "/signed.sqlite")
        var messages: [(key: Ed25519.PublicKey, message: [UInt8], signature: [UInt8])] = []
        var appended = 0
        while appended < count {
            let n = min(1024, count - appended)
            try log.append(count: n) { sequence in
                var entry = syntheticEntry(sequence)
                let member = members[Int(sequence % 16)]
                let target = "/v1/federations/bench/rounds/\(sequence / 100)/mask"
                let digest = SHA256.hash(Array("body \(sequence)".utf8))
                let signature = try RequestSignature.sign(
                    method: "POST",
                    target: target,
                    bodyDigest: digest,
                    identity: member,
                    broker: broker.publicKey,
                    time: 1_795_000_000 + Int64(sequence)
                )
                entry.actor = "participant:" + member.publicKey.fingerprint
                entry.request = AuditEntry.SignedRequest(
                    signature,
                    method: "POST",
                    target: target,
                    bodyDigest: digest,
                    broker: broker.publicKey
                )
                let message = RequestSignature.message(
                    method: "POST",
                    target: target,
                    bodyDigest: digest,
                    time: signature.time,
                    nonce: signature.nonce,
                    broker: broker.publicKey
                )
                messages.append((member.publicKey, message, signature.signature))
                return entry
            }
            appended += n
        }
        let signer = try NoteSigner(name: "bench.cairn/signed", key: .init())
        let bundle = folder + "/signed-bundle"
        try AuditBundle.export(log: log, origin: signer.name, signer: signer, actor: "bench", to: bundle)
        var verifyTime = Double.infinity
        var floorTime = Double.infinity
        for _ in 0..<(quick ? 1 : 3) {
            verifyTime = min(
                verifyTime,
                try seconds {
                    let summary = try AuditBundle.verify(directory: bundle, verifier: signer.verifier)
                    precondition(summary.actorSigned == count)
                }
            )
            floorTime = min(
                floorTime,
                seconds {
                    for m in messages {
                        precondition(m.key.isValidSignature(m.signature, for: m.message, domain: .request))
                    }
                }
            )
        }
        report.cases.append(
            BenchCase(
                name: "verify-actor-signed",
                params: [("entries", "\(count)")],
                value: Double(count) / verifyTime,
                unit: "entries/s",
                floor: Double(count) / floorTime
            )
        )
    }

    private func rawDatabase(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(
                sql: "CREATE TABLE entries (sequence INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf BLOB NOT NULL)"
            )
        }
        return queue
    }

    private func rawInsert(_ db: DatabaseQueue, first: Int, rows: [[UInt8]], leaves: [[UInt8]], batch: Int) throws {
        try db.writeWithoutTransaction { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO entries (sequence, entry, leaf) VALUES (?, ?, ?)")
            var i = 0
            while i < rows.count {
                try db.inTransaction {
                    for j in i..<min(i + batch, rows.count) {
                        try insert.execute(arguments: [first + j, Data(rows[j]), Data(leaves[j])])
                    }
                    return .commit
                }
                i += batch
            }
        }
    }
}

/// The crash test's halves (`scripts/audit-crash`): a writer that appends until it is killed,
/// and a checker that runs after each kill.
enum AuditCrash {
    /// The test's checkpoint key: fixed, because the checker must verify what a killed writer
    /// signed. It protects nothing.
    static func signer() throws -> NoteSigner {
        try NoteSigner(
            name: "crash.cairn/audit",
            key: Ed25519.PrivateKey(seed: SecretBytes(copying: SHA256.hash(Array("cairn crash test key".utf8))))
        )
    }

    /// Appends batches of 1–16 synthetic entries forever, printing `acked <last sequence>` after
    /// each commit returned, and signs a checkpoint every 64 entries or so.
    static func write(database: String) throws -> Never {
        let log = try AuditLog(path: database)
        let signer = try signer()
        var sinceCheckpoint = 0
        while true {
            let batch = Int.random(in: 1...16)
            let entries = try log.append(count: batch) { syntheticEntry($0) }
            // One write(2) per line, unbuffered: what a kill leaves in the file was acknowledged.
            let line = Array("acked \(entries.last!.sequence)\n".utf8)
            guard Glibc.write(STDOUT_FILENO, line, line.count) == line.count else {
                throw AuditError(.storage, "cannot write the acknowledgement")
            }
            sinceCheckpoint += batch
            if sinceCheckpoint >= 64 {
                try log.signCheckpoint(origin: signer.name, signer: signer)
                sinceCheckpoint = 0
            }
        }
    }

    /// Checks the log after a kill; returns a one-line summary or throws what is wrong.
    static func check(database: String, ackedFile: String) throws -> String {
        let acked =
            try String(contentsOfFile: ackedFile, encoding: .utf8).split(separator: "\n")
            .compactMap { $0.hasPrefix("acked ") ? Int($0.dropFirst(6)) : nil }.max() ?? -1
        let log = try AuditLog(path: database)  // refuses gaps and malformed leaves
        guard acked < log.size else {
            throw AuditError(.inconsistent, "entry \(acked) was acknowledged but the log holds only \(log.size)")
        }
        // Entries checked after an earlier kill are pinned by the checkpoint signed then (signing
        // below checks consistency with it), so each check reads only what is new.
        let statePath = ackedFile + ".checked"
        let checked = min(
            log.size,
            (try? String(contentsOfFile: statePath, encoding: .utf8)).flatMap { Int($0) } ?? 0
        )
        try log.forEachEntry(in: checked..<log.size) { sequence, bytes, leaf in
            guard bytes == (try syntheticEntry(UInt64(sequence)).encoded()), RFC6962.leafHash(bytes) == leaf else {
                throw AuditError(.inconsistent, "entry \(sequence) is torn or differs from what was appended")
            }
        }
        let signer = try signer()
        let stored = try log.checkpoints().count
        // Signing checks consistency with the last checkpoint the killed writer stored.
        let note = try log.signCheckpoint(origin: signer.name, signer: signer)
        let checkpoint = try Checkpoint(text: SignedNote.open(note, verifier: signer.verifier))
        guard checkpoint.size == log.size, checkpoint.root == (try log.root()) else {
            throw AuditError(.inconsistent, "the new checkpoint does not cover the log")
        }
        try "\(log.size)".write(toFile: statePath, atomically: true, encoding: .utf8)
        return "ok: \(log.size) entries, \(acked + 1) acknowledged, \(stored) checkpoints before this one"
    }
}
