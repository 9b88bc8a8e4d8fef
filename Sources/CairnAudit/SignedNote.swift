public import CairnCrypto
import CairnWire
import FoundationEssentials

/// A checkpoint of the audit log (c2sp.org/tlog-checkpoint): the log's origin, its size and its
/// RFC 6962 root, as note text.
///
/// Text: `<origin>\n<size in decimal>\n<base64 root>\n`, then one line per extension.
public struct Checkpoint: Hashable, Sendable {
    /// The log's name: a schema-less URL such as `cairn.example/federation-7`.
    public var origin: String
    /// The number of entries.
    public var size: Int
    /// The Merkle root of those entries.
    public var root: MerkleHash
    /// Extra lines (none written by Cairn yet).
    public var extensions: [String]

    /// A checkpoint; the origin must be non-empty UTF-8 without control characters.
    public init(origin: String, size: Int, root: MerkleHash, extensions: [String] = []) throws {
        guard !origin.isEmpty, size >= 0,
            ([origin] + extensions).allSatisfy({ !$0.isEmpty && !hasControlCharacters($0) })
        else {
            throw AuditError(
                .malformed,
                "a checkpoint needs a non-empty origin, a size ≥ 0 and lines without control characters"
            )
        }
        self.origin = origin
        self.size = size
        self.root = root
        self.extensions = extensions
    }

    /// The note text.
    public var text: String {
        "\(origin)\n\(size)\n\(Data(root.bytes).base64EncodedString())\n" + extensions.map { $0 + "\n" }.joined()
    }

    /// Parses checkpoint text: three lines at least, a canonical decimal size (no sign, no leading
    /// zero), a base64 32-byte root.
    public init(text: String) throws {
        func fail(_ why: String) -> AuditError { AuditError(.malformed, "not a checkpoint: \(why)") }
        guard text.hasSuffix("\n") else { throw fail("it does not end in a newline") }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3 else { throw fail("it has fewer than three lines") }
        let sizeLine = lines[1]
        guard !sizeLine.isEmpty, sizeLine.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            sizeLine == "0" || !sizeLine.hasPrefix("0"), let size = Int(sizeLine)
        else { throw fail("the size line is not a canonical decimal number") }
        guard let bytes = Data(base64Encoded: lines[2]), let root = MerkleHash(Array(bytes)),
            Data(bytes).base64EncodedString() == lines[2]
        else { throw fail("the root line is not base64 of 32 bytes") }
        try self.init(origin: lines[0], size: size, root: root, extensions: Array(lines.dropFirst(3)))
    }
}

/// A key that signs notes (c2sp.org/signed-note, Ed25519, signature type 0x01).
public struct NoteSigner: Sendable {
    /// The key name, for example the log's origin.
    public let name: String
    let key: Ed25519.PrivateKey

    /// A signer; the name must be non-empty with no spaces, `+` or control characters.
    public init(name: String, key: Ed25519.PrivateKey) throws {
        try checkKeyName(name)
        self.name = name
        self.key = key
    }

    /// Refuses a key name that is empty or holds spaces, `+` or control characters.
    public static func checkName(_ name: String) throws { try checkKeyName(name) }

    /// The matching verifier.
    public var verifier: NoteVerifier {
        NoteVerifier(name: name, publicKey: key.publicKey)
    }
}

/// A public key that verifies notes, and its C2SP verifier-key string
/// `<name>+<key ID, 8 hex digits>+<base64(0x01 ‖ public key)>`.
public struct NoteVerifier: Hashable, Sendable {
    /// The key name.
    public let name: String
    /// The Ed25519 public key.
    public let publicKey: Ed25519.PublicKey

    init(name: String, publicKey: Ed25519.PublicKey) {
        self.name = name
        self.publicKey = publicKey
    }

    /// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[0..<4]`, big-endian.
    public var keyID: UInt32 {
        SHA256.hash(Array(name.utf8), [0x0A, 0x01], publicKey.rawRepresentation).prefix(4).reduce(0) {
            $0 << 8 | UInt32($1)
        }
    }

    /// The verifier-key string.
    public var encoded: String {
        let id = String(keyID, radix: 16)
        return
            "\(name)+\(String(repeating: "0", count: 8 - id.count) + id)+\(Data([0x01] + publicKey.rawRepresentation).base64EncodedString())"
    }

    /// Parses a verifier-key string, checking that its key ID matches its name and key.
    public init(encoded: String) throws {
        func fail(_ why: String) -> AuditError { AuditError(.malformed, "not a note verifier key: \(why)") }
        // The name holds no '+', but base64 key data may: split at the first two only.
        let parts = encoded.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { throw fail("expected name+id+key") }
        try checkKeyName(parts[0])
        guard let key = Data(base64Encoded: parts[2]).map(Array.init), key.count == 33, key[0] == 0x01,
            Data(key).base64EncodedString() == parts[2]
        else {
            throw fail("the key is not base64 of 0x01 and 32 bytes")
        }
        self.init(name: parts[0], publicKey: try Ed25519.PublicKey(rawRepresentation: Array(key[1...])))
        guard parts[1].count == 8, UInt32(parts[1], radix: 16) == keyID else { throw fail("the key ID does not match") }
    }
}

/// Signed notes (c2sp.org/signed-note): text ending in a newline, a blank line, then signature
/// lines `— <key name> <base64(key ID ‖ signature)>`.
public enum SignedNote {
    /// The most signature lines read: 16.
    public static let maximumSignatures = 16

    /// `text` signed by `signer`.
    public static func sign(_ text: String, by signer: NoteSigner) throws -> String {
        guard text.hasSuffix("\n"), !hasControlCharacters(text) else {
            throw AuditError(.malformed, "note text must end in a newline and hold no other control characters")
        }
        let signature = try signer.key.noteSignature(for: Array(text.utf8))
        let id = signer.verifier.keyID
        let blob = [UInt8(id >> 24), UInt8(id >> 16 & 0xFF), UInt8(id >> 8 & 0xFF), UInt8(id & 0xFF)] + signature
        return text + "\n— \(signer.name) \(Data(blob).base64EncodedString())\n"
    }

    /// The text of a note whose signatures were checked when it was stored (a log's own
    /// checkpoints); ``open(_:verifier:)`` for any other.
    static func text(of note: String) throws -> String {
        let (bytes, blank) = try split(note)
        return String(decoding: bytes[..<blank], as: UTF8.self)
    }

    /// The note's bytes and the index of the blank line that ends its text: the last one, since
    /// signature lines never contain one.
    private static func split(_ note: String) throws -> (bytes: [UInt8], blank: Int) {
        func fail(_ why: String) -> AuditError { AuditError(.badSignature, "the note is refused: \(why)") }
        guard note.hasSuffix("\n"), !hasControlCharacters(note) else { throw fail("it is not a note") }
        let bytes = Array(note.utf8)
        guard let blank = (1..<bytes.count).last(where: { bytes[$0] == 0x0A && bytes[$0 - 1] == 0x0A }),
            blank + 1 < bytes.count - 1
        else { throw fail("no signature block") }
        return (bytes, blank)
    }

    /// The text of `note` if a signature by `verifier` verifies. Signatures by other keys are
    /// ignored; a failing signature by this key, or none at all, is refused.
    public static func open(_ note: String, verifier: NoteVerifier) throws -> String {
        func fail(_ why: String) -> AuditError { AuditError(.badSignature, "the note is refused: \(why)") }
        let (bytes, blank) = try split(note)
        let text = String(decoding: bytes[..<blank], as: UTF8.self)
        let lines = String(decoding: bytes[(blank + 1)..<(bytes.count - 1)], as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty, lines.count <= maximumSignatures else { throw fail("it has no or too many signatures") }
        var verified = false
        for line in lines {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, fields[0] == "—",
                let blob = Data(base64Encoded: String(fields[2])).map(Array.init),
                blob.count >= 4,
                // Only the canonical spelling: a base64 text whose unused bits differ would be a
                // second, equally "valid" note with the same signature.
                Data(blob).base64EncodedString() == fields[2]
            else { throw fail("a signature line is malformed") }
            let id = blob.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard fields[1] == verifier.name, id == verifier.keyID else { continue }
            guard verifier.publicKey.isValidNoteSignature(Array(blob.dropFirst(4)), for: Array(text.utf8)) else {
                throw fail("the signature by \(verifier.name) does not verify")
            }
            verified = true
        }
        guard verified else { throw fail("it carries no signature by \(verifier.name)") }
        return text
    }
}

private func checkKeyName(_ name: String) throws {
    guard !name.isEmpty, !name.contains("+"), !name.unicodeScalars.contains(where: { $0.properties.isWhitespace }),
        !hasControlCharacters(name)
    else { throw AuditError(.malformed, "a key name is non-empty, without spaces, '+' or control characters") }
}

private func hasControlCharacters(_ s: String) -> Bool {
    s.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }
}
