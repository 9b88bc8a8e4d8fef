internal import CSodium
import CairnWire

/// A passphrase-protected file of named long-term private keys (a node's identity, a broker's
/// signing keys, a licensee's delivery key). The byte format is specified in `Keys/README.md`.
///
/// The file key is Argon2id(passphrase, salt, opslimit, memlimit); the key list is encrypted with
/// XChaCha20-Poly1305 under it, with the whole header (format, KDF parameters, salt, nonce,
/// length) as associated data, so a wrong passphrase and any modified byte are both refused.
public struct Keystore: Sendable {
    /// What a stored secret is.
    public enum KeyKind: UInt8, Sendable {
        /// A 32-byte Ed25519 seed (``Ed25519/PrivateKey/init(seed:)``).
        case ed25519Seed = 1
        /// A 32-byte X25519 scalar (``X25519/PrivateKey/init(rawRepresentation:)``).
        case x25519Scalar = 2
    }

    /// One named key.
    public struct Entry: Sendable {
        /// The key's name: 1–64 characters of `a`–`z`, `0`–`9` and `-`.
        public let name: String
        /// What the secret is.
        public let kind: KeyKind
        /// The 32 secret bytes.
        public let secret: SecretBytes

        /// Makes an entry, checking the name and the secret's size.
        public init(name: String, kind: KeyKind, secret: SecretBytes) throws {
            let allowed = name.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d
            }
            guard (1...64).contains(name.utf8.count), allowed else {
                throw CryptoError(.keystoreMalformed, "key name '\(name)' must be 1–64 characters of a–z, 0–9 and '-'")
            }
            guard secret.count == 32 else {
                throw CryptoError(.keystoreMalformed, "key '\(name)' must be 32 bytes, not \(secret.count)")
            }
            self.name = name
            self.kind = kind
            self.secret = secret
        }

        /// An entry holding an Ed25519 key's seed.
        public init(name: String, ed25519 key: Ed25519.PrivateKey) throws {
            try self.init(name: name, kind: .ed25519Seed, secret: key.seed)
        }

        /// An entry holding an X25519 key's scalar.
        public init(name: String, x25519 key: X25519.PrivateKey) throws {
            try self.init(name: name, kind: .x25519Scalar, secret: key.rawRepresentation)
        }
    }

    /// Argon2id cost parameters, stored in the file so they can grow over time.
    public struct KDFParameters: Hashable, Sendable {
        /// Passes over memory.
        public let opsLimit: UInt32
        /// Memory in bytes.
        public let memoryLimitBytes: UInt64

        /// libsodium's interactive level: 2 passes, 64 MiB (about 0.1 s here).
        public static let interactive = KDFParameters(opsLimit: 2, memoryLimitBytes: 64 << 20)
        /// libsodium's moderate level: 3 passes, 256 MiB (about 0.5 s here). The default.
        public static let moderate = KDFParameters(opsLimit: 3, memoryLimitBytes: 256 << 20)
        /// libsodium's sensitive level: 4 passes, 1 GiB (several seconds).
        public static let sensitive = KDFParameters(opsLimit: 4, memoryLimitBytes: 1 << 30)
        /// The cheapest parameters a file may carry; for tests only.
        static let testing = KDFParameters(opsLimit: 1, memoryLimitBytes: 8192)

        /// The range a file's parameters must fall in; outside it the file is refused before any
        /// work, so a crafted file cannot make unlocking take hours or exhaust memory.
        static let opsRange: ClosedRange<UInt32> = 1...16
        static let memoryRange: ClosedRange<UInt64> = 8192...(4 << 30)

        /// Makes parameters. Writing or reading a keystore refuses them outside 1–16 passes and
        /// 8 KiB–4 GiB of memory (``CryptoError/Code/keystoreMalformed``).
        public init(opsLimit: UInt32, memoryLimitBytes: UInt64) {
            self.opsLimit = opsLimit
            self.memoryLimitBytes = memoryLimitBytes
        }
    }

    /// The file's first eight bytes.
    public static let magic = Array("CAIRNKS\0".utf8)
    /// The format version this code writes and reads.
    public static let formatVersion: UInt16 = 1
    /// The largest keystore file accepted.
    public static let maximumFileByteCount = 64 * 1024
    static let maximumEntryCount = 64
    static let headerByteCount = 68
    private static let kdfArgon2id13: UInt8 = 1
    private static let aeadXChaCha20Poly1305: UInt8 = 1
    private static let saltByteCount = Int(crypto_pwhash_SALTBYTES)

    /// The keys, in the order they were given.
    public let entries: [Entry]

    /// Makes a keystore; names must be distinct.
    public init(entries: [Entry]) throws {
        guard !entries.isEmpty, entries.count <= Self.maximumEntryCount else {
            throw CryptoError(
                .keystoreMalformed,
                "a keystore holds 1–\(Self.maximumEntryCount) keys, not \(entries.count)"
            )
        }
        guard Set(entries.map(\.name)).count == entries.count else {
            throw CryptoError(.keystoreMalformed, "two keys in a keystore have the same name")
        }
        self.entries = entries
    }

    /// The Ed25519 key stored under `name`.
    public func ed25519Key(named name: String) throws -> Ed25519.PrivateKey {
        try Ed25519.PrivateKey(seed: secret(named: name, kind: .ed25519Seed))
    }

    /// The X25519 key stored under `name`.
    public func x25519Key(named name: String) throws -> X25519.PrivateKey {
        try X25519.PrivateKey(rawRepresentation: secret(named: name, kind: .x25519Scalar))
    }

    private func secret(named name: String, kind: KeyKind) throws -> SecretBytes {
        guard let entry = entries.first(where: { $0.name == name && $0.kind == kind }) else {
            throw CryptoError(.keyNotFound, "the keystore has no \(kind) key named '\(name)'")
        }
        return entry.secret
    }

    // MARK: - Encoding

    /// The encrypted file bytes, under a fresh random salt and nonce.
    public func encrypted(passphrase: SecretBytes, parameters: KDFParameters = .moderate) throws -> [UInt8] {
        guard KDFParameters.opsRange.contains(parameters.opsLimit),
            KDFParameters.memoryRange.contains(parameters.memoryLimitBytes)
        else { throw CryptoError(.keystoreMalformed, "Argon2id parameters out of the accepted range") }
        let salt = SecureRandom.bytes(Self.saltByteCount)
        let nonce = XChaCha20Poly1305.Nonce()
        let payload = encodedPayload()
        var header = ByteWriter(capacity: Self.headerByteCount)
        header.raw(Self.magic)
        header.u16(Self.formatVersion)
        header.u8(Self.kdfArgon2id13)
        header.u8(Self.aeadXChaCha20Poly1305)
        header.u32(parameters.opsLimit)
        header.u64(parameters.memoryLimitBytes)
        header.raw(salt)
        header.raw(nonce.bytes)
        header.u32(UInt32(payload.count + XChaCha20Poly1305.tagByteCount))
        let key = try Self.fileKey(passphrase: passphrase, salt: salt, parameters: parameters)
        let sealed = try XChaCha20Poly1305.seal(
            payload,
            key: key,
            nonce: nonce,
            authenticating: Domain.keystore.framing(header.bytes)
        )
        return header.bytes + sealed
    }

    /// Opens keystore file bytes with `passphrase`.
    ///
    /// - Throws: ``CryptoError/Code/keystoreMalformed`` for a file that is not a well-formed
    ///   keystore; ``CryptoError/Code/keystoreLocked`` for a wrong passphrase or a modified file.
    public init(decrypting file: [UInt8], passphrase: SecretBytes) throws {
        let header = try Self.parseHeader(file)
        let key = try Self.fileKey(passphrase: passphrase, salt: header.salt, parameters: header.parameters)
        let payload: SecretBytes
        do {
            payload = try XChaCha20Poly1305.openSecret(
                header.sealed,
                key: key,
                nonce: header.nonce,
                authenticating: Domain.keystore.framing(header.authenticated)
            )
        } catch {
            throw CryptoError(.keystoreLocked, "cannot unlock the keystore: wrong passphrase, or the file was modified")
        }
        try self.init(entries: try Self.decodePayload(payload))
    }

    /// The parts of a keystore file, checked for structure but not yet authenticated.
    struct Header {
        let parameters: KDFParameters
        let salt: [UInt8]
        let nonce: XChaCha20Poly1305.Nonce
        let sealed: [UInt8]
        /// The 68 header bytes, bound as associated data.
        let authenticated: [UInt8]
    }

    /// Checks a file's structure before any expensive work. Fuzzed (`FuzzTesting/`).
    static func parseHeader(_ file: [UInt8]) throws -> Header {
        var reader = ByteReader(file)
        do {
            guard try reader.fixed(8, "magic") == Self.magic else {
                throw CryptoError(.keystoreMalformed, "not a Cairn keystore (bad magic bytes)")
            }
            let version = try reader.u16("format version")
            guard version == Self.formatVersion else {
                throw CryptoError(
                    .keystoreMalformed,
                    "keystore format version \(version) is not supported (expected 1)"
                )
            }
            guard try reader.u8("KDF") == Self.kdfArgon2id13 else {
                throw CryptoError(.keystoreMalformed, "unknown key-derivation function in keystore")
            }
            guard try reader.u8("cipher") == Self.aeadXChaCha20Poly1305 else {
                throw CryptoError(.keystoreMalformed, "unknown cipher in keystore")
            }
            let parameters = KDFParameters(
                opsLimit: try reader.u32("opslimit"),
                memoryLimitBytes: try reader.u64("memlimit")
            )
            guard KDFParameters.opsRange.contains(parameters.opsLimit),
                KDFParameters.memoryRange.contains(parameters.memoryLimitBytes)
            else {
                throw CryptoError(.keystoreMalformed, "keystore Argon2id parameters are outside the accepted range")
            }
            let salt = try reader.fixed(Self.saltByteCount, "salt")
            let nonce = try XChaCha20Poly1305.Nonce(bytes: try reader.fixed(XChaCha20Poly1305.nonceByteCount, "nonce"))
            let sealed = try reader.lengthPrefixed("ciphertext", maximum: Self.maximumFileByteCount)
            try reader.finish()
            return Header(
                parameters: parameters,
                salt: salt,
                nonce: nonce,
                sealed: sealed,
                authenticated: Array(file.prefix(Self.headerByteCount))
            )
        } catch let error as WireError {
            throw CryptoError(.keystoreMalformed, "malformed keystore: \(error.message)")
        }
    }

    /// Payload: u16 count, then per key: label name, u8 kind, 32 secret bytes.
    private func encodedPayload() -> SecretBytes {
        let count = 2 + entries.reduce(0) { $0 + 1 + $1.name.utf8.count + 1 + 32 }
        return SecretBytes(count: count) { out in
            var offset = 0
            func put(_ bytes: some Collection<UInt8>) {
                UnsafeMutableRawBufferPointer(rebasing: out[offset..<offset + bytes.count]).copyBytes(from: bytes)
                offset += bytes.count
            }
            put([UInt8(entries.count & 0xff), UInt8(entries.count >> 8)])
            for entry in entries {
                put([UInt8(entry.name.utf8.count)] + Array(entry.name.utf8) + [entry.kind.rawValue])
                entry.secret.withUnsafeBytes { put($0) }
            }
        }
    }

    /// Decodes an authenticated payload. Fuzzed (`FuzzTesting/`).
    static func decodePayload(_ payload: SecretBytes) throws -> [Entry] {
        try payload.withUnsafeBytes { (p) throws -> [Entry] in
            var offset = 0
            func take(_ n: Int) throws -> UnsafeRawBufferPointer {
                guard n <= p.count - offset else {
                    throw CryptoError(.keystoreMalformed, "keystore payload is truncated")
                }
                defer { offset += n }
                return UnsafeRawBufferPointer(rebasing: p[offset..<offset + n])
            }
            let countBytes = try take(2)
            let count = Int(countBytes[0]) | Int(countBytes[1]) << 8
            guard (1...maximumEntryCount).contains(count) else {
                throw CryptoError(.keystoreMalformed, "a keystore holds 1–\(maximumEntryCount) keys, not \(count)")
            }
            var entries: [Entry] = []
            for _ in 0..<count {
                let nameLength = Int(try take(1)[0])
                let name = String(decoding: try take(nameLength), as: UTF8.self)
                guard let kind = KeyKind(rawValue: try take(1)[0]) else {
                    throw CryptoError(.keystoreMalformed, "keystore key '\(name)' has an unknown kind")
                }
                entries.append(try Entry(name: name, kind: kind, secret: SecretBytes(copying: try take(32))))
            }
            guard offset == p.count else {
                throw CryptoError(.keystoreMalformed, "keystore payload has trailing bytes")
            }
            return entries
        }
    }

    private static func fileKey(
        passphrase: SecretBytes,
        salt: [UInt8],
        parameters: KDFParameters
    ) throws -> SymmetricKey {
        ensureSodium()
        guard passphrase.count > 0 else { throw CryptoError(.invalidPassphrase, "the passphrase is empty") }
        let bytes = try SecretBytes(count: SymmetricKey.byteCount) { (out) throws in
            let status = passphrase.withUnsafeBytes { p in
                crypto_pwhash(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    UInt64(out.count),
                    p.baseAddress!.assumingMemoryBound(to: CChar.self),
                    UInt64(p.count),
                    salt,
                    UInt64(parameters.opsLimit),
                    Int(parameters.memoryLimitBytes),
                    crypto_pwhash_ALG_ARGON2ID13
                )
            }
            try check(
                status,
                .internalFailure,
                "Argon2id failed (not enough memory for \(parameters.memoryLimitBytes) bytes?)"
            )
        }
        return try SymmetricKey(bytes)
    }

    // MARK: - Files

    /// Reads and unlocks the keystore file at `path`.
    public static func read(from path: String, passphrase: SecretBytes) throws -> Keystore {
        try Keystore(decrypting: try DurableFile.read(path, maximum: maximumFileByteCount), passphrase: passphrase)
    }

    /// Encrypts and writes the keystore to `path` (mode 0600, atomically and durably).
    /// An existing file is never overwritten unless `replace` is true.
    public func write(
        to path: String,
        passphrase: SecretBytes,
        parameters: KDFParameters = .moderate,
        replace: Bool = false
    ) throws {
        try DurableFile.write(try encrypted(passphrase: passphrase, parameters: parameters), to: path, replace: replace)
    }
}
