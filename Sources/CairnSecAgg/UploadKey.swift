public import CairnCrypto
import CairnWire

extension Domain {
    /// The key a masked input travels under, from the participant to the broker.
    public static let secAggUpload = Domain("cairn/secagg/upload/v1")
}

/// The key of a masked-input upload (`Protocol/README.md`, "Masked-input upload"): the
/// participant's round encryption key (signed in its AdvertiseKeys) agrees a secret with the
/// broker's X25519 transport key, and the key is `KDF(secret, session ‖ sender ‖ participant key ‖
/// broker key)` in `cairn/secagg/upload/v1`. Only that participant and the broker can make it, so
/// an upload that opens under it comes from the participant that signed those round keys.
public enum UploadKey {
    /// The derivation both sides share.
    public static func derive(
        shared: SecretBytes,
        session: [UInt8],
        sender: UInt16,
        participantKey: X25519.PublicKey,
        brokerKey: X25519.PublicKey
    ) throws -> SymmetricKey {
        var context = ByteWriter(capacity: 98)
        context.raw(session)
        context.u16(sender)
        context.raw(participantKey.rawRepresentation)
        context.raw(brokerKey.rawRepresentation)
        return try BLAKE2b.deriveKey(from: shared, domain: .secAggUpload, context: context.bytes)
    }

    /// The broker's side: its transport key and the participant's advertised encryption key.
    public static func broker(
        _ transport: X25519.PrivateKey,
        session: [UInt8],
        entry: KeyList.Entry
    ) throws -> SymmetricKey {
        try derive(
            shared: try transport.sharedSecret(with: entry.encryptionKey),
            session: session,
            sender: entry.index,
            participantKey: entry.encryptionKey,
            brokerKey: transport.publicKey
        )
    }
}

extension SecAggClient {
    /// The participant's side of ``UploadKey``, once the key list is in (ShareKeys sent).
    public func uploadKey(brokerKey: X25519.PublicKey) throws -> SymmetricKey {
        guard let session else { throw SecAggError(.wrongPhase, "there is no session before the key list") }
        return try UploadKey.derive(
            shared: try secrets.encryptionKey.sharedSecret(with: brokerKey),
            session: session.id,
            sender: index,
            participantKey: secrets.encryptionKey.publicKey,
            brokerKey: brokerKey
        )
    }
}
