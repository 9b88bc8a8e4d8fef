public import CairnCrypto
import CairnWire

/// A participant's or licensee's long-term keys, kept in a passphrase-protected keystore in the
/// node's home folder (see `Keys/README.md`): an Ed25519 identity key that signs everything the
/// node sends, and an X25519 delivery key to which licensed models are encrypted.
public struct NodeIdentity: Sendable {
    /// The keystore's file name inside the node's home folder.
    public static let keystoreFileName = "node.keystore"
    /// The name of the Ed25519 identity key in the keystore.
    public static let identityKeyName = "identity"
    /// The name of the X25519 delivery key in the keystore.
    public static let deliveryKeyName = "delivery"

    /// The Ed25519 identity key.
    public let identity: Ed25519.PrivateKey
    /// The X25519 delivery key.
    public let delivery: X25519.PrivateKey

    /// The keystore path for a home folder.
    public static func keystorePath(home: String) -> String { home + "/" + keystoreFileName }

    /// Makes fresh keys and writes them to `home` (created with mode 0700 if missing).
    /// Refuses to replace an existing keystore.
    public static func create(
        home: String,
        passphrase: SecretBytes,
        parameters: Keystore.KDFParameters = .moderate
    ) throws -> NodeIdentity {
        let path = keystorePath(home: home)
        if DurableFile.exists(path) {
            throw WireError(.io, "\(path) already exists; refusing to replace an identity (move it away first)")
        }
        try DurableFile.makeDirectory(home)
        let node = NodeIdentity(identity: try Ed25519.PrivateKey(), delivery: try X25519.PrivateKey())
        let keystore = try Keystore(entries: [
            Keystore.Entry(name: identityKeyName, ed25519: node.identity),
            Keystore.Entry(name: deliveryKeyName, x25519: node.delivery),
        ])
        try keystore.write(to: path, passphrase: passphrase, parameters: parameters)
        return node
    }

    /// Unlocks the keystore in `home`.
    public static func unlock(home: String, passphrase: SecretBytes) throws -> NodeIdentity {
        let keystore = try Keystore.read(from: keystorePath(home: home), passphrase: passphrase)
        return NodeIdentity(
            identity: try keystore.ed25519Key(named: identityKeyName),
            delivery: try keystore.x25519Key(named: deliveryKeyName)
        )
    }

    private init(identity: Ed25519.PrivateKey, delivery: X25519.PrivateKey) {
        self.identity = identity
        self.delivery = delivery
    }
}
