import CairnWire
import Foundation
import GRDB
import Synchronization

/// The append-only audit log in SQLite: canonical entries, their RFC 6962 leaf hashes, and the
/// Merkle tree over them.
///
/// - One `DatabasePool` per file, in WAL mode with `synchronous = FULL`: an ``append(_:)``
///   returns only after its transaction committed durably.
/// - Triggers abort any `UPDATE` or `DELETE` on the entries table, whoever runs it.
/// - The tree is rebuilt from the stored leaf hashes when the log opens (the entries themselves
///   are not re-read) and kept in memory, so roots and proofs never touch the entries.
///
/// `Sendable`: the pool serialises writes, and the in-memory tree sits behind a mutex.
public final class AuditLog: Sendable {
    private let pool: DatabasePool
    private let tree: Mutex<MerkleTree>

    /// Opens (creating if needed) the log at `path`.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // secure_delete overwrites erased personal data in the file instead of leaving it in free pages.
            try db.execute(sql: "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON")
        }
        do {
            try DurableFile.makePrivate(path)
            pool = try DatabasePool(path: path, configuration: configuration)
            // DatabasePool switches its writer to synchronous=NORMAL when it enables WAL, after
            // prepareDatabase ran: set FULL again on the one writer connection, so every commit
            // syncs the WAL before an append returns.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try Self.migrator.migrate(pool)
            let leaves = try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT sequence, leaf FROM entries ORDER BY sequence").enumerated().map {
                    index,
                    row -> MerkleHash in
                    let sequence: Int64 = row["sequence"]
                    guard sequence == Int64(index), let leaf = MerkleHash(Array(row["leaf"] as Data)) else {
                        throw AuditError(.malformed, "\(path): the entries table has a gap or a bad leaf at \(index)")
                    }
                    return leaf
                }
            }
            var rebuilt = MerkleTree()
            for leaf in leaves { rebuilt.append(leaf) }
            tree = Mutex(rebuilt)
        } catch let error as DatabaseError {
            throw AuditError(.storage, "\(path): \(error.message ?? "SQLite error \(error.resultCode)")")
        }
    }

    /// The schema. Migrations are never edited once shipped; a change is a new migration.
    private static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: entries") { db in
            try db.execute(
                sql: """
                    CREATE TABLE entries (
                        sequence INTEGER PRIMARY KEY,
                        entry BLOB NOT NULL,
                        leaf BLOB NOT NULL CHECK (length(leaf) = 32)
                    );
                    CREATE TRIGGER entries_are_append_only_update BEFORE UPDATE ON entries
                    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
                    CREATE TRIGGER entries_are_append_only_delete BEFORE DELETE ON entries
                    BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
                    """
            )
        }
        m.registerMigration("v2: checkpoints") { db in
            try db.execute(
                sql: """
                    CREATE TABLE checkpoints (
                        size INTEGER PRIMARY KEY,
                        root BLOB NOT NULL CHECK (length(root) = 32),
                        note TEXT NOT NULL
                    );
                    CREATE TRIGGER checkpoints_are_append_only_update BEFORE UPDATE ON checkpoints
                    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
                    CREATE TRIGGER checkpoints_are_append_only_delete BEFORE DELETE ON checkpoints
                    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
                    """
            )
        }
        m.registerMigration("v3: people") { db in
            // Personal data, by pseudonymous id. Not part of the log: rows are replaced and erased.
            try db.execute(
                sql: """
                    CREATE TABLE people (
                        id TEXT PRIMARY KEY,
                        display_name TEXT NOT NULL,
                        contact TEXT NOT NULL
                    );
                    """
            )
        }
        return m
    }

    /// The last checkpoint signed, as its signed note, or nil before the first.
    public func latestCheckpoint() throws -> String? {
        try storage {
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
            }
        }
    }

    /// Signs a checkpoint of the whole log and stores it before returning it for publication.
    ///
    /// A new checkpoint is signed only after checking that the tree is consistent with the last
    /// stored checkpoint (its root at its size, and a consistency proof from it verified against
    /// the new root), so a log that lost or changed entries never gets a new signature. When the
    /// log has not grown, the last checkpoint is returned as it was.
    @discardableResult
    public func signCheckpoint(origin: String, signer: NoteSigner) throws -> String {
        try storage {
            try pool.writeWithoutTransaction { db in
                let last = try Row.fetchOne(
                    db,
                    sql: "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
                )
                let (size, root) = tree.withLock { t in (t.size, try? t.root()) }
                guard let root else { throw AuditError(.malformed, "the audit tree has no root") }
                if let last {
                    let lastSize: Int = last["size"]
                    guard let lastRoot = MerkleHash(Array(last["root"] as Data)) else {
                        throw AuditError(.malformed, "the stored checkpoint has a malformed root")
                    }
                    if lastSize == size, lastRoot == root { return last["note"] as String }
                    let proof = try tree.withLock { try $0.consistencyProof(from: lastSize, to: size) }
                    guard lastSize <= size, (try? self.root(size: lastSize)) == lastRoot,
                        RFC6962.verifyConsistency(
                            oldSize: lastSize,
                            newSize: size,
                            oldRoot: lastRoot,
                            newRoot: root,
                            proof: proof
                        )
                    else {
                        throw AuditError(
                            .inconsistent,
                            "the log of \(size) entries is not consistent with the last checkpoint (\(lastSize) entries); refusing to sign"
                        )
                    }
                }
                let note = try SignedNote.sign(Checkpoint(origin: origin, size: size, root: root).text, by: signer)
                try db.inTransaction {
                    try db.execute(
                        sql: "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)",
                        arguments: [size, Data(root.bytes), note]
                    )
                    return .commit
                }
                return note
            }
        }
    }

    /// Runs `body`, turning SQLite errors into ``AuditError`` `storage`.
    private func storage<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DatabaseError {
            throw AuditError(.storage, "audit log storage: \(error.message ?? "SQLite error \(error.resultCode)")")
        }
    }

    /// The writer connection's `PRAGMA synchronous` (2 = FULL), for tests.
    var writerSynchronousMode: Int {
        get throws { try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 } }
    }

    /// The number of entries.
    public var size: Int { tree.withLock { $0.size } }

    /// Appends the entry `make` builds for the next sequence number, durably, and returns it.
    /// Nothing is appended when `make` or the encoding throws.
    @discardableResult
    public func append(_ make: (UInt64) throws -> AuditEntry) throws -> AuditEntry {
        try append(count: 1, make)[0]
    }

    /// Appends `count` entries in one transaction (one durable commit for all of them) and returns
    /// them once it committed. Either all are appended or none.
    @discardableResult
    public func append(count: Int, _ make: (UInt64) throws -> AuditEntry) throws -> [AuditEntry] {
        try append(count: count, make, alongside: { _ in })
    }

    /// The append itself; `alongside` runs in the same transaction (personal-data changes that
    /// must commit together with the entry recording them).
    private func append(
        count: Int,
        _ make: (UInt64) throws -> AuditEntry,
        alongside: (Database) throws -> Void
    ) throws -> [AuditEntry] {
        precondition(count >= 1, "append at least one entry")
        do {
            // Holding the writer for the transaction and the tree update keeps the tree in commit
            // order; the tree grows only after the commit succeeded.
            return try pool.writeWithoutTransaction { db in
                var appended: [(entry: AuditEntry, leaf: MerkleHash)] = []
                try db.inTransaction {
                    // max(rowid) is one B-tree descent; count(*) would scan the table on every commit.
                    let first = try Int64.fetchOne(db, sql: "SELECT coalesce(max(sequence) + 1, 0) FROM entries") ?? 0
                    let insert = try db.cachedStatement(
                        sql: "INSERT INTO entries (sequence, entry, leaf) VALUES (?, ?, ?)"
                    )
                    for next in first..<(first + Int64(count)) {
                        let entry = try make(UInt64(next))
                        guard entry.sequence == UInt64(next) else {
                            throw AuditError(
                                .malformed,
                                "an entry for position \(next) carries sequence \(entry.sequence)"
                            )
                        }
                        let bytes = try entry.encoded()
                        let leaf = RFC6962.leafHash(bytes)
                        try insert.execute(arguments: [next, Data(bytes), Data(leaf.bytes)])
                        appended.append((entry, leaf))
                    }
                    try alongside(db)
                    return .commit
                }
                tree.withLock { t in for a in appended { t.append(a.leaf) } }
                return appended.map(\.entry)
            }
        } catch let error as DatabaseError {
            throw AuditError(.storage, "cannot append to the audit log: \(error.message ?? "\(error.resultCode)")")
        }
    }

    /// Calls `body` with each stored entry of `range` in order: its sequence number, its stored
    /// bytes and its leaf hash as the tree holds it. Entries are read through a cursor, so memory
    /// stays flat however long the log is.
    public func forEachEntry(
        in range: Range<Int>,
        _ body: (_ sequence: Int, _ bytes: [UInt8], _ leaf: MerkleHash) throws -> Void
    ) throws {
        guard range.lowerBound >= 0, range.upperBound <= size else {
            throw AuditError(.outOfRange, "no entries \(range) in a log of \(size)")
        }
        try storage {
            try pool.read { db in
                let rows = try Row.fetchCursor(
                    db,
                    sql: "SELECT sequence, entry FROM entries WHERE sequence >= ? AND sequence < ? ORDER BY sequence",
                    arguments: [range.lowerBound, range.upperBound]
                )
                var expected = range.lowerBound
                while let row = try rows.next() {
                    let sequence: Int = row["sequence"]
                    guard sequence == expected else {
                        throw AuditError(.malformed, "audit entry \(expected) is missing from the store")
                    }
                    let leaf = tree.withLock { $0.leaf(sequence) }
                    try body(sequence, Array(row["entry"] as Data), leaf)
                    expected += 1
                }
                guard expected == range.upperBound else {
                    throw AuditError(.malformed, "audit entry \(expected) is missing from the store")
                }
            }
        }
    }

    /// Every stored checkpoint as (size, root), oldest first.
    public func checkpoints() throws -> [(size: Int, root: MerkleHash)] {
        try storage {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT size, root FROM checkpoints ORDER BY size").map { row in
                    guard let root = MerkleHash(Array(row["root"] as Data)) else {
                        throw AuditError(.malformed, "a stored checkpoint has a malformed root")
                    }
                    return (row["size"], root)
                }
            }
        }
    }

    // MARK: Personal data

    /// A person's personal data, held apart from the log under a pseudonymous id.
    public struct Person: Hashable, Sendable {
        /// The pseudonymous id the log uses (a key fingerprint, `operator:…`).
        public var id: String
        /// A display name.
        public var displayName: String
        /// A contact address (e-mail, telephone).
        public var contact: String

        /// A record.
        public init(id: String, displayName: String, contact: String) {
            self.id = id
            self.displayName = displayName
            self.contact = contact
        }
    }

    /// Records (or replaces) a person's personal data, and appends `person.record` by `actor`
    /// in the same transaction. The entry names the pseudonymous id only.
    @discardableResult
    public func recordPerson(_ person: Person, actor: String, time: String) throws -> AuditEntry {
        for (name, text) in [("id", person.id), ("display name", person.displayName), ("contact", person.contact)] {
            guard !text.isEmpty, text.utf8.count <= AuditEntry.maximumTextBytes,
                !text.unicodeScalars.contains(where: { $0.value < 0x20 })
            else {
                throw AuditError(.malformed, "a person's \(name) must be 1–1024 bytes without control characters")
            }
        }
        return try append(
            count: 1,
            { AuditEntry(personAction: "person.record", id: person.id, sequence: $0, time: time, actor: actor) },
            alongside: { db in
                try db.execute(
                    sql: "INSERT OR REPLACE INTO people (id, display_name, contact) VALUES (?, ?, ?)",
                    arguments: [person.id, person.displayName, person.contact]
                )
            }
        )[0]
    }

    /// Erases a person's personal data and appends `person.erase` in the same transaction. The
    /// log's entries are untouched, so every hash, proof and checkpoint stays valid. Refused when
    /// nothing is held for `id`.
    ///
    /// The data is gone from every file, not only from the table: `secure_delete` overwrites it
    /// in the database's pages, and the write-ahead log, whose frames still hold the pages as they
    /// were, is checkpointed and truncated to nothing. If another process holds a read open on
    /// the log so that it cannot be truncated, this throws after the erasure committed; running
    /// it again (once that process has finished) completes it.
    @discardableResult
    public func erasePerson(_ id: String, actor: String, time: String) throws -> AuditEntry {
        let entry = try append(
            count: 1,
            { AuditEntry(personAction: "person.erase", id: id, sequence: $0, time: time, actor: actor) },
            alongside: { db in
                try db.execute(sql: "DELETE FROM people WHERE id = ?", arguments: [id])
                guard db.changesCount == 1 else { throw AuditError(.outOfRange, "no personal data is held for \(id)") }
            }
        )[0]
        try truncateWriteAheadLog()
        return entry
    }

    /// Copies every page of the write-ahead log into the database and truncates the log to zero
    /// bytes (`PRAGMA wal_checkpoint(TRUNCATE)`); throws when a reader kept it from finishing.
    public func truncateWriteAheadLog() throws {
        let busy = try pool.writeWithoutTransaction { db in
            try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)").map { $0[0] as Int } ?? 1
        }
        guard busy == 0 else {
            throw AuditError(
                .storage,
                "the write-ahead log could not be truncated while another process reads the log; the erased data may remain in audit.sqlite-wal until this is run again with that process stopped"
            )
        }
    }

    /// The personal data held, by id.
    public func people() throws -> [Person] {
        try storage {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT id, display_name, contact FROM people ORDER BY id").map {
                    Person(id: $0["id"], displayName: $0["display_name"], contact: $0["contact"])
                }
            }
        }
    }

    /// Entry `sequence`, decoded from its stored bytes.
    public func entry(_ sequence: Int) throws -> AuditEntry {
        let bytes = try pool.read { db in
            try Data.fetchOne(db, sql: "SELECT entry FROM entries WHERE sequence = ?", arguments: [sequence])
        }
        guard let bytes else { throw AuditError(.outOfRange, "no audit entry \(sequence)") }
        return try AuditEntry(decoding: Array(bytes))
    }

    /// The Merkle root of the first `size` entries (all by default).
    public func root(size: Int? = nil) throws -> MerkleHash { try tree.withLock { try $0.root(size: size) } }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    public func inclusionProof(index: Int, size: Int? = nil) throws -> [MerkleHash] {
        try tree.withLock { try $0.inclusionProof(index: index, size: size) }
    }

    /// The consistency proof from the first `oldSize` entries to the first `newSize`.
    public func consistencyProof(from oldSize: Int, to newSize: Int? = nil) throws -> [MerkleHash] {
        try tree.withLock { try $0.consistencyProof(from: oldSize, to: newSize) }
    }
}
