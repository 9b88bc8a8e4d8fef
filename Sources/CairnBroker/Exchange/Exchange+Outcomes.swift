import CairnCrypto
import CairnExchange
import CairnWire
import Foundation
import GRDB
import Logging

extension Domain {
    /// The key a broker encrypts stored answers under (``Outcome``).
    static let storedOutcome = Domain("cairn/stored-outcome/v1")
}

/// What the broker answered one state-changing request: kept for
/// ``Exchange/outcomeRetention`` so that a retry with the same request id
/// (`Protocol/README.md`, "Request ids") is answered the same and changes nothing.
public struct Outcome: Sendable, Equatable {
    /// The HTTP status.
    public var status: Int
    /// The body's content type, if it has one (the plaintext's, on a sealed route).
    public var contentType: String?
    /// The body (the plaintext, on a sealed route: a replay is sealed for the retry's own keys).
    public var body: [UInt8]

    /// An answer.
    public init(status: Int, contentType: String?, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// Refusals that are the request's own answer, kept like successes: a retry would get the
    /// same one. Authentication (401), the rate (429), a busy broker (503) and its failures (5xx)
    /// are not: the request may succeed when retried.
    static func keeps(refusal status: Int) -> Bool { [400, 403, 404, 409, 413, 415].contains(status) }
}

extension Exchange {
    /// How long an answer is kept for retries, in seconds (a day; a client retries for minutes).
    public static let outcomeRetention: Int64 = 24 * 3600

    /// The request id in a target's query (`…?request-id=<32 hex digits>`), or nil.
    static func requestID(inTarget target: String) -> String? {
        guard let query = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix(RequestSignature.requestIDParameter + "=") {
            return String(pair.dropFirst(RequestSignature.requestIDParameter.utf8.count + 1))
        }
        return nil
    }

    /// The request id a POST must carry: 16 bytes as 32 lowercase hex digits, chosen by the
    /// client and kept for every retry of the same request.
    static func requiredRequestID(inTarget target: String) throws -> String {
        guard let id = requestID(inTarget: target) else {
            throw ExchangeError(
                .malformed,
                "a POST carries a request id: add ?\(RequestSignature.requestIDParameter)= and 32 random hex digits to the path, and keep them for every retry of the request"
            )
        }
        guard id.utf8.count == 32, id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw ExchangeError(.malformed, "\(RequestSignature.requestIDParameter) must be 32 lowercase hex digits")
        }
        return id
    }

    /// What a state-changing request is: new (it is now being answered, and
    /// ``finish(key:request:path:digest:outcome:)`` or ``abandon(key:request:)`` must follow), or
    /// a retry of one already answered. A retry whose first attempt is still being answered is
    /// asked to come back (503); an id used before for another path or body is refused (409).
    func begin(key: [UInt8], request id: String, path: String, digest: [UInt8]) throws -> Outcome? {
        let token = Hex.encode(key) + id
        guard !answering.contains(token) else {
            throw ExchangeError(.unavailable, "request \(id) is still being answered; retry it in a moment")
        }
        let row = try store.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT path, digest, status, content_type, body FROM outcomes WHERE key = ? AND request = ?",
                arguments: [Data(key), id]
            )
        }
        guard let row else {
            answering.insert(token)
            return nil
        }
        let storedPath: String = row["path"]
        let storedDigest: Data = row["digest"]
        guard storedPath == path, ConstantTime.equals(Array(storedDigest), digest) else {
            throw ExchangeError(
                .conflict,
                "request id \(id) was used for another request (\(storedPath)); each new request takes a new id"
            )
        }
        let sealed: Data = row["body"]
        guard let body = try? openOutcome(Array(sealed), key: key, request: id) else {
            throw ExchangeError(.internal, "the stored answer to request \(id) does not open")
        }
        return Outcome(status: row["status"], contentType: row["content_type"], body: body)
    }

    /// Stores the answer to a request ``begin(key:request:path:digest:)`` let through, and drops
    /// answers past ``outcomeRetention``.
    func finish(key: [UInt8], request id: String, path: String, digest: [UInt8], outcome: Outcome) {
        defer { answering.remove(Hex.encode(key) + id) }
        let now = settings.now()
        do {
            let sealed = try sealOutcome(outcome.body, key: key, request: id)
            try store.write { db in
                try db.execute(sql: "DELETE FROM outcomes WHERE time < ?", arguments: [now - Self.outcomeRetention])
                try db.execute(
                    sql: """
                        INSERT INTO outcomes (key, request, path, digest, status, content_type, body, time)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                        """,
                    arguments: [
                        Data(key), id, path, Data(digest), outcome.status, outcome.contentType, Data(sealed), now,
                    ]
                )
            }
        } catch {
            // The request took effect; only its retry loses the stored answer.
            logger.error("an answer could not be stored for retries", metadata: ["error": "\(error)"])
        }
    }

    /// Forgets a request ``begin(key:request:path:digest:)`` let through whose answer is not
    /// kept (a retry is answered afresh).
    func abandon(key: [UInt8], request id: String) { answering.remove(Hex.encode(key) + id) }

    /// `nonce ‖ XChaCha20-Poly1305(body)`, bound to the signer and the request id.
    private func sealOutcome(_ body: [UInt8], key: [UInt8], request id: String) throws -> [UInt8] {
        let nonce = XChaCha20Poly1305.Nonce()
        return try nonce.bytes
            + XChaCha20Poly1305.seal(body, key: outcomeKey, nonce: nonce, authenticating: key + Array(id.utf8))
    }

    private func openOutcome(_ sealed: [UInt8], key: [UInt8], request id: String) throws -> [UInt8] {
        let n = XChaCha20Poly1305.nonceByteCount
        guard sealed.count >= n else { throw ExchangeError(.internal, "a stored answer is truncated") }
        return try XChaCha20Poly1305.open(
            Array(sealed[n...]),
            key: outcomeKey,
            nonce: try XChaCha20Poly1305.Nonce(bytes: Array(sealed[..<n])),
            authenticating: key + Array(id.utf8)
        )
    }
}
