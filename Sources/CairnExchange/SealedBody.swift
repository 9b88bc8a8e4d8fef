public import CairnCrypto
public import CairnWire

extension Domain {
    /// The keys of sealed request and response bodies (`Protocol/README.md`, "Sealed bodies").
    public static let sealedBody = Domain("cairn/sealed-body/v1")
}

/// A request or response body encrypted end to end between a member and the broker
/// (`Protocol/README.md`, "Sealed bodies"), so that plain HTTP shows an observer nothing but
/// metadata: invite secrets, round answers, scores and models travel only inside one.
///
/// Both sides agree `X25519(member's identity key as X25519, broker transport key)` with no
/// message; the key of one body is that secret through the KDF with the direction, both parties'
/// keys and the request's signed nonce, so every request has its own pair of keys. The sealed
/// bytes are `u16 version (1) ‖ nonce (24) ‖ XChaCha20-Poly1305(plaintext)` with the method,
/// target and signed time as associated data. The request signature covers the sealed bytes
/// (its body digest), and the seal covers the request, so neither can be moved to another.
public struct SealedBody: Sendable {
    /// The content type of a sealed body.
    public static let contentType = "application/vnd.cairn.sealed"
    /// The version word every sealed body starts with.
    public static let version: UInt16 = 1
    /// Bytes a sealed body adds: version, nonce and tag.
    public static let overhead = 2 + XChaCha20Poly1305.nonceByteCount + XChaCha20Poly1305.tagByteCount

    /// Which way a body travels.
    public enum Direction: UInt8, Sendable {
        /// Member to broker.
        case request = 0
        /// Broker to member.
        case response = 1
    }

    /// Whether a route's request body and its successful response body are sealed. The one list
    /// of sealed routes, which the broker enforces and the client follows.
    public static func routes(method: String, path: String) -> (request: Bool, response: Bool) {
        let parts = path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/") } ?? []
        switch (method, parts.count) {
        case ("POST", 2) where parts == ["v1", "enrol"]: return (true, true)
        case ("POST", 5) where parts[0...2] == ["v1", "admin", "federations"] && parts[4] == "invites":
            return (false, true)
        case ("GET", 4) where parts[0...1] == ["v1", "federations"] && parts[3] == "model": return (false, true)
        case ("GET", 3) where parts[0...1] == ["v1", "audit"] && ["bundle", "report"].contains(parts[2]):
            return (false, true)
        case ("POST", 4) where parts[0...1] == ["v1", "federations"] && parts[3] == "evaluations": return (true, true)
        case ("POST", 6)
        where parts[0...1] == ["v1", "federations"] && parts[3] == "rounds"
            && ["advertise", "share", "check", "unmask"].contains(parts[5]):
            return (true, false)
        default: return (false, false)
        }
    }

    private let requestKey: SymmetricKey
    private let responseKey: SymmetricKey
    private let associated: [UInt8]

    /// The keys of one request, from the agreed secret.
    init(
        shared: SecretBytes,
        member: Ed25519.PublicKey,
        broker: Ed25519.PublicKey,
        transport: X25519.PublicKey,
        method: String,
        target: String,
        time: Int64,
        nonce: [UInt8]
    ) throws {
        func key(_ direction: Direction) throws -> SymmetricKey {
            var context = ByteWriter(capacity: 113)
            context.u8(direction.rawValue)
            context.raw(member.rawRepresentation)
            context.raw(broker.rawRepresentation)
            context.raw(transport.rawRepresentation)
            context.raw(nonce)
            return try BLAKE2b.deriveKey(from: shared, domain: .sealedBody, context: context.bytes)
        }
        requestKey = try key(.request)
        responseKey = try key(.response)
        var ad = ByteWriter(capacity: 16 + target.utf8.count)
        RequestSignature.writeRequestLine(&ad, method: method, target: target)
        ad.u64(UInt64(bitPattern: time))
        associated = ad.bytes
    }

    /// The member's side, for a request it is about to sign with this time and nonce.
    public static func member(
        identity: Ed25519.PrivateKey,
        broker: Ed25519.PublicKey,
        transport: X25519.PublicKey,
        method: String,
        target: String,
        time: Int64,
        nonce: [UInt8]
    ) throws -> SealedBody {
        try SealedBody(
            shared: try identity.x25519().sharedSecret(with: transport),
            member: identity.publicKey,
            broker: broker,
            transport: transport,
            method: method,
            target: target,
            time: time,
            nonce: nonce
        )
    }

    /// The broker's side, for a request whose signature it checked.
    public static func broker(
        transport: X25519.PrivateKey,
        identity: Ed25519.PublicKey,
        signature: RequestSignature,
        method: String,
        target: String
    ) throws(ExchangeError) -> SealedBody {
        do {
            return try SealedBody(
                shared: try transport.sharedSecret(with: try signature.key.x25519()),
                member: signature.key,
                broker: identity,
                transport: transport.publicKey,
                method: method,
                target: target,
                time: signature.time,
                nonce: signature.nonce
            )
        } catch {
            throw ExchangeError(.malformed, "no sealed body can be made with the key \(signature.key.fingerprint)")
        }
    }

    /// Seals `plaintext` for `direction` under a fresh random nonce (`nonce` only for test vectors).
    public func seal(
        _ plaintext: [UInt8],
        _ direction: Direction,
        nonce: XChaCha20Poly1305.Nonce = XChaCha20Poly1305.Nonce()
    ) throws -> [UInt8] {
        var out = ByteWriter(capacity: plaintext.count + Self.overhead)
        out.u16(Self.version)
        out.raw(nonce.bytes)
        out.raw(
            try XChaCha20Poly1305.seal(
                plaintext,
                key: key(direction),
                nonce: nonce,
                authenticating: [direction.rawValue] + associated
            )
        )
        return out.bytes
    }

    /// Opens a body sealed for `direction`; refuses another version, a short body and one that
    /// does not authenticate (another key, request or direction, or altered bytes).
    public func open(_ body: [UInt8], _ direction: Direction) throws(ExchangeError) -> [UInt8] {
        guard body.count >= Self.overhead else {
            throw ExchangeError(.malformed, "a sealed body has at least \(Self.overhead) bytes, not \(body.count)")
        }
        let version = UInt16(body[0]) | UInt16(body[1]) << 8
        guard version == Self.version else {
            throw ExchangeError(.malformed, "sealed body version \(version) is not \(Self.version)")
        }
        do {
            return try XChaCha20Poly1305.open(
                Array(body[(2 + XChaCha20Poly1305.nonceByteCount)...]),
                key: key(direction),
                nonce: try XChaCha20Poly1305.Nonce(bytes: Array(body[2..<(2 + XChaCha20Poly1305.nonceByteCount)])),
                authenticating: [direction.rawValue] + associated
            )
        } catch {
            throw ExchangeError(
                direction == .request ? .malformed : .transport,
                "the sealed body does not open: it was not sealed for this request by \(direction == .request ? "its signer" : "the broker")"
            )
        }
    }

    private func key(_ direction: Direction) -> SymmetricKey {
        direction == .request ? requestKey : responseKey
    }
}
