import CairnAudit
import CairnExchange
import CairnWire
import Foundation
import GRDB
import GRDBSQLite

/// The broker's state in SQLite (`broker.sqlite` in the data folder): members, federations,
/// invites, seen nonces, rounds with the SecAgg+ server state at each phase boundary (and the
/// running sum once masking closed), the messages each phase hands out, who answered what, and
/// the model of every round.
///
/// WAL mode with `synchronous = FULL`: a change is on disk before the request that made it is
/// answered. Invariants that span rows change inside one write transaction. Each connection's
/// page cache is capped at 512 KiB: the large values (models, a round's running sum) are written
/// and read in place through ``Database/writeBlob(_:_:row:from:)`` and
/// ``Database/readBlob(_:_:row:into:)``, so a bigger cache would only hold pages of them.
final class BrokerStore: Sendable {
    let pool: DatabasePool

    init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL; PRAGMA cache_size = -512")
        }
        do {
            try DurableFile.makePrivate(path)
            pool = try DatabasePool(path: path, configuration: configuration)
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try Self.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw ExchangeError(.internal, "\(path): \(error.message ?? "SQLite error \(error.resultCode)")")
        } catch let error as WireError {
            throw ExchangeError(.internal, error.message)
        }
    }

    /// Migrations are never edited once shipped; a change is a new migration.
    private static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: exchange") { db in
            try db.execute(
                sql: """
                    CREATE TABLE members (
                        key BLOB PRIMARY KEY CHECK (length(key) = 32),
                        role TEXT NOT NULL,
                        federation TEXT NOT NULL,
                        status TEXT NOT NULL,
                        enrolled INTEGER NOT NULL,
                        delivery_key BLOB
                    );
                    CREATE TABLE federations (
                        id TEXT PRIMARY KEY,
                        spec TEXT NOT NULL,
                        state TEXT NOT NULL,
                        rounds_left INTEGER NOT NULL,
                        created INTEGER NOT NULL
                    );
                    CREATE TABLE models (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        digest BLOB NOT NULL,
                        parameters BLOB NOT NULL,
                        contributors INTEGER NOT NULL,
                        PRIMARY KEY (federation, round)
                    );
                    CREATE TABLE invites (
                        digest BLOB PRIMARY KEY,
                        federation TEXT NOT NULL,
                        role TEXT NOT NULL,
                        expires INTEGER NOT NULL,
                        used_by BLOB
                    );
                    CREATE TABLE nonces (
                        key BLOB NOT NULL,
                        nonce BLOB NOT NULL,
                        time INTEGER NOT NULL,
                        PRIMARY KEY (key, nonce)
                    ) WITHOUT ROWID;
                    CREATE TABLE rounds (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        phase TEXT NOT NULL,
                        deadline INTEGER NOT NULL,
                        config BLOB NOT NULL,
                        server BLOB NOT NULL,
                        reason TEXT NOT NULL DEFAULT '',
                        included INTEGER NOT NULL DEFAULT 0,
                        model_digest BLOB,
                        PRIMARY KEY (federation, round)
                    );
                    CREATE TABLE outbox (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        phase TEXT NOT NULL,
                        recipient INTEGER NOT NULL,
                        message BLOB NOT NULL,
                        PRIMARY KEY (federation, round, phase, recipient)
                    );
                    CREATE TABLE answers (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        phase TEXT NOT NULL,
                        participant INTEGER NOT NULL,
                        digest BLOB NOT NULL,
                        PRIMARY KEY (federation, round, phase, participant)
                    );
                    """
            )
        }
        m.registerMigration("v2: round sums") { db in
            // A round's running sum (4·(D+1) bytes), written once when masking closes rather than
            // in every saved state, and in its own table: updating a `rounds` row never rewrites it.
            try db.execute(
                sql: """
                    CREATE TABLE round_sums (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        sum BLOB NOT NULL,
                        PRIMARY KEY (federation, round)
                    )
                    """
            )
        }
        m.registerMigration("v3: registry and licences") { db in
            // Published model versions (immutable), one listing per federation, and licences
            // with the terms they were requested under and how many containers they fetched.
            try db.execute(
                sql: """
                    CREATE TABLE versions (
                        federation TEXT NOT NULL,
                        version INTEGER NOT NULL,
                        round INTEGER NOT NULL,
                        metadata TEXT NOT NULL,
                        file BLOB NOT NULL,
                        PRIMARY KEY (federation, version)
                    );
                    CREATE TABLE listings (
                        federation TEXT PRIMARY KEY,
                        description TEXT NOT NULL,
                        offer TEXT NOT NULL
                    );
                    CREATE TABLE licences (
                        id BLOB PRIMARY KEY CHECK (length(id) = 16),
                        federation TEXT NOT NULL,
                        licensee BLOB NOT NULL,
                        status TEXT NOT NULL,
                        requested INTEGER NOT NULL,
                        entitlements TEXT NOT NULL,
                        offer TEXT NOT NULL,
                        signed BLOB,
                        entry INTEGER,
                        deliveries INTEGER NOT NULL DEFAULT 0
                    );
                    """
            )
        }
        m.registerMigration("v4: federated evaluation") { db in
            // Each participant's score of a round's model on its held-out rows, once per round.
            try db.execute(
                sql: """
                    CREATE TABLE evaluations (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        member BLOB NOT NULL,
                        samples INTEGER NOT NULL,
                        accuracy REAL NOT NULL,
                        log_loss REAL NOT NULL,
                        PRIMARY KEY (federation, round, member)
                    );
                    """
            )
        }
        m.registerMigration("v5: attendance and nonce expiry") { db in
            // Rounds a participant answered nothing in a row (it is inactive at the policy's
            // limit), and an index for the expiry of seen nonces, deleted by time.
            try db.execute(
                sql: """
                    ALTER TABLE members ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX nonces_by_time ON nonces (time);
                    """
            )
        }
        m.registerMigration("v6: witnessed checkpoints") { db in
            // The size of the audit checkpoint signed when each round's model was stored: the one
            // the federation's nodes witness after that round (null until it is signed).
            try db.execute(sql: "ALTER TABLE models ADD COLUMN checkpoint INTEGER")
        }
        m.registerMigration("v7: request outcomes") { db in
            // The answer to each state-changing request, by its signer and request id, kept for
            // ``Exchange/outcomeRetention`` so that a retry gets it again and changes nothing.
            // The body is encrypted under a key derived from the broker's transport key.
            try db.execute(
                sql: """
                    CREATE TABLE outcomes (
                        key BLOB NOT NULL,
                        request TEXT NOT NULL,
                        path TEXT NOT NULL,
                        digest BLOB NOT NULL,
                        status INTEGER NOT NULL,
                        content_type TEXT,
                        body BLOB NOT NULL,
                        time INTEGER NOT NULL,
                        PRIMARY KEY (key, request)
                    ) WITHOUT ROWID;
                    CREATE INDEX outcomes_by_time ON outcomes (time);
                    """
            )
        }
        m.registerMigration("v8: one key in several federations") { db in
            // A membership is a key in a federation: the same key may join several federations
            // (each with its own role, standing and attendance). SQLite cannot change a primary
            // key in place, so the table is rebuilt with its rows.
            try db.execute(
                sql: """
                    CREATE TABLE memberships (
                        key BLOB NOT NULL CHECK (length(key) = 32),
                        role TEXT NOT NULL,
                        federation TEXT NOT NULL,
                        status TEXT NOT NULL,
                        enrolled INTEGER NOT NULL,
                        delivery_key BLOB,
                        missed INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (key, federation)
                    );
                    INSERT INTO memberships (key, role, federation, status, enrolled, delivery_key, missed)
                        SELECT key, role, federation, status, enrolled, delivery_key, missed FROM members;
                    DROP TABLE members;
                    ALTER TABLE memberships RENAME TO members;
                    CREATE INDEX members_by_federation ON members (federation);
                    """
            )
        }
        m.registerMigration("v9: pooled statistics and server optimisers") { db in
            // A model's pooled standardisation (means then scales, float32 little-endian; null
            // where the schema gives it), which rounds were statistics rounds, and the server
            // optimiser's state after each round (kept for the latest round only).
            try db.execute(
                sql: """
                    ALTER TABLE models ADD COLUMN standardisation BLOB;
                    ALTER TABLE rounds ADD COLUMN statistics INTEGER NOT NULL DEFAULT 0;
                    CREATE TABLE optimiser_state (
                        federation TEXT NOT NULL,
                        round INTEGER NOT NULL,
                        state BLOB NOT NULL,
                        PRIMARY KEY (federation, round)
                    ) WITHOUT ROWID;
                    """
            )
        }
        m.registerMigration("v10: federated early stopping") { db in
            // The round of the newest model when training was last started (early stopping looks
            // only at the scores of later models), and why the broker stopped it.
            try db.execute(
                sql: """
                    ALTER TABLE federations ADD COLUMN trained_from INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE federations ADD COLUMN stopped_because TEXT;
                    """
            )
        }
        return m
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch let error as DatabaseError { throw Self.wrap(error) }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch let error as DatabaseError { throw Self.wrap(error) }
    }

    private static func wrap(_ error: DatabaseError) -> ExchangeError {
        ExchangeError(.internal, "broker.sqlite: \(error.message ?? "SQLite error \(error.resultCode)")")
    }
}

extension Database {
    /// Copies `bytes` into the value of `table.column` in row `row` (its rowid), which must be a
    /// BLOB of exactly `bytes.count` bytes (set with `zeroblob(n)` in the same transaction).
    /// SQLite writes it page by page from `bytes`: a multi-megabyte value is never copied whole.
    func writeBlob(_ table: String, _ column: String, row: Int64, from bytes: UnsafeRawBufferPointer) throws {
        try withBlob(table, column, row: row, writable: true, count: bytes.count) { blob in
            sqlite3_blob_write(blob, bytes.baseAddress, Int32(bytes.count), 0)
        }
    }

    /// Fills `buffer` from the value of `table.column` in row `row`, which must be a BLOB of
    /// exactly `buffer.count` bytes, page by page and without an intermediate copy.
    func readBlob(_ table: String, _ column: String, row: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try withBlob(table, column, row: row, writable: false, count: buffer.count) { blob in
            sqlite3_blob_read(blob, buffer.baseAddress, Int32(buffer.count), 0)
        }
    }

    private func withBlob(
        _ table: String,
        _ column: String,
        row: Int64,
        writable: Bool,
        count: Int,
        _ body: (OpaquePointer) -> Int32
    ) throws {
        func failure(_ code: Int32) -> ExchangeError {
            let message = sqliteConnection.map { String(cString: sqlite3_errmsg($0)) } ?? "no connection"
            return ExchangeError(.internal, "broker.sqlite: \(table).\(column) of row \(row): \(message) (\(code))")
        }
        guard count > 0 else { return }
        var blob: OpaquePointer?
        let opened = sqlite3_blob_open(sqliteConnection, "main", table, column, row, writable ? 1 : 0, &blob)
        defer { sqlite3_blob_close(blob) }
        guard opened == SQLITE_OK, let blob else { throw failure(opened) }
        guard sqlite3_blob_bytes(blob) == count else {
            throw ExchangeError(
                .internal,
                "broker.sqlite: \(table).\(column) of row \(row) holds \(sqlite3_blob_bytes(blob)) bytes, not \(count)"
            )
        }
        let done = body(blob)
        guard done == SQLITE_OK else { throw failure(done) }
    }
}

/// One membership: an enrolled key in one federation (the operator's is in `*`).
struct Member: Sendable, Hashable {
    var key: [UInt8]
    var role: Role
    var federation: String
    var status: String
    var enrolled: Int64

    init(key: [UInt8], role: Role, federation: String, status: String, enrolled: Int64) {
        self.key = key
        self.role = role
        self.federation = federation
        self.status = status
        self.enrolled = enrolled
    }

    init?(row: Row?) {
        guard let row, let role = Role(rawValue: row["role"]) else { return nil }
        key = Array(row["key"] as Data)
        self.role = role
        federation = row["federation"]
        status = row["status"]
        enrolled = row["enrolled"]
    }

    /// The memberships of `key`, the earliest first.
    static func fetchAll(_ db: Database, key: [UInt8]) throws -> [Member] {
        try Row.fetchAll(
            db,
            sql: "SELECT * FROM members WHERE key = ? ORDER BY enrolled, federation",
            arguments: [Data(key)]
        )
        .compactMap(Member.init(row:))
    }

    /// The membership of `key` in `federation`.
    static func fetch(_ db: Database, key: [UInt8], federation: String) throws -> Member? {
        Member(
            row: try Row.fetchOne(
                db,
                sql: "SELECT * FROM members WHERE key = ? AND federation = ?",
                arguments: [Data(key), federation]
            )
        )
    }
}
