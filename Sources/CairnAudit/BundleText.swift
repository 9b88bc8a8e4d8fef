import CairnCrypto
import CairnWire

/// The canonical text forms of a bundle's lines (`Protocol/README.md`, "Audit bundles"): one
/// JSON object per line with its keys in a fixed order and no spaces, and one RFC 4180 CSV row
/// per entry. Each value has exactly one form, so a verifier can refuse any line that is not
/// byte for byte what the exporter writes.
enum BundleText {
    static let csvHeader = "sequence,time,actor,action,object_type,object_id,outcome,reason,request_id,digests\r\n"

    /// `s` as a JSON string: only `"` and `\` are escaped (entries hold no control characters;
    /// any that reach here are escaped as `\u00XX`, which the reader then refuses).
    static func json(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                out += "\\u00" + Hex.encode([UInt8(scalar.value)])
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func json(hashes: [MerkleHash]) -> String {
        "[" + hashes.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    }

    /// The entry's JSON line (with its newline).
    static func jsonLine(_ e: AuditEntry) -> String {
        let digests = e.digests.map { "{\"name\":\(json($0.name)),\"hex\":\"\(Hex.encode($0.bytes))\"}" }
        return "{\"sequence\":\(e.sequence),\"time\":\(json(e.time)),\"actor\":\(json(e.actor)),"
            + "\"action\":\(json(e.action)),\"object_type\":\(json(e.objectType)),\"object_id\":\(json(e.objectID)),"
            + "\"outcome\":\"\(e.outcome.name)\",\"reason\":\(json(e.reason)),"
            + "\"request_id\":\(json(e.requestID)),\"digests\":[\(digests.joined(separator: ","))]"
            + (e.request.map(json(request:)) ?? "") + "}\n"
    }

    /// `,"signed_request":{…}`: the request an actor signed, its fields in a fixed order.
    static func json(request r: AuditEntry.SignedRequest) -> String {
        ",\"signed_request\":{\"method\":\(json(r.method)),\"target\":\(json(r.target)),\"key\":\"\(Hex.encode(r.key))\","
            + "\"broker\":\"\(Hex.encode(r.broker))\",\"body_digest\":\"\(Hex.encode(r.bodyDigest))\",\"time\":\(r.time),"
            + "\"nonce\":\"\(Hex.encode(r.nonce))\",\"signature\":\"\(Hex.encode(r.signature))\"}"
    }

    /// Parses a JSON line (without its newline) in exactly the form ``jsonLine(_:)`` writes.
    static func entry(jsonLine line: ArraySlice<UInt8>) throws -> AuditEntry { try entryAndBytes(jsonLine: line).0 }

    /// The entry of a JSON line and its canonical bytes (checked once, as the log checks them).
    static func entryAndBytes(jsonLine line: ArraySlice<UInt8>) throws -> (AuditEntry, [UInt8]) {
        var r = Reader(line)
        r.expect("{\"sequence\":")
        let sequence = r.integer()
        r.expect(",\"time\":")
        let time = r.string()
        r.expect(",\"actor\":")
        let actor = r.string()
        r.expect(",\"action\":")
        let action = r.string()
        r.expect(",\"object_type\":")
        let objectType = r.string()
        r.expect(",\"object_id\":")
        let objectID = r.string()
        r.expect(",\"outcome\":")
        let outcomeText = r.string()
        r.expect(",\"reason\":")
        let reason = r.string()
        r.expect(",\"request_id\":")
        let requestID = r.string()
        r.expect(",\"digests\":[")
        var digests: [AuditEntry.Digest] = []
        while r.ok, r.peek != UInt8(ascii: "]"), digests.count <= AuditEntry.maximumDigests {
            if !digests.isEmpty { r.expect(",") }
            r.expect("{\"name\":")
            let name = r.string()
            r.expect(",\"hex\":")
            digests.append(AuditEntry.Digest(name: name, bytes: r.hex()))
            r.expect("}")
        }
        r.expect("]")
        var request: AuditEntry.SignedRequest?
        if r.ok, r.peek == UInt8(ascii: ",") {
            r.expect(",\"signed_request\":{\"method\":")
            let method = r.string()
            r.expect(",\"target\":")
            let target = r.string()
            r.expect(",\"key\":")
            let key = r.hex()
            r.expect(",\"broker\":")
            let broker = r.hex()
            r.expect(",\"body_digest\":")
            let bodyDigest = r.hex()
            r.expect(",\"time\":")
            let time = r.integer()
            r.expect(",\"nonce\":")
            let nonce = r.hex()
            r.expect(",\"signature\":")
            let signature = r.hex()
            r.expect("}")
            request = AuditEntry.SignedRequest(
                method: method,
                target: target,
                key: key,
                broker: broker,
                bodyDigest: bodyDigest,
                time: Int64(time),
                nonce: nonce,
                signature: signature
            )
        }
        r.expect("}")
        try r.finish("an entry line")
        guard let outcome = AuditEntry.Outcome.allCases.first(where: { $0.name == outcomeText }) else {
            throw AuditError(.malformed, "unknown outcome \(json(outcomeText))")
        }
        let entry = AuditEntry(
            sequence: sequence,
            time: time,
            actor: actor,
            action: action,
            objectType: objectType,
            objectID: objectID,
            outcome: outcome,
            reason: reason,
            requestID: requestID,
            digests: digests,
            request: request
        )
        return (entry, try entry.encoded())
    }

    /// A cosignature line: `{"size":N,"witness":"ed25519:…","key":"…","time":T,"signature":"…"}`.
    static func cosignatureLine(size: Int, _ c: Cosignature) -> String {
        "{\"size\":\(size),\"witness\":\(json(c.name)),\"key\":\"\(Hex.encode(c.key.rawRepresentation))\","
            + "\"time\":\(c.time),\"signature\":\"\(Hex.encode(c.signature))\"}\n"
    }

    /// Parses a line written by ``cosignatureLine(size:_:)``; the witness name must be the key's
    /// fingerprint.
    static func cosignature(line: ArraySlice<UInt8>) throws -> (size: Int, cosignature: Cosignature) {
        var r = Reader(line)
        r.expect("{\"size\":")
        let size = r.integer()
        r.expect(",\"witness\":")
        let name = r.string()
        r.expect(",\"key\":")
        let key = r.hex()
        r.expect(",\"time\":")
        let time = r.integer()
        r.expect(",\"signature\":")
        let signature = r.hex()
        r.expect("}")
        try r.finish("a cosignature line")
        guard let publicKey = try? Ed25519.PublicKey(rawRepresentation: key), publicKey.fingerprint == name else {
            throw AuditError(.malformed, "the witness \(json(name)) is not the fingerprint of the key given")
        }
        return (Int(size), Cosignature(key: publicKey, time: Int64(time), signature: signature))
    }

    /// A proof line: `{"sequence":N,"leaf":"…","proof":["…",…]}` (inclusion) or
    /// `{"size":N,"root":"…","proof":[…]}` (consistency).
    static func proofLine(
        _ first: String,
        _ number: Int,
        _ second: String,
        _ hash: MerkleHash,
        _ proof: [MerkleHash]
    )
        -> String
    {
        "{\"\(first)\":\(number),\"\(second)\":\"\(hash)\",\"proof\":\(json(hashes: proof))}\n"
    }

    /// Parses a line written by ``proofLine(_:_:_:_:_:)`` with the same key names.
    static func proof(
        line: ArraySlice<UInt8>,
        _ first: String,
        _ second: String
    ) throws -> (
        Int, MerkleHash, [MerkleHash]
    ) {
        var r = Reader(line)
        r.expect("{\"\(first)\":")
        let number = r.integer()
        r.expect(",\"\(second)\":")
        let hash = r.hash()
        r.expect(",\"proof\":[")
        var proof: [MerkleHash] = []
        while r.ok, r.peek != UInt8(ascii: "]"), proof.count <= 64 {
            if !proof.isEmpty { r.expect(",") }
            proof.append(r.hash())
        }
        r.expect("]}")
        try r.finish("a proof line")
        guard number <= Int.max >> 1 else { throw AuditError(.malformed, "a proof line's \(first) is too large") }
        return (Int(number), hash, proof)
    }

    /// The entry's CSV row (with its CRLF): a field is quoted, with `"` doubled, when it holds
    /// a comma or a quote; digests are `name=hex` joined by `;`.
    static func csvRow(_ e: AuditEntry) -> String {
        func field(_ s: String) -> String {
            s.utf8.contains(44) || s.utf8.contains(34)
                ? "\"" + String(s.flatMap { $0 == "\"" ? ["\"", "\""] : [$0] }) + "\"" : s
        }
        let digests = e.digests.map { "\($0.name)=\(Hex.encode($0.bytes))" }.joined(separator: ";")
        return [
            "\(e.sequence)", e.time, e.actor, e.action, e.objectType, e.objectID, e.outcome.name, e.reason,
            e.requestID, digests,
        ].map(field).joined(separator: ",") + "\r\n"
    }

    /// A strict cursor over one line. The first failure is kept and later reads return empty
    /// values, so a parse reads straight through and ``finish(_:)`` reports.
    struct Reader {
        let bytes: ArraySlice<UInt8>
        var index: Int
        var failure: String?

        init(_ bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            index = bytes.startIndex
        }

        var ok: Bool { failure == nil }
        var peek: UInt8? { index < bytes.endIndex ? bytes[index] : nil }

        mutating func fail(_ why: String) {
            if failure == nil { failure = "\(why) at byte \(index - bytes.startIndex + 1)" }
        }

        mutating func expect(_ literal: String) {
            guard ok else { return }
            for b in literal.utf8 {
                guard peek == b else { return fail("expected \(BundleText.json(literal))") }
                index += 1
            }
        }

        /// A non-negative decimal without leading zeros, at most 2^63 − 1.
        mutating func integer() -> UInt64 {
            guard ok else { return 0 }
            let start = index
            var value: UInt64 = 0
            while let b = peek, b >= 48, b <= 57 {
                let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                let (next, o2) = times10.addingReportingOverflow(UInt64(b - 48))
                guard !o1, !o2, next <= UInt64(Int64.max) else {
                    fail("a number is too large")
                    return 0
                }
                value = next
                index += 1
            }
            if index == start || (bytes[start] == 48 && index - start > 1) { fail("expected a canonical number") }
            return value
        }

        /// A string whose only escapes are `\"` and `\\`, with no control characters, in UTF-8.
        mutating func string() -> String {
            expect("\"")
            var out: [UInt8] = []
            while ok {
                guard let b = peek else {
                    fail("unterminated string")
                    break
                }
                index += 1
                if b == UInt8(ascii: "\"") { break }
                if b < 0x20 { fail("a control character in a string") }
                if b == UInt8(ascii: "\\") {
                    guard let e = peek, e == UInt8(ascii: "\"") || e == UInt8(ascii: "\\") else {
                        fail("an escape other than \\\" or \\\\")
                        break
                    }
                    index += 1
                    out.append(e)
                } else {
                    out.append(b)
                }
            }
            guard ok, let text = String(validating: out, as: UTF8.self) else {
                fail("a string is not UTF-8")
                return ""
            }
            return text
        }

        /// A quoted, lower-case hex string.
        mutating func hex() -> [UInt8] {
            let text = string()
            guard ok, let bytes = try? Hex.decode(text), Hex.encode(bytes) == text else {
                fail("expected lower-case hex")
                return []
            }
            return bytes
        }

        mutating func hash() -> MerkleHash {
            let bytes = hex()
            guard ok, let hash = MerkleHash(bytes) else {
                fail("expected a 32-byte hash")
                return RFC6962.emptyRoot
            }
            return hash
        }

        func finish(_ what: String) throws {
            var copy = self
            if copy.ok, copy.index != copy.bytes.endIndex { copy.fail("trailing bytes") }
            if let failure = copy.failure { throw AuditError(.malformed, "\(what) is not canonical: \(failure)") }
        }
    }
}
