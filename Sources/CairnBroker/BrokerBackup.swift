public import CairnAudit
import CairnCrypto
import CairnWire
import Foundation
import GRDB

/// Online, consistent backups of a broker's data folder, and their restore
/// (`cairn-broker backup`, `cairn-broker restore`; `Keys/README.md`, "Backups").
///
/// A backup is a folder holding:
/// - `broker.sqlite` and `audit.sqlite`: snapshots taken with SQLite's online backup API while the
///   daemon may be running, the broker's state first and the audit log second. The exchange
///   records every change in the log before it stores it, so the log snapshot holds every entry
///   the state snapshot reflects (and perhaps a few more, as after a crash);
/// - `broker.keystore` (still passphrase-protected), `broker.json` and `checkpoint.pub`, copied,
///   and `tls.crt` and `tls.key` when the folder has them (a restored broker then presents the
///   certificate its members pinned; backups made before TLS have none);
/// - `manifest`: a C2SP signed note by the checkpoint key naming the origin, the backup's id and
///   time, the audit log's size, and the SHA-256 of every other file.
///
/// The log records each backup (`broker.backup`, before the snapshot, so the backup holds its own
/// entry) and each restore (`broker.restore`, in the restored log).
public enum BrokerBackup {
    /// The first line of a backup manifest (a checkpoint's second line is a number, so the
    /// checkpoint key's notes cannot be confused).
    public static let manifestHeader = "cairn-broker-backup/v1"
    /// The state database's file name in the data folder.
    public static let storeFileName = "broker.sqlite"
    /// The databases, in the order they are snapshotted.
    static let databases = [storeFileName, BrokerHome.auditFileName]
    /// The files copied as they are.
    static let copied = [BrokerHome.keystoreFileName, BrokerHome.configFileName, BrokerHome.verifierFileName]
    /// The files copied when present.
    static let optional = [BrokerTLS.certificateFileName, BrokerTLS.keyFileName]
    /// The largest file read back: 64 GiB.
    static let maximumFileBytes = 64 << 30

    /// What a backup holds.
    public struct Summary: Sendable, Equatable {
        /// The log's origin.
        public var origin: String
        /// The backup's id (the object id of its `broker.backup` entry).
        public var id: String
        /// When it was taken (RFC 3339).
        public var taken: String
        /// The number of entries in the backed-up log.
        public var auditSize: Int
        /// Each file and its SHA-256 (hex), in manifest order.
        public var files: [String: String]
    }

    /// Takes a backup of the data folder `home` into `directory`, which must not exist: appends
    /// `broker.backup` by `actor`, snapshots the databases (online), copies the keystore, the
    /// configuration and the checkpoint key, and signs the manifest with `signer` (the broker's
    /// checkpoint key). Written under a temporary name and renamed into place once complete.
    @discardableResult
    public static func take(
        home: BrokerHome,
        signer: NoteSigner,
        actor: String,
        to directory: String
    ) throws
        -> Summary
    {
        guard !DurableFile.exists(directory) else {
            throw WireError(.io, "\(directory) already exists; choose a new folder for the backup")
        }
        let id = Hex.encode(SecureRandom.bytes(16))
        let taken = AuditEntry.now()
        try home.openLog().append {
            AuditEntry(
                sequence: $0,
                time: taken,
                actor: actor,
                action: "broker.backup",
                objectType: "backup",
                objectID: id,
                outcome: .succeeded
            )
        }
        let temporary = directory + ".partial-\(id)"
        try DurableFile.makeDirectory(temporary)
        var complete = false
        defer { if !complete { try? FileManager.default.removeItem(atPath: temporary) } }
        var auditSize = 0
        for name in databases {
            let count = try snapshot(home.path + "/" + name, to: temporary + "/" + name)
            if name == BrokerHome.auditFileName { auditSize = count }
        }
        let present = optional.filter { DurableFile.exists(home.path + "/" + $0) }
        for name in copied + present {
            try DurableFile.write(
                try DurableFile.read(home.path + "/" + name, maximum: 1 << 20),
                to: temporary + "/" + name,
                replace: false
            )
        }
        var files: [String: String] = [:]
        for name in databases + copied + present {
            files[name] = Hex.encode(
                SHA256.hash(try DurableFile.read(temporary + "/" + name, maximum: maximumFileBytes))
            )
        }
        let summary = Summary(origin: home.config.origin, id: id, taken: taken, auditSize: auditSize, files: files)
        try DurableFile.write(
            Array(try SignedNote.sign(manifest(summary), by: signer).utf8),
            to: temporary + "/manifest",
            replace: false
        )
        guard rename(temporary, directory) == 0 else {
            throw WireError(.io, "cannot move the backup into place at \(directory)")
        }
        complete = true
        return summary
    }

    /// Checks the backup in `directory` and restores it into `dataDir`, which must not exist:
    /// the manifest's signature (by `key`, else by the backup's own `checkpoint.pub`, whose key the
    /// caller should compare with the one it knows), every file's SHA-256, no file unlisted, and
    /// the audit log's full check; then copies the files into place (mode 0700) and appends
    /// `broker.restore` by `actor` to the restored log. Started on `dataDir`, the daemon resumes
    /// or aborts the rounds that were open, as after a crash.
    @discardableResult
    public static func restore(
        from directory: String,
        to dataDir: String,
        key: NoteVerifier?,
        actor: String
    ) throws
        -> Summary
    {
        guard !DurableFile.exists(dataDir) else {
            throw WireError(.io, "\(dataDir) already exists; restore into a new folder")
        }
        let verifier =
            try key
            ?? NoteVerifier(
                encoded: String(
                    decoding: try DurableFile.read(directory + "/" + BrokerHome.verifierFileName, maximum: 4096),
                    as: UTF8.self
                ).trimmingCharacters(in: .whitespacesAndNewlines)
            )
        let summary: Summary
        do {
            summary = try parse(
                try SignedNote.open(
                    String(decoding: try DurableFile.read(directory + "/manifest", maximum: 1 << 20), as: UTF8.self),
                    verifier: verifier
                )
            )
        } catch let error as AuditError {
            throw WireError(.invalidValue, "\(directory)/manifest: \(error.message)")
        }
        let present = Set(try DurableFile.entries(in: directory))
        let unexpected = present.subtracting(databases + copied + optional + ["manifest"]).sorted()
        let unlisted = present.subtracting(summary.files.keys).subtracting(["manifest"]).sorted()
        guard unexpected.isEmpty, unlisted.isEmpty else {
            throw WireError(
                .invalidValue,
                "the backup holds files its manifest does not list: \(Set(unexpected + unlisted).sorted())"
            )
        }
        let temporary = dataDir + ".partial-\(summary.id)"
        try DurableFile.makeDirectory(temporary)
        var complete = false
        defer { if !complete { try? FileManager.default.removeItem(atPath: temporary) } }
        for name in databases + copied + optional.filter({ summary.files[$0] != nil }) {
            let bytes = try DurableFile.read(directory + "/" + name, maximum: maximumFileBytes)
            guard Hex.encode(SHA256.hash(bytes)) == summary.files[name] else {
                throw WireError(.invalidValue, "\(directory)/\(name): its SHA-256 differs from the manifest's")
            }
            try DurableFile.write(bytes, to: temporary + "/" + name, replace: false)
        }
        let log = try AuditLog(path: temporary + "/" + BrokerHome.auditFileName)
        guard log.size == summary.auditSize else {
            throw WireError(
                .invalidValue,
                "the backed-up audit log holds \(log.size) entries, the manifest says \(summary.auditSize)"
            )
        }
        try log.append {
            AuditEntry(
                sequence: $0,
                time: AuditEntry.now(),
                actor: actor,
                action: "broker.restore",
                objectType: "backup",
                objectID: summary.id,
                outcome: .succeeded,
                reason: "restored from the backup taken \(summary.taken)"
            )
        }
        guard rename(temporary, dataDir) == 0 else {
            throw WireError(.io, "cannot move the restored folder into place at \(dataDir)")
        }
        complete = true
        return summary
    }

    /// Copies the database at `source` to `destination` with SQLite's online backup API: a
    /// consistent snapshot even while another process writes it. Returns the number of audit
    /// entries in the copy (0 for a database without them).
    static func snapshot(_ source: String, to destination: String) throws -> Int {
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(AuditLog.busyTimeout)
            let from = try DatabaseQueue(path: source, configuration: configuration)
            let to = try DatabaseQueue(path: destination)
            try from.backup(to: to)
            // One file, synced: no write-ahead log beside the copy.
            let count = try to.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = DELETE")
                return try db.tableExists("entries") ? Int.fetchOne(db, sql: "SELECT count(*) FROM entries") ?? 0 : 0
            }
            try from.close()
            try to.close()
            try DurableFile.makePrivate(destination)
            return count
        } catch let error as DatabaseError {
            throw WireError(.io, "cannot snapshot \(source): \(error.message ?? "SQLite error \(error.resultCode)")")
        }
    }

    static func manifest(_ s: Summary) -> String {
        var text =
            "\(manifestHeader)\norigin \(s.origin)\nbackup-id \(s.id)\ntaken \(s.taken)\naudit-size \(s.auditSize)\n"
        for name in databases + copied + optional where s.files[name] != nil || !optional.contains(name) {
            text += "file \(name) \(s.files[name] ?? "")\n"
        }
        return text
    }

    static func parse(_ text: String) throws -> Summary {
        let lines = text.split(separator: "\n").map(String.init)
        func value(_ index: Int, _ key: String) throws -> String {
            guard index < lines.count, lines[index].hasPrefix(key + " ") else {
                throw AuditError(.malformed, "line \(index + 1) should start with '\(key) '")
            }
            return String(lines[index].dropFirst(key.count + 1))
        }
        let required = databases.count + copied.count
        // The optional files (the TLS pair) are listed together or not at all.
        guard lines.first == manifestHeader, [5 + required, 5 + required + optional.count].contains(lines.count) else {
            throw AuditError(.malformed, "not a \(manifestHeader) manifest")
        }
        guard let size = Int(try value(4, "audit-size")) else { throw AuditError(.malformed, "a bad audit size") }
        var files: [String: String] = [:]
        for (offset, name) in (databases + copied + optional).prefix(lines.count - 5).enumerated() {
            let file = try value(5 + offset, "file")
            guard file.hasPrefix(name + " ") else { throw AuditError(.malformed, "the files are not listed in order") }
            files[name] = String(file.dropFirst(name.count + 1))
        }
        let summary = Summary(
            origin: try value(1, "origin"),
            id: try value(2, "backup-id"),
            taken: try value(3, "taken"),
            auditSize: size,
            files: files
        )
        guard manifest(summary) == text else { throw AuditError(.malformed, "the manifest is not in canonical form") }
        return summary
    }
}
