public import CairnCrypto
import CairnWire
import FoundationEssentials

/// A witness's cosignature of a checkpoint (c2sp.org/tlog-cosignature, Ed25519, v1): a statement
/// that, at `time`, the largest checkpoint of the log the witness had seen, checked consistent
/// with every earlier one it saw, was this one. In Cairn the witnesses are the members' nodes,
/// each signing with its identity key under its fingerprint as the cosigner name
/// (`Protocol/README.md`, "Witnessed checkpoints").
public struct Cosignature: Hashable, Sendable {
    /// The cosigner's public key.
    public var key: Ed25519.PublicKey
    /// When it was made (Unix seconds).
    public var time: Int64
    /// The Ed25519 signature (64 bytes).
    public var signature: [UInt8]

    /// A cosignature as received; ``isValid(for:)`` checks it.
    public init(key: Ed25519.PublicKey, time: Int64, signature: [UInt8]) {
        self.key = key
        self.time = time
        self.signature = signature
    }

    /// The cosigner name: the key's fingerprint (`ed25519:…`).
    public var name: String { key.fingerprint }

    /// The signed message: `cosignature/v1\ntime <time>\n` and the checkpoint's note text.
    public static func message(_ checkpoint: Checkpoint, time: Int64) -> [UInt8] {
        Ed25519.cosignatureHeader + Array("time \(time)\n\(checkpoint.text)".utf8)
    }

    /// Cosigns `checkpoint` with `identity` at `time`.
    public static func sign(_ checkpoint: Checkpoint, identity: Ed25519.PrivateKey, time: Int64) throws -> Cosignature {
        Cosignature(
            key: identity.publicKey,
            time: time,
            signature: try identity.cosignature(for: message(checkpoint, time: time))
        )
    }

    /// Whether it is this key's cosignature of `checkpoint`.
    public func isValid(for checkpoint: Checkpoint) -> Bool {
        time >= 0 && key.isValidCosignature(signature, for: Self.message(checkpoint, time: time))
    }

    /// The key ID: the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x04 ‖ key), big-endian.
    public var keyID: [UInt8] { Array(SHA256.hash(Array(name.utf8), [0x0A, 0x04], key.rawRepresentation).prefix(4)) }

    /// The note signature line: `— <name> <base64(key ID ‖ u64 time, big-endian ‖ signature)>`.
    public var line: String {
        let time = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(self.time) >> (56 - 8 * $0)) }
        return "— \(name) \(Data(keyID + time + signature).base64EncodedString())"
    }
}
