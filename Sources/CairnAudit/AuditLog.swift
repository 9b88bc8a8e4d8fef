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
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
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

    /// The number of entries.
    public var size: Int { tree.withLock { $0.size } }

    /// Appends the entry `make` builds for the next sequence number, durably, and returns it.
    /// Nothing is appended when `make` or the encoding throws.
    @discardableResult
    public func append(_ make: (UInt64) throws -> AuditEntry) throws -> AuditEntry {
        do {
            // Holding the writer for the transaction and the tree update keeps the tree in commit
            // order; the tree grows only after the commit succeeded.
            return try pool.writeWithoutTransaction { db in
                var appended: (entry: AuditEntry, leaf: MerkleHash)?
                try db.inTransaction {
                    let next = try Int64.fetchOne(db, sql: "SELECT count(*) FROM entries") ?? 0
                    let entry = try make(UInt64(next))
                    guard entry.sequence == UInt64(next) else {
                        throw AuditError(.malformed, "an entry for position \(next) carries sequence \(entry.sequence)")
                    }
                    let bytes = try entry.encoded()
                    let leaf = RFC6962.leafHash(bytes)
                    try db.execute(
                        sql: "INSERT INTO entries (sequence, entry, leaf) VALUES (?, ?, ?)",
                        arguments: [next, Data(bytes), Data(leaf.bytes)]
                    )
                    appended = (entry, leaf)
                    return .commit
                }
                let (entry, leaf) = appended!
                tree.withLock { $0.append(leaf) }
                return entry
            }
        } catch let error as DatabaseError {
            throw AuditError(.storage, "cannot append to the audit log: \(error.message ?? "\(error.resultCode)")")
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
