/// A domain-separation label: every signature and hash in Cairn is computed over
/// `label length (1 byte) ‖ label ‖ message`, so a signature or digest made for one purpose can
/// never be taken for another (see `Protocol/README.md`, "Domain separation").
///
/// Labels are ASCII, `cairn/<purpose>/v<version>`, and each is defined once as a static
/// member of `Domain` next to the code that uses it.
public struct Domain: Hashable, Sendable, CustomStringConvertible {
    /// The label text.
    public let label: String

    /// Makes a domain. The label must be 1–255 bytes of printable ASCII (a programming error otherwise).
    public init(_ label: String) {
        let utf8 = Array(label.utf8)
        precondition(!utf8.isEmpty && utf8.count <= 255, "a domain label has 1–255 bytes")
        precondition(utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7e }, "a domain label is printable ASCII without spaces")
        self.label = label
    }

    /// The bytes that precede every message in this domain.
    var prefix: [UInt8] { [UInt8(label.utf8.count)] + Array(label.utf8) }

    /// `prefix ‖ message`.
    func framing(_ message: [UInt8]) -> [UInt8] {
        var framed = prefix
        framed.reserveCapacity(framed.count + message.count)
        framed.append(contentsOf: message)
        return framed
    }

    public var description: String { label }

    /// Public-key fingerprints shown to people (`cairn-node identity`, the broker's `init`).
    public static let keyFingerprint = Domain("cairn/key-fingerprint/v1")
    /// Key derivation for the keystore is Argon2id; this labels the keystore's associated data.
    public static let keystore = Domain("cairn/keystore/v1")
}
