public import CairnCrypto
import CairnWire

/// The first byte of every SecAgg+ message.
public enum MessageType: UInt8, Sendable, CaseIterable {
    /// Participant → broker: round keys, signed.
    case advertiseKeys = 1
    /// Broker → participants: every advertised key.
    case keyList = 2
    /// Participant → broker: encrypted shares, one per neighbour.
    case shareKeys = 3
    /// Broker → participant: the shares its neighbours sent it.
    case shareDelivery = 4
    /// Participant → broker: the masked input.
    case maskedInput = 5
    /// Broker → participants: the survivor set to sign.
    case consistencyRequest = 6
    /// Participant → broker: its signature on the survivor set.
    case consistencySignature = 7
    /// Broker → participants: the survivor set, the dropped set and the signatures.
    case unmaskRequest = 8
    /// Participant → broker: the shares it reveals.
    case unmaskResponse = 9

    var name: String {
        switch self {
        case .advertiseKeys: "AdvertiseKeys"
        case .keyList: "KeyList"
        case .shareKeys: "ShareKeys"
        case .shareDelivery: "ShareDelivery"
        case .maskedInput: "MaskedInput"
        case .consistencyRequest: "ConsistencyRequest"
        case .consistencySignature: "ConsistencySignature"
        case .unmaskRequest: "UnmaskRequest"
        case .unmaskResponse: "UnmaskResponse"
        }
    }
}

/// Sizes fixed by the protocol.
public enum SecAggSizes {
    /// Bytes of one encrypted share: two 64-byte share values and the 16-byte tag.
    public static let encryptedShare = 2 * Shamir.shareValueByteCount + XChaCha20Poly1305.tagByteCount
}

/// Round keys advertised by one participant, signed with its identity key.
public struct AdvertiseKeys: Sendable, Hashable {
    /// The configuration digest the keys are for.
    public let configDigest: [UInt8]
    /// The keys and signature.
    public let entry: KeyList.Entry

    /// Wraps the parts.
    public init(configDigest: [UInt8], entry: KeyList.Entry) {
        self.configDigest = configDigest
        self.entry = entry
    }

    /// `version ‖ 01 ‖ config digest ‖ entry`.
    public var encoded: [UInt8] {
        var w = header(.advertiseKeys, configDigest)
        entry.write(&w)
        return w.bytes
    }

    /// Decodes a message, refusing anything but the canonical encoding.
    public init(decoding bytes: [UInt8]) throws {
        (configDigest, entry) = try decode(bytes, .advertiseKeys) { r in
            (try r.fixed(32, "config digest"), try KeyList.Entry(&r))
        }
    }
}

/// Every advertised key of a round, in ascending roster order: the input of the session id.
public struct KeyList: Sendable, Hashable {
    /// One participant's round keys.
    public struct Entry: Sendable, Hashable {
        /// The roster index.
        public let index: UInt16
        /// The key that agrees share-encryption keys.
        public let encryptionKey: X25519.PublicKey
        /// The key that agrees pairwise masks.
        public let maskKey: X25519.PublicKey
        /// Ed25519 by the roster identity, in `cairn/secagg/advertise/v1`, over
        /// config digest ‖ index ‖ encryption key ‖ mask key.
        public let signature: [UInt8]

        /// Wraps the parts.
        public init(index: UInt16, encryptionKey: X25519.PublicKey, maskKey: X25519.PublicKey, signature: [UInt8]) {
            self.index = index
            self.encryptionKey = encryptionKey
            self.maskKey = maskKey
            self.signature = signature
        }

        /// The signed bytes for `configDigest`.
        public static func signedBytes(
            configDigest: [UInt8],
            index: UInt16,
            encryptionKey: X25519.PublicKey,
            maskKey: X25519.PublicKey
        ) -> [UInt8] {
            var w = ByteWriter(capacity: 98)
            w.raw(configDigest)
            w.u16(index)
            w.raw(encryptionKey.rawRepresentation)
            w.raw(maskKey.rawRepresentation)
            return w.bytes
        }

        /// Whether the signature verifies under the roster identity of `index` in `config`.
        public func isValid(for config: RoundConfig) -> Bool {
            guard Int(index) < config.roster.count else { return false }
            let message = Self.signedBytes(
                configDigest: config.digest,
                index: index,
                encryptionKey: encryptionKey,
                maskKey: maskKey
            )
            return config.roster[Int(index)].isValidSignature(signature, for: message, domain: .secAggAdvertise)
        }

        func write(_ w: inout ByteWriter) {
            w.u16(index)
            w.raw(encryptionKey.rawRepresentation)
            w.raw(maskKey.rawRepresentation)
            w.raw(signature)
        }

        init(_ r: inout ByteReader) throws {
            index = try r.u16("index")
            encryptionKey = try X25519.PublicKey(rawRepresentation: try r.fixed(32, "encryption key"))
            maskKey = try X25519.PublicKey(rawRepresentation: try r.fixed(32, "mask key"))
            signature = try r.fixed(Ed25519.signatureByteCount, "signature")
        }
    }

    /// The configuration digest.
    public let configDigest: [UInt8]
    /// The entries, strictly ascending by index.
    public let entries: [Entry]

    /// Wraps the parts.
    public init(configDigest: [UInt8], entries: [Entry]) {
        self.configDigest = configDigest
        self.entries = entries
    }

    /// Refuses entries that are not strictly ascending by index (one participant listed twice).
    func checkOrder() throws {
        guard zip(entries, entries.dropFirst()).allSatisfy({ $0.index < $1.index }) else {
            throw SecAggError(.malformed, "the key list is not in strictly ascending roster order")
        }
    }

    /// `version ‖ 02 ‖ config digest ‖ u32 count ‖ entries`.
    public var encoded: [UInt8] {
        var w = header(.keyList, configDigest, capacity: 40 + 162 * entries.count)
        w.u32(UInt32(entries.count))
        for entry in entries { entry.write(&w) }
        return w.bytes
    }

    /// Decodes a message; entries must be strictly ascending by index.
    public init(decoding bytes: [UInt8]) throws {
        (configDigest, entries) = try decode(bytes, .keyList) { r in
            let digest = try r.fixed(32, "config digest")
            return (digest, try r.ascending("entries", "index", \.index) { try Entry(&$0) })
        }
    }
}

/// One share pair encrypted from one participant to another.
public struct EncryptedShare: Sendable, Hashable {
    /// The other party: the recipient in ``ShareKeys``, the sender in ``ShareDelivery``.
    public let peer: UInt16
    /// The random XChaCha20-Poly1305 nonce.
    public let nonce: XChaCha20Poly1305.Nonce
    /// Ciphertext ‖ tag of self-mask share ‖ mask-key share (144 bytes).
    public let ciphertext: [UInt8]

    /// Wraps the parts.
    public init(peer: UInt16, nonce: XChaCha20Poly1305.Nonce, ciphertext: [UInt8]) {
        self.peer = peer
        self.nonce = nonce
        self.ciphertext = ciphertext
    }

    func write(_ w: inout ByteWriter) {
        w.u16(peer)
        w.raw(nonce.bytes)
        w.raw(ciphertext)
    }

    init(_ r: inout ByteReader) throws {
        peer = try r.u16("peer")
        nonce = try XChaCha20Poly1305.Nonce(bytes: try r.fixed(XChaCha20Poly1305.nonceByteCount, "nonce"))
        ciphertext = try r.fixed(SecAggSizes.encryptedShare, "ciphertext")
    }

    static func list(_ r: inout ByteReader) throws -> [EncryptedShare] {
        try r.ascending("shares", "peer", \.peer) { try EncryptedShare(&$0) }
    }
}

/// A participant's shares for its neighbours, strictly ascending by recipient.
public struct ShareKeys: Sendable, Hashable {
    /// The session id.
    public let session: [UInt8]
    /// The sender's roster index.
    public let sender: UInt16
    /// One encrypted share per neighbour (`peer` = recipient).
    public let shares: [EncryptedShare]

    /// Wraps the parts.
    public init(session: [UInt8], sender: UInt16, shares: [EncryptedShare]) {
        self.session = session
        self.sender = sender
        self.shares = shares
    }

    /// `version ‖ 03 ‖ session ‖ sender ‖ u32 count ‖ (peer ‖ nonce ‖ ciphertext)*`.
    public var encoded: [UInt8] { encodeShares(.shareKeys, session, sender, shares) }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        (session, sender, shares) = try decode(bytes, .shareKeys) { r in
            (try r.fixed(32, "session"), try r.u16("sender"), try EncryptedShare.list(&r))
        }
    }
}

/// The shares a participant's neighbours sent it, strictly ascending by sender.
public struct ShareDelivery: Sendable, Hashable {
    /// The session id.
    public let session: [UInt8]
    /// The recipient's roster index.
    public let recipient: UInt16
    /// One encrypted share per neighbour that sent one (`peer` = sender).
    public let shares: [EncryptedShare]

    /// Wraps the parts.
    public init(session: [UInt8], recipient: UInt16, shares: [EncryptedShare]) {
        self.session = session
        self.recipient = recipient
        self.shares = shares
    }

    /// `version ‖ 04 ‖ session ‖ recipient ‖ u32 count ‖ (peer ‖ nonce ‖ ciphertext)*`.
    public var encoded: [UInt8] { encodeShares(.shareDelivery, session, recipient, shares) }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        (session, recipient, shares) = try decode(bytes, .shareDelivery) { r in
            (try r.fixed(32, "session"), try r.u16("recipient"), try EncryptedShare.list(&r))
        }
    }
}

/// A masked input: `D + 1` words, the last the masked sample count.
public struct MaskedInput: Sendable, Hashable {
    /// The session id.
    public let session: [UInt8]
    /// The sender's roster index.
    public let sender: UInt16
    /// `q(x) + PRG(self) ± PRG(pairs)` in Z_2^32, `D + 1` words.
    public let words: [UInt32]

    /// Wraps the parts.
    public init(session: [UInt8], sender: UInt16, words: [UInt32]) {
        self.session = session
        self.sender = sender
        self.words = words
    }

    /// `version ‖ 05 ‖ session ‖ sender ‖ u32 count ‖ u32 words`.
    public var encoded: [UInt8] {
        var w = header(.maskedInput, session, capacity: 40 + 4 * words.count)
        w.u16(sender)
        w.u32(UInt32(words.count))
        words.withUnsafeBufferPointer { w.u32Words($0) }
        return w.bytes
    }

    /// Decodes a message of at most ``RoundConfig/maximumDimension`` + 1 words.
    public init(decoding bytes: [UInt8]) throws {
        (session, sender, words) = try decode(bytes, .maskedInput) { r in
            let session = try r.fixed(32, "session")
            let sender = try r.u16("sender")
            let count = try r.u32("word count")
            guard count >= 2, count <= RoundConfig.maximumDimension + 1 else {
                throw WireError(.tooLarge, "word count: \(count) is outside 2…\(RoundConfig.maximumDimension + 1)")
            }
            return (session, sender, try r.u32Words(Int(count), "words"))
        }
    }
}

/// The survivor set (`U3`) the broker asks participants to sign.
public struct ConsistencyRequest: Sendable, Hashable {
    /// The session id.
    public let session: [UInt8]
    /// Roster indices whose masked inputs the broker holds, strictly ascending.
    public let survivors: [UInt16]

    /// Wraps the parts.
    public init(session: [UInt8], survivors: [UInt16]) {
        self.session = session
        self.survivors = survivors
    }

    /// `version ‖ 06 ‖ session ‖ u32 count ‖ u16 indices`.
    public var encoded: [UInt8] {
        var w = header(.consistencyRequest, session)
        w.indices(survivors)
        return w.bytes
    }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        (session, survivors) = try decode(bytes, .consistencyRequest) { r in
            (try r.fixed(32, "session"), try r.indices("survivors"))
        }
    }
}

/// A participant's signature on the survivor set.
public struct ConsistencySignature: Sendable, Hashable {
    /// The session id.
    public let session: [UInt8]
    /// The signer's roster index.
    public let sender: UInt16
    /// Ed25519 in `cairn/secagg/survivors/v1` over session id ‖ u32 count ‖ u16 indices.
    public let signature: [UInt8]

    /// Wraps the parts.
    public init(session: [UInt8], sender: UInt16, signature: [UInt8]) {
        self.session = session
        self.sender = sender
        self.signature = signature
    }

    /// `version ‖ 07 ‖ session ‖ sender ‖ signature`.
    public var encoded: [UInt8] {
        var w = header(.consistencySignature, session)
        w.u16(sender)
        w.raw(signature)
        return w.bytes
    }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        (session, sender, signature) = try decode(bytes, .consistencySignature) { r in
            (try r.fixed(32, "session"), try r.u16("sender"), try r.fixed(Ed25519.signatureByteCount, "signature"))
        }
    }
}

/// The broker's request to unmask: who survived (with the signatures that prove everyone was
/// shown the same set) and who dropped.
public struct UnmaskRequest: Sendable, Hashable {
    /// One signer and its signature on the survivor set.
    public struct Signature: Sendable, Hashable {
        /// The signer's roster index.
        public let signer: UInt16
        /// Its signature.
        public let signature: [UInt8]

        /// Wraps the parts.
        public init(signer: UInt16, signature: [UInt8]) {
            self.signer = signer
            self.signature = signature
        }
    }

    /// The session id.
    public let session: [UInt8]
    /// `U3`, strictly ascending: reveal self-mask shares for these.
    public let survivors: [UInt16]
    /// Participants that shared keys but sent no masked input, strictly ascending: reveal
    /// mask-key shares for these.
    public let dropped: [UInt16]
    /// Signatures on `survivors`, strictly ascending by signer.
    public let signatures: [Signature]

    /// Wraps the parts.
    public init(session: [UInt8], survivors: [UInt16], dropped: [UInt16], signatures: [Signature]) {
        self.session = session
        self.survivors = survivors
        self.dropped = dropped
        self.signatures = signatures
    }

    /// `version ‖ 08 ‖ session ‖ survivors ‖ dropped ‖ u32 count ‖ (signer ‖ signature)*`.
    public var encoded: [UInt8] {
        var w = header(
            .unmaskRequest,
            session,
            capacity: 48 + 2 * (survivors.count + dropped.count) + 66 * signatures.count
        )
        w.indices(survivors)
        w.indices(dropped)
        w.u32(UInt32(signatures.count))
        for s in signatures {
            w.u16(s.signer)
            w.raw(s.signature)
        }
        return w.bytes
    }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        (session, survivors, dropped, signatures) = try decode(bytes, .unmaskRequest) { r in
            let session = try r.fixed(32, "session")
            let survivors = try r.indices("survivors")
            let dropped = try r.indices("dropped")
            let signatures = try r.ascending("signatures", "signer", \.signer) {
                Signature(
                    signer: try $0.u16("signer"),
                    signature: try $0.fixed(Ed25519.signatureByteCount, "signature")
                )
            }
            return (session, survivors, dropped, signatures)
        }
    }
}

/// The kind of a revealed share.
public enum ShareKind: UInt8, Sendable, Hashable {
    /// A share of a survivor's self-mask seed.
    case selfMask = 0
    /// A share of a dropped participant's mask key.
    case maskKey = 1
}

/// The shares a participant reveals, strictly ascending by peer.
public struct UnmaskResponse: Sendable {
    /// One revealed share.
    public struct Revealed: Sendable {
        /// Whose secret the share belongs to.
        public let peer: UInt16
        /// Which secret.
        public let kind: ShareKind
        /// The 64-byte share value (the Shamir index is the responder's roster index + 1).
        public let value: SecretBytes

        /// Wraps the parts.
        public init(peer: UInt16, kind: ShareKind, value: SecretBytes) {
            self.peer = peer
            self.kind = kind
            self.value = value
        }
    }

    /// The session id.
    public let session: [UInt8]
    /// The responder's roster index.
    public let sender: UInt16
    /// The shares.
    public let shares: [Revealed]

    /// Wraps the parts.
    public init(session: [UInt8], sender: UInt16, shares: [Revealed]) {
        self.session = session
        self.sender = sender
        self.shares = shares
    }

    /// `version ‖ 09 ‖ session ‖ sender ‖ u32 count ‖ (peer ‖ kind ‖ value)*`. Holds secrets: send it over
    /// an encrypted channel to the broker only.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 48 + 67 * shares.count)
        write(&w)
        return w.bytes
    }

    func write(_ w: inout ByteWriter) {
        w.u16(CairnVersion.wire)
        w.u8(MessageType.unmaskResponse.rawValue)
        w.raw(session)
        w.u16(sender)
        w.u32(UInt32(shares.count))
        for share in shares {
            w.u16(share.peer)
            w.u8(share.kind.rawValue)
            share.value.withUnsafeBytes { w.raw($0) }
        }
    }

    /// Decodes a message.
    public init(decoding bytes: [UInt8]) throws {
        self = try decode(bytes, .unmaskResponse) { r in try Self(body: &r) }
    }

    /// Reads a whole message (type byte included) from a longer encoding.
    init(_ r: inout ByteReader) throws {
        try readVersion(&r)
        guard try r.u8("type") == MessageType.unmaskResponse.rawValue else {
            throw WireError(.invalidValue, "type: not an UnmaskResponse")
        }
        try self.init(body: &r)
    }

    private init(body r: inout ByteReader) throws {
        session = try r.fixed(32, "session")
        sender = try r.u16("sender")
        shares = try r.ascending("shares", "peer", \.peer) { r in
            let peer = try r.u16("peer")
            let rawKind = try r.u8("kind")
            guard let kind = ShareKind(rawValue: rawKind) else {
                throw WireError(.invalidValue, "kind: \(rawKind) is neither 0 (self mask) nor 1 (mask key)")
            }
            return Revealed(peer: peer, kind: kind, value: try r.secret(Shamir.shareValueByteCount, "value"))
        }
    }
}

/// The wire version, the type byte and the 32-byte binding (config digest or session id) every
/// message starts with.
func header(_ type: MessageType, _ binding: [UInt8], capacity: Int = 128) -> ByteWriter {
    var w = ByteWriter(capacity: capacity)
    w.u16(CairnVersion.wire)
    w.u8(type.rawValue)
    w.raw(binding)
    return w
}

func encodeShares(_ type: MessageType, _ session: [UInt8], _ party: UInt16, _ shares: [EncryptedShare]) -> [UInt8] {
    var w = header(type, session, capacity: 40 + 170 * shares.count)
    w.u16(party)
    w.u32(UInt32(shares.count))
    for share in shares { share.write(&w) }
    return w.bytes
}

/// Reads a message of `type` with `body`, requires every byte used, and turns any decoding
/// failure into ``SecAggError/Code/malformed`` naming the message.
func decode<T>(_ bytes: [UInt8], _ type: MessageType, _ body: (inout ByteReader) throws -> T) throws -> T {
    var r = ByteReader(bytes)
    do {
        try readVersion(&r)
        let found = try r.u8("type")
        guard found == type.rawValue else {
            let name = MessageType(rawValue: found)?.name ?? "unknown type \(found)"
            throw WireError(.invalidValue, "type: this is \(name), not \(type.name)")
        }
        let value = try body(&r)
        try r.finish()
        return value
    } catch let error as SecAggError {
        throw error
    } catch {
        throw SecAggError(.malformed, "\(type.name) refused: \(error)")
    }
}

/// Reads the `u16` wire version and refuses any other than ``CairnVersion/wire``.
func readVersion(_ r: inout ByteReader) throws {
    let version = try r.u16("version")
    guard version == CairnVersion.wire else {
        throw WireError(.invalidValue, "version: wire version \(version); this build implements \(CairnVersion.wire)")
    }
}

extension ByteWriter {
    /// `u32 count ‖ u16 indices`.
    mutating func indices(_ list: [UInt16]) {
        u32(UInt32(list.count))
        for index in list { u16(index) }
    }
}

extension ByteReader {
    /// A `u32` element count of at most ``RoundConfig/maximumParticipants``.
    mutating func count(_ field: String) throws -> Int {
        let count = try u32(field + " count")
        guard count <= RoundConfig.maximumParticipants else {
            throw WireError(.tooLarge, "\(field): \(count) exceeds \(RoundConfig.maximumParticipants)")
        }
        return Int(count)
    }

    /// A strictly ascending list of roster indices.
    mutating func indices(_ field: String) throws -> [UInt16] {
        try ascending(field, "index", \.self) { try $0.u16(field) }
    }

    /// A `u32` count, then that many elements read by `element`, whose `key` (a roster index) must
    /// be strictly ascending: one list has one encoding.
    mutating func ascending<T>(
        _ field: String,
        _ keyName: String,
        _ key: (T) -> UInt16,
        _ element: (inout ByteReader) throws -> T
    ) throws -> [T] {
        let count = try count(field)
        var list: [T] = []
        for _ in 0..<count {
            let item = try element(&self)
            if let last = list.last, key(last) >= key(item) {
                throw WireError(.invalidValue, "\(field): \(keyName) \(key(item)) is not above the one before it")
            }
            list.append(item)
        }
        return list
    }
}
