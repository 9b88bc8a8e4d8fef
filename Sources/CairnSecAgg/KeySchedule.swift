public import CairnCrypto
import CairnWire

extension Domain {
    /// Digest of a round configuration.
    public static let secAggConfig = Domain("cairn/secagg/config/v1")
    /// A participant's signature on its round keys.
    public static let secAggAdvertise = Domain("cairn/secagg/advertise/v1")
    /// The session id over the configuration and the ordered key list.
    public static let secAggSession = Domain("cairn/secagg/session/v1")
    /// The ring position of a participant (the relabelling).
    public static let secAggRing = Domain("cairn/secagg/ring/v1")
    /// The key that encrypts one participant's shares to one neighbour.
    public static let secAggShareKey = Domain("cairn/secagg/share-key/v1")
    /// The associated data of an encrypted share.
    public static let secAggShare = Domain("cairn/secagg/share/v1")
    /// The seed of the pairwise mask of two neighbours.
    public static let secAggPairMask = Domain("cairn/secagg/pair-mask/v1")
    /// The seed of a participant's self mask.
    public static let secAggSelfMask = Domain("cairn/secagg/self-mask/v1")
    /// A participant's signature on the survivor set.
    public static let secAggSurvivors = Domain("cairn/secagg/survivors/v1")
}

/// The derivations of a session: every key, seed, associated data and neighbour relation
/// computed from public values and the session id, shared by clients and server.
public struct Session: Sendable {
    /// The round's configuration.
    public let config: RoundConfig
    /// The key list the session was opened with.
    public let keys: KeyList
    /// BLAKE2b-256 over the configuration digest and the key list (`cairn/secagg/session/v1`).
    public let id: [UInt8]
    /// The roster indices of the advertised participants, ascending (`U1`).
    public let members: [UInt16]
    /// Each member's neighbours, ascending.
    public let neighbours: [UInt16: [UInt16]]
    /// Each member's position in ``members`` (and in the key list).
    private let positions: [UInt16: Int]

    /// Opens a session on a checked key list.
    init(config: RoundConfig, keys: KeyList) throws {
        members = keys.entries.map(\.index)
        try keys.checkOrder()
        self.config = config
        self.keys = keys
        id = try BLAKE2b.hash(keys.encoded, domain: .secAggSession)
        positions = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1, $0) })
        neighbours = Self.ring(members: members, session: id, k: config.neighbours)
    }

    /// The Harary ring: members ordered by BLAKE2b(session ‖ index), each joined to the `k / 2`
    /// before and after it; everyone to everyone when `k ≥ |members| − 1`.
    static func ring(members: [UInt16], session: [UInt8], k: Int) -> [UInt16: [UInt16]] {
        let m = members.count
        if k >= m - 1 {
            return Dictionary(uniqueKeysWithValues: members.map { u in (u, members.filter { $0 != u }) })
        }
        let order = members.map { index -> ([UInt8], UInt16) in
            var w = ByteWriter(capacity: 34)
            w.raw(session)
            w.u16(index)
            // BLAKE2b with a valid output size cannot fail.
            return ((try? BLAKE2b.hash(w.bytes, domain: .secAggRing)) ?? [], index)
        }.sorted { $0.0.lexicographicallyPrecedes($1.0) || ($0.0 == $1.0 && $0.1 < $1.1) }.map(\.1)
        var result: [UInt16: [UInt16]] = [:]
        for (position, u) in order.enumerated() {
            var near: [UInt16] = []
            for step in 1...(k / 2) {
                near.append(order[(position + step) % m])
                near.append(order[(position - step + m) % m])
            }
            result[u] = near.sorted()
        }
        return result
    }

    /// Whether `u` and `v` are neighbours.
    public func areNeighbours(_ u: UInt16, _ v: UInt16) -> Bool { neighbours[u]?.contains(v) ?? false }

    /// The associated data of the share from `sender` to `recipient`: the label, federation,
    /// round, session id, sender, recipient and message type.
    public func shareAssociatedData(sender: UInt16, recipient: UInt16) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.label(Domain.secAggShare.label)
        w.string(config.federation)
        w.u64(config.round)
        w.raw(id)
        w.u16(sender)
        w.u16(recipient)
        w.u8(MessageType.shareKeys.rawValue)
        return w.bytes
    }

    /// The key encrypting shares from `sender` to `recipient`: KDF(X25519, session ‖ sender ‖ recipient).
    func shareKey(
        _ ownKey: X25519.PrivateKey,
        peerKey: X25519.PublicKey,
        sender: UInt16,
        recipient: UInt16
    ) throws
        -> SymmetricKey
    {
        var w = ByteWriter(capacity: 36)
        w.raw(id)
        w.u16(sender)
        w.u16(recipient)
        return try BLAKE2b.deriveKey(
            from: ownKey.sharedSecret(with: peerKey),
            domain: .secAggShareKey,
            context: w.bytes
        )
    }

    /// The pairwise mask of `u` and `v` (symmetric): KDF(X25519, session ‖ min ‖ max).
    func pairMask(
        _ ownKey: X25519.PrivateKey,
        peerKey: X25519.PublicKey,
        _ u: UInt16,
        _ v: UInt16
    ) throws
        -> ChaCha20Keystream
    {
        var w = ByteWriter(capacity: 36)
        w.raw(id)
        w.u16(min(u, v))
        w.u16(max(u, v))
        let key = try BLAKE2b.deriveKey(
            from: ownKey.sharedSecret(with: peerKey),
            domain: .secAggPairMask,
            context: w.bytes
        )
        return try ChaCha20Keystream(seed: key.bytes)
    }

    /// The self mask of `u` from its seed `b`: KDF(b, session ‖ u).
    func selfMask(_ seed: SecretBytes, of u: UInt16) throws -> ChaCha20Keystream {
        var w = ByteWriter(capacity: 34)
        w.raw(id)
        w.u16(u)
        return try ChaCha20Keystream(
            seed: BLAKE2b.deriveKey(from: seed, domain: .secAggSelfMask, context: w.bytes).bytes
        )
    }

    /// The bytes a survivor-set signature covers: session id ‖ the set.
    func survivorsMessage(_ survivors: [UInt16]) -> [UInt8] {
        var w = ByteWriter(capacity: 36 + 2 * survivors.count)
        w.raw(id)
        w.indices(survivors)
        return w.bytes
    }

    /// The advertised keys of `index`.
    func entry(_ index: UInt16) -> KeyList.Entry? {
        positions[index].map { keys.entries[$0] }
    }
}
