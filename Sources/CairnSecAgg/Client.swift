public import CairnCrypto
public import CairnSIMD
import CairnWire

/// The secrets a participant makes for one round: two X25519 key pairs and a self-mask seed.
public struct RoundSecrets: Sendable {
    /// Agrees the keys that encrypt shares to neighbours.
    public let encryptionKey: X25519.PrivateKey
    /// Agrees the pairwise masks; shared (Shamir) with the neighbours.
    public let maskKey: X25519.PrivateKey
    /// `b`: the seed of the self mask; shared (Shamir) with the neighbours.
    public let selfMaskSeed: SecretBytes

    /// Fresh secrets from the system's random generator: what every real round uses.
    public init() throws {
        try self.init(
            encryptionKey: X25519.PrivateKey(),
            maskKey: X25519.PrivateKey(),
            selfMaskSeed: .random(count: 32)
        )
    }

    /// Given secrets, for test vectors only: reusing secrets across rounds breaks the protocol.
    public init(encryptionKey: X25519.PrivateKey, maskKey: X25519.PrivateKey, selfMaskSeed: SecretBytes) throws {
        guard selfMaskSeed.count == 32 else {
            throw SecAggError(.malformed, "a self-mask seed has 32 bytes, not \(selfMaskSeed.count)")
        }
        self.encryptionKey = encryptionKey
        self.maskKey = maskKey
        self.selfMaskSeed = selfMaskSeed
    }
}

/// One participant's side of a SecAgg+ round, as a state machine with no I/O: each step takes
/// the broker's message and returns the participant's answer.
///
/// Save the state (``savedState()``) after every step and before sending its answer. A restored
/// client answers a repeated message exactly as before, and refuses any request that would make
/// it reveal both shares of one peer, so a crash cannot lead it to unmask anyone.
public struct SecAggClient: Sendable {
    /// Where the client is in the round.
    public enum Phase: UInt8, Sendable {
        /// Keys made, nothing sent.
        case created = 0
        /// ``AdvertiseKeys`` made.
        case advertised = 1
        /// ``ShareKeys`` made.
        case sharedKeys = 2
        /// ``MaskedInput`` made.
        case maskedInput = 3
        /// ``ConsistencySignature`` made.
        case signedSurvivors = 4
        /// ``UnmaskResponse`` made.
        case unmasked = 5
    }

    /// The round.
    public let config: RoundConfig
    /// This participant's roster index.
    public let index: UInt16
    /// Where the client is.
    public private(set) var phase: Phase = .created

    private let identity: Ed25519.PrivateKey
    let secrets: RoundSecrets
    private(set) var session: Session?
    private var sent: ShareKeys?
    /// Neighbour → its self-mask share ‖ mask-key share (128 bytes), for those that sent shares.
    private var received: [UInt16: SecretBytes] = [:]
    private var signed: [UInt16]?
    private var revealed: [UInt16: ShareKind] = [:]

    /// A client for the participant whose identity is `identity`, which must be on the roster.
    public init(config: RoundConfig, identity: Ed25519.PrivateKey, secrets: RoundSecrets? = nil) throws {
        guard let position = config.roster.firstIndex(of: identity.publicKey) else {
            throw SecAggError(.wrongSession, "identity \(identity.publicKey) is not on this round's roster")
        }
        self.config = config
        self.identity = identity
        index = UInt16(position)
        self.secrets = try secrets ?? RoundSecrets()
    }

    /// The session id, once the key list is accepted.
    public var sessionID: [UInt8]? { session?.id }

    /// Step 1: the round keys, signed. Repeatable (the same message each time) until the key list.
    public mutating func advertise() throws -> AdvertiseKeys {
        guard phase == .created || phase == .advertised else { throw wrongPhase("advertise keys") }
        phase = .advertised
        return try ownAdvertisement()
    }

    private func ownAdvertisement() throws -> AdvertiseKeys {
        let message = KeyList.Entry.signedBytes(
            configDigest: config.digest,
            index: index,
            encryptionKey: secrets.encryptionKey.publicKey,
            maskKey: secrets.maskKey.publicKey
        )
        let signature = try identity.signature(for: message, domain: .secAggAdvertise)
        return AdvertiseKeys(
            configDigest: config.digest,
            entry: KeyList.Entry(
                index: index,
                encryptionKey: secrets.encryptionKey.publicKey,
                maskKey: secrets.maskKey.publicKey,
                signature: signature
            )
        )
    }

    /// Step 2: checks the list and its neighbours' advertised keys, and shares `b` and the mask key
    /// with the neighbours.
    ///
    /// Refuses a list for another configuration (``SecAggError/Code/wrongSession``), a neighbour's key
    /// without a valid signature by its roster identity, an index off the roster, a key held twice, or
    /// this participant's own keys replaced or missing
    /// (``SecAggError/Code/badSignature``), and a list too short to ever finish (``SecAggError/Code/aborted``).
    public mutating func shareKeys(_ list: KeyList) throws -> ShareKeys {
        if let sent, let session, session.keys == list { return sent }
        guard phase == .advertised else { throw wrongPhase("share keys") }
        guard list.configDigest == config.digest else {
            throw SecAggError(
                .wrongSession,
                "the key list is for another round configuration (federation, round or roster): refused as a replay"
            )
        }
        let needed = max(config.signatureThreshold, config.threshold + 1)
        guard list.entries.count >= needed else {
            throw SecAggError(
                .aborted,
                "only \(list.entries.count) participants advertised keys; the round needs \(needed), so it cannot finish"
            )
        }
        try list.checkOrder()
        var seen = Set<[UInt8]>()
        for entry in list.entries {
            guard Int(entry.index) < config.roster.count else {
                throw SecAggError(
                    .badSignature,
                    "the key list names participant \(entry.index), who is not on the roster"
                )
            }
            guard seen.insert(entry.encryptionKey.rawRepresentation).inserted,
                seen.insert(entry.maskKey.rawRepresentation).inserted
            else {
                throw SecAggError(.badSignature, "participant \(entry.index) advertises a key that another entry holds")
            }
        }
        let own = try ownAdvertisement().entry
        guard let mine = list.entries.first(where: { $0.index == index }) else {
            throw SecAggError(.badSignature, "the key list leaves out this participant (\(index))")
        }
        guard mine.encryptionKey == own.encryptionKey, mine.maskKey == own.maskKey else {
            throw SecAggError(.badSignature, "the key list replaces this participant's own round keys")
        }
        let session = try Session(config: config, keys: list)
        let neighbours = session.neighbours[index] ?? []
        // Only the neighbours' keys are used here (shares, pair masks), so only theirs are checked:
        // an entry no honest participant checks neighbours no honest participant ("Protocol/", step 2).
        for v in neighbours {
            guard let entry = session.entry(v), entry.isValid(for: config) else {
                throw SecAggError(
                    .badSignature,
                    "the round keys of participant \(v) carry no valid signature from its identity "
                        + "(substituted, or replayed from another round)"
                )
            }
        }
        let xs = neighbours.map { $0 + 1 }
        let selfShares = try Shamir.split(secrets.selfMaskSeed, threshold: config.threshold, indices: xs)
        let keyShares = try Shamir.split(secrets.maskKey.rawRepresentation, threshold: config.threshold, indices: xs)
        var shares: [EncryptedShare] = []
        for (position, v) in neighbours.enumerated() {
            guard let peer = session.entry(v) else { continue }
            let key = try session.shareKey(
                secrets.encryptionKey,
                peerKey: peer.encryptionKey,
                sender: index,
                recipient: v
            )
            let nonce = XChaCha20Poly1305.Nonce()
            let plaintext = SecretBytes(concatenating: [selfShares[position].value, keyShares[position].value])
            let ciphertext = try XChaCha20Poly1305.seal(
                plaintext,
                key: key,
                nonce: nonce,
                authenticating: session.shareAssociatedData(sender: index, recipient: v)
            )
            shares.append(EncryptedShare(peer: v, nonce: nonce, ciphertext: ciphertext))
        }
        let message = ShareKeys(session: session.id, sender: index, shares: shares)
        self.session = session
        sent = message
        phase = .sharedKeys
        return message
    }

    /// Step 3: opens the neighbours' shares and masks `input` (the quantised update, `D` words)
    /// with the sample count appended: `y = (input ‖ samples) + PRG(self) + Σ ±PRG(pair)` in Z_2^32.
    ///
    /// Repeatable with the same delivery (the same words for the same input). Refuses a delivery
    /// for another session or participant, a share from a non-neighbour, and a share that does
    /// not open (``SecAggError/Code/badShare``).
    public mutating func maskInput(
        _ delivery: ShareDelivery,
        input: [UInt32],
        sampleCount: UInt32,
        parallelism: Parallelism = .allCores
    ) throws -> MaskedInput {
        guard phase == .sharedKeys || phase == .maskedInput, let session else { throw wrongPhase("mask the input") }
        try checkSession(delivery.session, "ShareDelivery")
        guard delivery.recipient == index else {
            throw SecAggError(
                .wrongSession,
                "the shares are addressed to participant \(delivery.recipient), not \(index)"
            )
        }
        guard input.count == config.dimension else {
            throw SecAggError(
                .malformed,
                "the input has \(input.count) coordinates; the round sums \(config.dimension)"
            )
        }
        guard sampleCount <= config.maximumSampleCount else {
            throw SecAggError(
                .malformed,
                "sample count \(sampleCount) exceeds the round's maximum \(config.maximumSampleCount)"
            )
        }
        var opened: [UInt16: SecretBytes] = [:]
        for share in delivery.shares {
            guard session.areNeighbours(index, share.peer), let peer = session.entry(share.peer) else {
                throw SecAggError(
                    .badShare,
                    "a share claims to come from participant \(share.peer), who is not a neighbour"
                )
            }
            let key = try session.shareKey(
                secrets.encryptionKey,
                peerKey: peer.encryptionKey,
                sender: share.peer,
                recipient: index
            )
            let plaintext: SecretBytes
            do {
                plaintext = try XChaCha20Poly1305.openSecret(
                    share.ciphertext,
                    key: key,
                    nonce: share.nonce,
                    authenticating: session.shareAssociatedData(sender: share.peer, recipient: index)
                )
                _ = try Shamir.Share(index: index + 1, value: plaintext.subrange(0..<64))
                _ = try Shamir.Share(index: index + 1, value: plaintext.subrange(64..<128))
            } catch {
                throw SecAggError(
                    .badShare,
                    "the share from participant \(share.peer) does not open (tampered, misrouted or replayed)"
                )
            }
            opened[share.peer] = plaintext
        }
        if phase == .maskedInput {
            guard Set(opened.keys) == Set(received.keys) else {
                throw SecAggError(.wrongPhase, "the input was already masked with shares from other neighbours")
            }
        }
        var words = input
        words.append(sampleCount)
        try words.withUnsafeMutableBufferPointer { y in
            try MaskExpansion.add(session.selfMask(secrets.selfMaskSeed, of: index), to: y, parallelism: parallelism)
            for v in opened.keys.sorted() {
                guard let peer = session.entry(v) else { continue }
                let mask = try session.pairMask(secrets.maskKey, peerKey: peer.maskKey, index, v)
                if index < v {
                    try MaskExpansion.add(mask, to: y, parallelism: parallelism)
                } else {
                    try MaskExpansion.subtract(mask, from: y, parallelism: parallelism)
                }
            }
        }
        received = opened
        phase = .maskedInput
        return MaskedInput(session: session.id, sender: index, words: words)
    }

    /// Step 4: signs the survivor set after checking it: every survivor advertised, no survivor
    /// is a neighbour that never sent shares, and it is at least as large as both thresholds.
    /// Signs one set only; the same set again gets the same signature.
    public mutating func signSurvivors(_ request: ConsistencyRequest) throws -> ConsistencySignature {
        guard phase == .maskedInput || phase == .signedSurvivors, let session else {
            throw wrongPhase("sign the survivor set")
        }
        try checkSession(request.session, "ConsistencyRequest")
        if let signed, signed != request.survivors {
            throw SecAggError(.inconsistentSurvivors, "this participant already signed a different survivor set")
        }
        try checkSurvivors(request.survivors, session)
        let signature = try identity.signature(
            for: session.survivorsMessage(request.survivors),
            domain: .secAggSurvivors
        )
        signed = request.survivors
        phase = .signedSurvivors
        return ConsistencySignature(session: session.id, sender: index, signature: signature)
    }

    /// Step 5: reveals, for each neighbour that sent shares, the self-mask share of a survivor or
    /// the mask-key share of a dropped participant — never both, across all requests.
    ///
    /// Refuses (``SecAggError/Code/bothShares``) a peer listed as both survivor and dropped, or a
    /// request that would reveal the other share of a peer than an earlier answer did; refuses
    /// (``SecAggError/Code/inconsistentSurvivors``) a survivor set other than the one signed, and
    /// (``SecAggError/Code/badSignature``) fewer than `T` signatures or any of the first `T` that does not verify.
    public mutating func unmask(_ request: UnmaskRequest) throws -> UnmaskResponse {
        guard phase == .signedSurvivors || phase == .unmasked, let session, let signed else {
            throw wrongPhase("reveal shares")
        }
        try checkSession(request.session, "UnmaskRequest")
        let survivors = Set(request.survivors)
        if let both = request.dropped.first(where: survivors.contains) {
            throw SecAggError(
                .bothShares,
                "asked for both shares of participant \(both): it is listed as a survivor and as dropped"
            )
        }
        let dropped = Set(request.dropped)
        var kinds: [(UInt16, ShareKind)] = []
        for v in received.keys.sorted() {
            let kind: ShareKind? = survivors.contains(v) ? .selfMask : dropped.contains(v) ? .maskKey : nil
            guard let kind else { continue }
            if let earlier = revealed[v], earlier != kind {
                throw SecAggError(
                    .bothShares,
                    "asked for the \(kind == .selfMask ? "self-mask" : "mask-key") share of participant \(v) after "
                        + "revealing its \(earlier == .selfMask ? "self-mask" : "mask-key") share"
                )
            }
            kinds.append((v, kind))
        }
        guard request.survivors == signed else {
            throw SecAggError(.inconsistentSurvivors, "the survivor set differs from the one this participant signed")
        }
        if let stranger = request.dropped.first(where: { session.entry($0) == nil }) {
            throw SecAggError(
                .inconsistentSurvivors,
                "participant \(stranger) is listed as dropped but never advertised keys"
            )
        }
        guard request.signatures.count >= config.signatureThreshold else {
            throw SecAggError(
                .badSignature,
                "the survivor set carries \(request.signatures.count) signatures; \(config.signatureThreshold) are needed"
            )
        }
        var previous: UInt16?
        for entry in request.signatures {
            guard survivors.contains(entry.signer) else {
                throw SecAggError(
                    .inconsistentSurvivors,
                    "participant \(entry.signer) signed the survivor set but is not in it"
                )
            }
            // Distinct signers: `T` entries of one signer are not `T` signatures.
            guard previous.map({ $0 < entry.signer }) ?? true else {
                throw SecAggError(.malformed, "the survivor-set signatures are not strictly ascending by signer")
            }
            previous = entry.signer
        }
        // `T` valid signatures are what makes the set the only one any honest participant accepts
        // (two such sets share an honest signer); further ones add nothing, so the first `T` are checked.
        let message = session.survivorsMessage(signed)
        for entry in request.signatures.prefix(config.signatureThreshold) {
            guard
                config.roster[Int(entry.signer)].isValidSignature(
                    entry.signature,
                    for: message,
                    domain: .secAggSurvivors
                )
            else {
                throw SecAggError(
                    .badSignature,
                    "the signature of participant \(entry.signer) on the survivor set does not verify"
                )
            }
        }
        var shares: [UnmaskResponse.Revealed] = []
        for (v, kind) in kinds {
            guard let pair = received[v] else { continue }
            let value = kind == .selfMask ? pair.subrange(0..<64) : pair.subrange(64..<128)
            shares.append(UnmaskResponse.Revealed(peer: v, kind: kind, value: value))
            revealed[v] = kind
        }
        phase = .unmasked
        return UnmaskResponse(session: session.id, sender: index, shares: shares)
    }

    private func checkSurvivors(_ survivors: [UInt16], _ session: Session) throws {
        let needed = max(config.signatureThreshold, config.threshold)
        guard survivors.count >= needed else {
            throw SecAggError(
                .inconsistentSurvivors,
                "the survivor set has \(survivors.count) members, fewer than the \(needed) the thresholds need"
            )
        }
        for v in survivors {
            guard session.entry(v) != nil else {
                throw SecAggError(.inconsistentSurvivors, "survivor \(v) never advertised keys")
            }
            if session.areNeighbours(index, v), received[v] == nil {
                throw SecAggError(
                    .inconsistentSurvivors,
                    "survivor \(v) is a neighbour that sent this participant no shares, so it cannot have masked its input"
                )
            }
        }
    }

    private func checkSession(_ id: [UInt8], _ name: String) throws {
        guard let session, id == session.id else {
            throw SecAggError(
                .wrongSession,
                "the \(name) belongs to another session (round, federation or key list): refused"
            )
        }
    }

    private func wrongPhase(_ action: String) -> SecAggError {
        SecAggError(.wrongPhase, "cannot \(action) in phase \(phase)")
    }

    // MARK: Saved state

    private static let stateLabel = "cairn/secagg-client-state/v1"

    /// Everything needed to resume: configuration, round secrets, the key list, the shares received,
    /// the set signed and the shares revealed. It holds secrets: store it encrypted.
    public func savedState() -> SecretBytes {
        var w = ByteWriter(capacity: 4096 + config.encoded.count + 200 * (session?.members.count ?? 0))
        w.label(Self.stateLabel)
        w.lengthPrefixed(config.encoded)
        w.u16(index)
        secrets.encryptionKey.rawRepresentation.withUnsafeBytes { w.raw($0) }
        secrets.maskKey.rawRepresentation.withUnsafeBytes { w.raw($0) }
        secrets.selfMaskSeed.withUnsafeBytes { w.raw($0) }
        w.u8(phase.rawValue)
        w.lengthPrefixed(session?.keys.encoded ?? [])
        w.lengthPrefixed(sent?.encoded ?? [])
        w.u32(UInt32(received.count))
        for (v, pair) in received.sorted(by: { $0.key < $1.key }) {
            w.u16(v)
            pair.withUnsafeBytes { w.raw($0) }
        }
        w.bool(signed != nil)
        w.indices(signed ?? [])
        w.u32(UInt32(revealed.count))
        for (v, kind) in revealed.sorted(by: { $0.key < $1.key }) {
            w.u16(v)
            w.u8(kind.rawValue)
        }
        return SecretBytes(draining: &w)
    }

    /// Resumes from ``savedState()``; `identity` must be the key the state was made with.
    public init(restoring state: SecretBytes, identity: Ed25519.PrivateKey) throws {
        var r = state.withUnsafeBytes { ByteReader(Array($0)) }
        do {
            guard try r.label("state label") == Self.stateLabel else {
                throw WireError(.invalidValue, "not a SecAgg+ client state")
            }
            let config = try RoundConfig(decoding: r.lengthPrefixed("config", maximum: 1 << 20))
            let savedIndex = try r.u16("index")
            try self.init(
                config: config,
                identity: identity,
                secrets: RoundSecrets(
                    encryptionKey: X25519.PrivateKey(rawRepresentation: r.secret(32, "encryption key")),
                    maskKey: X25519.PrivateKey(rawRepresentation: r.secret(32, "mask key")),
                    selfMaskSeed: r.secret(32, "self-mask seed")
                )
            )
            guard savedIndex == index else {
                throw SecAggError(
                    .wrongSession,
                    "the saved state belongs to participant \(savedIndex), not this identity"
                )
            }
            guard let phase = Phase(rawValue: try r.u8("phase")) else {
                throw WireError(.invalidValue, "unknown phase")
            }
            self.phase = phase
            let keys = try r.lengthPrefixed("key list", maximum: 1 << 24)
            if !keys.isEmpty { session = try Session(config: config, keys: KeyList(decoding: keys)) }
            let shares = try r.lengthPrefixed("share keys", maximum: 1 << 24)
            if !shares.isEmpty { sent = try ShareKeys(decoding: shares) }
            for _ in 0..<(try r.count("received")) { received[try r.u16("peer")] = try r.secret(128, "shares") }
            let hasSigned = try r.bool("signed")
            let list = try r.indices("signed")
            signed = hasSigned ? list : nil
            for _ in 0..<(try r.count("revealed")) {
                let v = try r.u16("peer")
                guard let kind = ShareKind(rawValue: try r.u8("kind")) else {
                    throw WireError(.invalidValue, "unknown kind")
                }
                revealed[v] = kind
            }
            try r.finish()
        } catch let error as SecAggError where error.code != .malformed {
            throw error
        } catch {
            throw SecAggError(.malformed, "the saved client state is refused: \(error)")
        }
    }
}
