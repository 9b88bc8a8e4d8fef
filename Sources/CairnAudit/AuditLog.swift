import CairnCrypto
import CairnWire
import Foundation
import GRDB
import Synchronization

/// The append-only audit log in SQLite: canonical entries, their RFC 6962 leaf hashes, the tree
/// head (the Merkle tree's frontier, stored with each append's last entry) and the signed
/// checkpoints.
///
/// - One `DatabasePool` per file, in WAL mode with `synchronous = FULL`: an ``append(_:)``
///   returns only after its transaction committed durably.
/// - Any number of processes may append to one file (the daemon and `cairn-audit` at once).
///   Each append is one `BEGIN IMMEDIATE` transaction that takes in the entries other processes
///   appended since this one last looked (checking each), checks the stored tree head, writes the
///   new entries, their leaves and the new head, and commits. Checkpoints are signed inside such
///   a transaction too, so they always cover what the database holds.
/// - Nothing is vouched for unchecked: opening the log recomputes every leaf from its decoded
///   entry and checks every stored checkpoint's root; entries another process appended are
///   checked as they are taken in; signing re-reads and checks every entry since the last
///   checkpoint, and ``forEachEntry(in:_:)`` (what exports read) checks each entry it returns.
///   A mismatch throws ``AuditError`` `inconsistent` naming the entry.
/// - Triggers abort any `UPDATE` or `DELETE` on the entries and checkpoints, whoever runs it.
///
/// `Sendable`: the pool serialises this process's writes, and the in-memory tree (which holds
/// only committed leaves, in order) sits behind a mutex.
public final class AuditLog: Sendable {
    private let pool: DatabasePool
    private let tree = Mutex(MerkleTree())

    /// How long an append waits for another process's transaction before failing: 60 s.
    public static let busyTimeout: Double = 60

    /// Opens (creating if needed) the log at `path`, and checks all of it: throws
    /// ``AuditError`` `inconsistent` naming the first entry whose stored leaf is not the hash of
    /// its entry, that does not decode, whose sequence number disagrees with its row, or that
    /// breaks a stored checkpoint.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(Self.busyTimeout)
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
            try pool.read { db in try checkHead(db, count: try synchronise(db)) }
            for (size, root) in try checkpoints() {
                guard (try? tree.withLock { try $0.root(size: size) }) == root else {
                    throw AuditError(
                        .inconsistent,
                        "the audit log does not match its signed checkpoint of \(size) entries: entries before \(size) were changed or removed"
                    )
                }
            }
        } catch let error as DatabaseError {
            throw AuditError(.storage, "\(path): \(error.message ?? "SQLite error \(error.resultCode)")")
        }
    }

    /// Checks one stored row: its entry decodes, re-encodes to the same bytes, carries the row's
    /// sequence number, and hashes to the stored leaf. Returns the leaf.
    private static func checkedLeaf(_ sequence: Int, _ bytes: [UInt8], _ stored: [UInt8]) throws -> MerkleHash {
        let entry: AuditEntry
        do { entry = try AuditEntry(decoding: bytes) } catch let error as AuditError {
            throw AuditError(.inconsistent, "audit entry \(sequence) does not decode: \(error.message)")
        }
        guard entry.sequence == UInt64(sequence) else {
            throw AuditError(.inconsistent, "audit entry \(sequence) carries sequence number \(entry.sequence)")
        }
        let leaf = RFC6962.leafHash(bytes)
        guard leaf.bytes == stored else {
            throw AuditError(
                .inconsistent,
                "audit entry \(sequence) does not hash to its stored leaf: the entry or its leaf was changed"
            )
        }
        return leaf
    }

    /// Reads rows `range` of `db` in order through a cursor, checking each (``checkedLeaf``) and
    /// that none is missing, and calls `body` with each.
    private static func forEachCheckedRow(
        _ db: Database,
        _ range: Range<Int>,
        _ body: (_ sequence: Int, _ bytes: [UInt8], _ leaf: MerkleHash) throws -> Void
    ) throws {
        let rows = try Row.fetchCursor(
            db,
            sql: "SELECT sequence, entry, leaf FROM entries WHERE sequence >= ? AND sequence < ? ORDER BY sequence",
            arguments: [range.lowerBound, range.upperBound]
        )
        var expected = range.lowerBound
        while let row = try rows.next() {
            let sequence: Int = row["sequence"]
            guard sequence == expected else {
                throw AuditError(.inconsistent, "audit entry \(expected) is missing from the store")
            }
            let bytes = Array(row["entry"] as Data)
            try body(sequence, bytes, try checkedLeaf(sequence, bytes, Array(row["leaf"] as Data)))
            expected += 1
        }
        guard expected == range.upperBound else {
            throw AuditError(.inconsistent, "audit entry \(expected) is missing from the store")
        }
    }

    /// Takes into the in-memory tree, checked, the entries `db` holds beyond it (appended by
    /// another process, or all of them when the log opens), and returns how many entries `db`
    /// holds.
    @discardableResult
    private func synchronise(_ db: Database) throws -> Int {
        let count = try Int.fetchOne(db, sql: "SELECT coalesce(max(sequence) + 1, 0) FROM entries") ?? 0
        let known = tree.withLock { $0.size }
        guard count > known else { return count }
        var leaves: [MerkleHash] = []
        leaves.reserveCapacity(count - known)
        try Self.forEachCheckedRow(db, known..<count) { _, _, leaf in leaves.append(leaf) }
        tree.withLock { t in
            // Another thread may have taken in some of them meanwhile.
            for leaf in leaves.dropFirst(t.size - known) { t.append(leaf) }
        }
        return count
    }

    /// Checks the tree head, which each append stores with its last entry (the `head` column:
    /// the frontier of the tree up to and including that entry), against `count` entries and the
    /// tree's leaves. The last entry must carry one, unless no entry does (a log written before
    /// the head existed, until its first append).
    private func checkHead(_ db: Database, count: Int) throws {
        guard count > 0,
            let row = try Row.fetchOne(db, sql: "SELECT head FROM entries WHERE sequence = ?", arguments: [count - 1])
        else { return }
        guard let bytes = row["head"] as Data? else {
            guard
                let covered = try Int.fetchOne(
                    db,
                    sql: "SELECT max(sequence) FROM entries WHERE head IS NOT NULL"
                )
            else { return }
            throw AuditError(
                .inconsistent,
                "audit entries \(covered + 1)–\(count - 1) were written into the database directly, not appended through the log (the last tree head is stored with entry \(covered))"
            )
        }
        guard Frontier(size: count, bytes: Array(bytes)) == (try tree.withLock { try $0.frontier(size: count) }) else {
            throw AuditError(
                .inconsistent,
                "the tree head stored with audit entry \(count - 1) does not match the leaves of the \(count) entries"
            )
        }
    }

    /// In a write transaction: brings the tree up to the database, refusing a database that
    /// holds fewer entries than the tree already took in, and checks the head. Returns the
    /// number of entries.
    private func synchroniseForWriting(_ db: Database) throws -> Int {
        let count = try synchronise(db)
        let known = tree.withLock { $0.size }
        guard count >= known else {
            throw AuditError(
                .inconsistent,
                "the audit log held \(known) entries and now holds \(count): entries were removed"
            )
        }
        try checkHead(db, count: count)
        return count
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
        m.registerMigration("v4: tree head") { db in
            // The frontier of the tree up to each append's last entry, stored with that entry
            // (NULL on the others): one more column on a page the append writes anyway.
            try db.execute(sql: "ALTER TABLE entries ADD COLUMN head BLOB")
        }
        m.registerMigration("v5: cosignatures") { db in
            // Witnesses' cosignatures of stored checkpoints, each checked before it is stored.
            try db.execute(
                sql: """
                    CREATE TABLE cosignatures (
                        size INTEGER NOT NULL REFERENCES checkpoints (size),
                        key BLOB NOT NULL CHECK (length(key) = 32),
                        time INTEGER NOT NULL,
                        signature BLOB NOT NULL CHECK (length(signature) = 64),
                        PRIMARY KEY (size, key)
                    );
                    CREATE TRIGGER cosignatures_are_append_only_update BEFORE UPDATE ON cosignatures
                    BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
                    CREATE TRIGGER cosignatures_are_append_only_delete BEFORE DELETE ON cosignatures
                    BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
                    """
            )
        }
        return m
    }

    /// The stored checkpoint of `size` entries, as its signed note, or nil when none was signed
    /// at that size.
    public func checkpoint(size: Int) throws -> String? {
        try storage {
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT note FROM checkpoints WHERE size = ?", arguments: [size])
            }
        }
    }

    /// Stores a witness's cosignature of the stored checkpoint of `size` entries after checking
    /// it; returns false when that witness had already cosigned that checkpoint (the first
    /// cosignature is kept). Throws `outOfRange` when no checkpoint of that size is stored and
    /// `badSignature` when the cosignature does not verify.
    @discardableResult
    public func addCosignature(_ cosignature: Cosignature, size: Int) throws -> Bool {
        guard let note = try checkpoint(size: size) else {
            throw AuditError(.outOfRange, "no checkpoint of \(size) entries was signed")
        }
        let checkpoint = try Checkpoint(text: SignedNote.text(of: note))
        guard cosignature.isValid(for: checkpoint) else {
            throw AuditError(
                .badSignature,
                "the cosignature by \(cosignature.name) of the checkpoint of \(size) entries does not verify"
            )
        }
        return try storage {
            try pool.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO cosignatures (size, key, time, signature) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    arguments: [
                        size, Data(cosignature.key.rawRepresentation), cosignature.time, Data(cosignature.signature),
                    ]
                )
                return db.changesCount == 1
            }
        }
    }

    /// How many witnesses cosigned the stored checkpoint of `size` entries.
    public func cosignatureCount(size: Int) throws -> Int {
        try storage {
            try pool.read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM cosignatures WHERE size = ?", arguments: [size]) ?? 0
            }
        }
    }

    /// Every stored cosignature, by checkpoint size, oldest first.
    public func cosignatures() throws -> [(size: Int, cosignature: Cosignature)] {
        try storage {
            try pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT size, key, time, signature FROM cosignatures ORDER BY size, time, key"
                )
                .map { row in
                    (
                        row["size"],
                        Cosignature(
                            key: try Ed25519.PublicKey(rawRepresentation: Array(row["key"] as Data)),
                            time: row["time"],
                            signature: Array(row["signature"] as Data)
                        )
                    )
                }
            }
        }
    }

    /// The last checkpoint signed, as its signed note, or nil before the first.
    public func latestCheckpoint() throws -> String? {
        try storage {
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
            }
        }
    }

    /// Signs a checkpoint of the whole log as the database holds it (whichever process appended
    /// the entries) and stores it before returning it for publication.
    ///
    /// In one write transaction: every entry since the last stored checkpoint is re-read and
    /// checked (decoded, its sequence, its leaf recomputed and compared with the stored leaf and
    /// the tree's), the tree head is checked, and the tree must be consistent with the last
    /// checkpoint (its root at its size, and a consistency proof from it verified against the new
    /// root). Any mismatch throws ``AuditError`` `inconsistent` naming the entry, and nothing is
    /// signed. When the log has not grown, the last checkpoint is returned as it was.
    @discardableResult
    public func signCheckpoint(origin: String, signer: NoteSigner) throws -> String {
        try storage {
            try pool.writeWithoutTransaction { db in
                var note = ""
                try db.inTransaction(.immediate) {
                    let size = try synchroniseForWriting(db)
                    let last = try Row.fetchOne(
                        db,
                        sql: "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
                    )
                    let lastSize: Int = last?["size"] ?? 0
                    guard lastSize <= size else {
                        throw AuditError(
                            .inconsistent,
                            "the log of \(size) entries is shorter than its last checkpoint (\(lastSize) entries); refusing to sign"
                        )
                    }
                    try Self.forEachCheckedRow(db, lastSize..<size) { sequence, _, leaf in
                        guard leaf == tree.withLock({ $0.leaf(sequence) }) else {
                            throw AuditError(
                                .inconsistent,
                                "audit entry \(sequence) and its leaf were changed after it was appended; refusing to sign"
                            )
                        }
                    }
                    let root = try tree.withLock { try $0.root(size: size) }
                    if let last {
                        guard let lastRoot = MerkleHash(Array(last["root"] as Data)) else {
                            throw AuditError(.malformed, "the stored checkpoint has a malformed root")
                        }
                        if lastSize == size, lastRoot == root {
                            note = last["note"]
                            return .commit
                        }
                        let proof = try tree.withLock { try $0.consistencyProof(from: lastSize, to: size) }
                        guard (try? tree.withLock { try $0.root(size: lastSize) }) == lastRoot,
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
                    note = try SignedNote.sign(Checkpoint(origin: origin, size: size, root: root).text, by: signer)
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

    /// The number of entries, including those other processes appended (when the database
    /// cannot be read, the number this process knows).
    public var size: Int {
        _ = try? refresh()
        return tree.withLock { $0.size }
    }

    /// Takes in, checked, the entries other processes appended since this one last looked.
    public func refresh() throws {
        _ = try storage { try pool.read { db in try synchronise(db) } }
    }

    /// Refreshes when `size` is beyond the entries known.
    private func refresh(toCover size: Int?) throws {
        if size.map({ $0 > tree.withLock { $0.size } }) ?? true { try refresh() }
    }

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
            // This process's appends are serialised by the pool's one writer; other processes'
            // by BEGIN IMMEDIATE. The tree takes the leaves only after the commit.
            return try pool.writeWithoutTransaction { db in
                var appended: [(entry: AuditEntry, leaf: MerkleHash)] = []
                try db.inTransaction(.immediate) {
                    let first = try synchroniseForWriting(db)
                    var frontier = try tree.withLock { try $0.frontier(size: first) }
                    let insert = try db.cachedStatement(
                        sql: "INSERT INTO entries (sequence, entry, leaf, head) VALUES (?, ?, ?, ?)"
                    )
                    for next in first..<(first + count) {
                        let entry = try make(UInt64(next))
                        guard entry.sequence == UInt64(next) else {
                            throw AuditError(
                                .malformed,
                                "an entry for position \(next) carries sequence \(entry.sequence)"
                            )
                        }
                        let bytes = try entry.encoded()
                        let leaf = RFC6962.leafHash(bytes)
                        frontier.append(leaf)
                        let head = next == first + count - 1 ? Data(frontier.bytes) : nil
                        try insert.execute(arguments: [next, Data(bytes), Data(leaf.bytes), head])
                        appended.append((entry, leaf))
                    }
                    try alongside(db)
                    return .commit
                }
                tree.withLock { t in
                    // A reader of this process may have taken them in already.
                    for a in appended where Int(a.entry.sequence) == t.size { t.append(a.leaf) }
                }
                return appended.map(\.entry)
            }
        } catch let error as DatabaseError {
            throw AuditError(.storage, "cannot append to the audit log: \(error.message ?? "\(error.resultCode)")")
        }
    }

    /// Calls `body` with each stored entry of `range` in order: its sequence number, its stored
    /// bytes and its leaf hash. Each is checked first (it decodes, carries its sequence number,
    /// and hashes to both its stored leaf and the leaf the tree took in), so what an export
    /// writes is what the checkpoints sign. Entries are read through a cursor, so memory stays
    /// flat however long the log is.
    public func forEachEntry(
        in range: Range<Int>,
        _ body: (_ sequence: Int, _ bytes: [UInt8], _ leaf: MerkleHash) throws -> Void
    ) throws {
        guard range.lowerBound >= 0, range.upperBound <= size else {
            throw AuditError(.outOfRange, "no entries \(range) in a log of \(size)")
        }
        try storage {
            try pool.read { db in
                try Self.forEachCheckedRow(db, range) { sequence, bytes, leaf in
                    guard leaf == tree.withLock({ $0.leaf(sequence) }) else {
                        throw AuditError(
                            .inconsistent,
                            "audit entry \(sequence) and its leaf were changed after it was appended"
                        )
                    }
                    try body(sequence, bytes, leaf)
                }
            }
        }
    }

    /// Checks every stored checkpoint's signed note with `verifier`: it opens, and names the size
    /// and root stored beside it (which opening the log checked against the entries). Returns the
    /// notes' sizes, oldest first.
    public func checkStoredCheckpoints(verifier: NoteVerifier) throws -> [Int] {
        let rows = try storage {
            try pool.read { db in try Row.fetchAll(db, sql: "SELECT size, root, note FROM checkpoints ORDER BY size") }
        }
        return try rows.map { row in
            let size: Int = row["size"]
            let checkpoint: Checkpoint
            do {
                checkpoint = try Checkpoint(text: SignedNote.open(row["note"], verifier: verifier))
            } catch let error as AuditError {
                throw AuditError(
                    .inconsistent,
                    "the stored checkpoint of \(size) entries does not verify: \(error.message)"
                )
            }
            guard checkpoint.size == size, checkpoint.root.bytes == Array(row["root"] as Data),
                checkpoint.root == (try root(size: size))
            else {
                throw AuditError(.inconsistent, "the stored checkpoint of \(size) entries does not sign the log's tree")
            }
            return size
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
    public func root(size: Int? = nil) throws -> MerkleHash {
        try refresh(toCover: size)
        return try tree.withLock { try $0.root(size: size) }
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    public func inclusionProof(index: Int, size: Int? = nil) throws -> [MerkleHash] {
        try refresh(toCover: size)
        return try tree.withLock { try $0.inclusionProof(index: index, size: size) }
    }

    /// The consistency proof from the first `oldSize` entries to the first `newSize`.
    public func consistencyProof(from oldSize: Int, to newSize: Int? = nil) throws -> [MerkleHash] {
        try refresh(toCover: newSize)
        return try tree.withLock { try $0.consistencyProof(from: oldSize, to: newSize) }
    }
}
