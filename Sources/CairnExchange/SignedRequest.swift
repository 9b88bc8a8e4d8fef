public import CairnCrypto
public import CairnWire
import Glibc

extension Domain {
    /// Signatures over HTTP requests (`Protocol/README.md`, "Signed requests").
    public static let request = Domain("cairn/request/v1")
    /// The digest of a request body inside a request signature.
    public static let requestBody = Domain("cairn/request-body/v1")
    /// The broker's signature on its transport key (`GET /v1/broker`).
    public static let brokerTransportKey = Domain("cairn/broker-transport-key/v1")
}

/// The signature every request to the broker carries (`Protocol/README.md`, "Signed requests").
///
/// The caller signs, with its Ed25519 identity key in the `cairn/request/v1` domain,
/// `u16 version ‖ u8 len ‖ method ‖ u16 len ‖ target ‖ body digest (32) ‖ u64 time ‖ nonce (16) ‖
/// broker identity key (32)`, and sends the key, time, nonce and signature in four headers.
/// The broker refuses a bad signature, a time more than ``maximumClockSkew`` seconds away from
/// its own, and a nonce it has seen from that key within the window.
public struct RequestSignature: Sendable, Hashable {
    /// `Cairn-Key`: the caller's identity key, 64 hex digits.
    public static let keyHeader = "Cairn-Key"
    /// `Cairn-Time`: Unix time in seconds, decimal.
    public static let timeHeader = "Cairn-Time"
    /// `Cairn-Nonce`: 16 random bytes, 32 hex digits.
    public static let nonceHeader = "Cairn-Nonce"
    /// `Cairn-Signature`: 128 hex digits.
    public static let signatureHeader = "Cairn-Signature"
    /// `Cairn-Body-Digest`: the signed body digest, 64 hex digits. Required on streamed uploads,
    /// whose signature is checked before the body arrives and the body against it after.
    public static let bodyDigestHeader = "Cairn-Body-Digest"
    /// How far a request's time may be from the broker's clock, in seconds, either way.
    public static let maximumClockSkew: Int64 = 60
    /// The nonce length in bytes.
    public static let nonceByteCount = 16
    /// The longest request target (path and query) accepted, in bytes.
    public static let maximumTargetByteCount = 1024
    /// The query parameter that carries a POST's request id (`Protocol/README.md`, "Request ids").
    public static let requestIDParameter = "request-id"

    /// `target` with a fresh request id: `?request-id=` (or `&request-id=`) and 32 random hex
    /// digits. A client keeps the result for every retry of the request.
    public static func withRequestID(_ target: String) -> String {
        target + (target.contains("?") ? "&" : "?") + requestIDParameter + "=" + Hex.encode(SecureRandom.bytes(16))
    }

    /// The caller.
    public var key: Ed25519.PublicKey
    /// Unix seconds.
    public var time: Int64
    /// The nonce.
    public var nonce: [UInt8]
    /// The signature.
    public var signature: [UInt8]

    /// The bytes signed.
    public static func message(
        method: String,
        target: String,
        bodyDigest: [UInt8],
        time: Int64,
        nonce: [UInt8],
        broker: Ed25519.PublicKey
    ) -> [UInt8] {
        var w = ByteWriter(capacity: 160 + target.utf8.count)
        w.u16(CairnVersion.wire)
        writeRequestLine(&w, method: method, target: target)
        w.raw(bodyDigest)
        w.u64(UInt64(bitPattern: time))
        w.raw(nonce)
        w.raw(broker.rawRepresentation)
        return w.bytes
    }

    /// `u8 len ‖ method ‖ u16 len ‖ target`, as the signed message and a sealed body's
    /// associated data (``SealedBody``) both hold them.
    static func writeRequestLine(_ w: inout ByteWriter, method: String, target: String) {
        let m = Array(method.utf8.prefix(255))
        w.u8(UInt8(m.count))
        w.raw(m)
        let t = Array(target.utf8.prefix(Int(UInt16.max)))
        w.u16(UInt16(t.count))
        w.raw(t)
    }

    /// The digest of a whole body. (A masked-input upload signs its commitment instead,
    /// ``MaskedUpload/commitment(ofBody:)``.)
    public static func digest(_ body: [UInt8]) throws -> [UInt8] { try BLAKE2b.hash(body, domain: .requestBody) }

    /// Signs a request; `time` defaults to now and the nonce to fresh random bytes (a sealed body
    /// is made for the time and nonce first, ``SealedBody``).
    public static func sign(
        method: String,
        target: String,
        bodyDigest: [UInt8],
        identity: Ed25519.PrivateKey,
        broker: Ed25519.PublicKey,
        time: Int64 = unixTime(),
        nonce: [UInt8] = SecureRandom.bytes(nonceByteCount)
    ) throws -> RequestSignature {
        let message = message(
            method: method,
            target: target,
            bodyDigest: bodyDigest,
            time: time,
            nonce: nonce,
            broker: broker
        )
        return RequestSignature(
            key: identity.publicKey,
            time: time,
            nonce: nonce,
            signature: try identity.signature(for: message, domain: .request)
        )
    }

    /// The four headers, name and value.
    public var headers: [(name: String, value: String)] {
        [
            (Self.keyHeader, Hex.encode(key.rawRepresentation)),
            (Self.timeHeader, String(time)),
            (Self.nonceHeader, Hex.encode(nonce)),
            (Self.signatureHeader, Hex.encode(signature)),
        ]
    }

    /// Reads the four headers; nil when any is missing, a refusal when one is malformed.
    public init?(header: (String) -> String?) throws(ExchangeError) {
        guard let key = header(Self.keyHeader), let time = header(Self.timeHeader),
            let nonce = header(Self.nonceHeader), let signature = header(Self.signatureHeader)
        else { return nil }
        func hex(_ text: String, _ count: Int, _ name: String) throws(ExchangeError) -> [UInt8] {
            guard text.utf8.count == 2 * count, let bytes = try? Hex.decode(text) else {
                throw ExchangeError(.unauthenticated, "the \(name) header must be \(2 * count) hex digits")
            }
            return bytes
        }
        guard let keyValue = try? Ed25519.PublicKey(rawRepresentation: try hex(key, 32, Self.keyHeader)) else {
            throw ExchangeError(.unauthenticated, "the \(Self.keyHeader) header is not an Ed25519 key")
        }
        guard time.utf8.count <= 19, let seconds = Int64(time), seconds >= 0 else {
            throw ExchangeError(.unauthenticated, "the \(Self.timeHeader) header must be Unix seconds")
        }
        self.key = keyValue
        self.time = seconds
        self.nonce = try hex(nonce, Self.nonceByteCount, Self.nonceHeader)
        self.signature = try hex(signature, Ed25519.signatureByteCount, Self.signatureHeader)
    }

    /// A signature made elsewhere.
    public init(key: Ed25519.PublicKey, time: Int64, nonce: [UInt8], signature: [UInt8]) {
        self.key = key
        self.time = time
        self.nonce = nonce
        self.signature = signature
    }

    /// Whether the signature holds for this request.
    public func isValid(method: String, target: String, bodyDigest: [UInt8], broker: Ed25519.PublicKey) -> Bool {
        let message = Self.message(
            method: method,
            target: target,
            bodyDigest: bodyDigest,
            time: time,
            nonce: nonce,
            broker: broker
        )
        return key.isValidSignature(signature, for: message, domain: .request)
    }
}

/// Unix time in whole seconds.
public func unixTime() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec)
}
