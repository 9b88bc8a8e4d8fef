public import CairnCrypto
public import CairnSIMD
import CairnWire

/// The result of a round: the sum of the survivors' quantised inputs and of their sample counts.
public struct AggregateResult: Sendable {
    /// The roster indices whose inputs are in the sum (`U3`).
    public let survivors: [UInt16]
    /// `Σ q(x_u)` in Z_2^32, `D` words; read it with ``Quantisation/dequantise(_:into:parameters:dividingBy:parallelism:)``.
    public let sum: [UInt32]
    /// `Σ samples_u`.
    public let sampleCount: UInt32
}

/// The broker's side of a SecAgg+ round, with no I/O: it takes each participant message as it
/// arrives and, when a phase closes (everyone answered or the deadline passed), returns what to
/// send next. Masked inputs are added to one running sum as they arrive: memory O(D).
public struct SecAggServer: Sendable {
    /// Where the round is.
    public enum Phase: UInt8, Sendable {
        /// Collecting ``AdvertiseKeys``.
        case advertising = 0
        /// Collecting ``ShareKeys``.
        case sharing = 1
        /// Collecting ``MaskedInput``.
        case masking = 2
        /// Collecting ``ConsistencySignature``.
        case checking = 3
        /// Collecting ``UnmaskResponse``.
        case unmasking = 4
        /// The sum is out.
        case finished = 5
        /// Too many dropped out; nothing more happens.
        case aborted = 6
    }

    /// The round.
    public let config: RoundConfig
    /// Where the round is.
    public private(set) var phase: Phase = .advertising
    /// The parallelism used to unmask.
    public var parallelism: Parallelism = .allCores

    private var advertised: [UInt16: KeyList.Entry] = [:]
    private var session: Session?
    /// The shares received while sharing; emptied once they are handed out.
    private var shared: [UInt16: ShareKeys] = [:]
    /// Who shared keys (kept after ``shared`` is emptied).
    private var sharers: Set<UInt16> = []
    private var masked: Set<UInt16> = []
    /// The running sum of masked inputs, `D + 1` words; empty until the first one arrives.
    private var sum: [UInt32] = []
    private var survivors: [UInt16] = []
    private var dropped: [UInt16] = []
    private var signatures: [UInt16: [UInt8]] = [:]
    private var responses: [UInt16: UnmaskResponse] = [:]

    /// A server for one round.
    public init(config: RoundConfig) {
        self.config = config
    }

    /// The session id, once advertising has closed.
    public var sessionID: [UInt8]? { session?.id }

    /// Accepts one participant's round keys.
    public mutating func receive(_ message: AdvertiseKeys) throws {
        try expect(.advertising, "AdvertiseKeys")
        guard message.configDigest == config.digest else {
            throw SecAggError(.wrongSession, "AdvertiseKeys for another round configuration: refused as a replay")
        }
        let entry = message.entry
        guard entry.isValid(for: config) else {
            throw SecAggError(.badSignature, "the round keys from participant \(entry.index) carry no valid signature")
        }
        guard advertised[entry.index] == nil else {
            throw SecAggError(.wrongPhase, "participant \(entry.index) already advertised keys")
        }
        advertised[entry.index] = entry
    }

    /// Closes advertising: the key list for everyone.
    public mutating func closeAdvertising() throws -> KeyList {
        try expect(.advertising, "closing advertising")
        let needed = max(config.signatureThreshold, config.threshold + 1)
        try require(advertised.count, needed, "advertised keys")
        let list = KeyList(configDigest: config.digest, entries: advertised.keys.sorted().compactMap { advertised[$0] })
        session = try Session(config: config, keys: list)
        phase = .sharing
        return list
    }

    /// Accepts one participant's encrypted shares: exactly one for each of its neighbours.
    public mutating func receive(_ message: ShareKeys) throws {
        let session = try open(.sharing, "ShareKeys", message.session)
        guard let neighbours = session.neighbours[message.sender] else {
            throw SecAggError(.wrongSession, "ShareKeys from participant \(message.sender), who advertised no keys")
        }
        guard message.shares.map(\.peer) == neighbours else {
            throw SecAggError(
                .malformed,
                "ShareKeys from participant \(message.sender) must hold one share for each of its \(neighbours.count) neighbours"
            )
        }
        guard !sharers.contains(message.sender) else {
            throw SecAggError(.wrongPhase, "participant \(message.sender) already sent its shares")
        }
        shared[message.sender] = message
        sharers.insert(message.sender)
    }

    /// Closes sharing: for each participant that shared, the shares its neighbours sent it.
    public mutating func closeSharing() throws -> [ShareDelivery] {
        let session = try open(.sharing, "closing sharing", nil)
        try require(sharers.count, config.signatureThreshold, "shared keys")
        var inbox: [UInt16: [EncryptedShare]] = [:]
        for (sender, message) in shared.sorted(by: { $0.key < $1.key }) {
            for share in message.shares where sharers.contains(share.peer) {
                inbox[share.peer, default: []].append(
                    EncryptedShare(peer: sender, nonce: share.nonce, ciphertext: share.ciphertext)
                )
            }
        }
        phase = .masking
        // Handed out: the broker keeps no ciphertext it no longer needs, in memory or saved state.
        shared = [:]
        return sharers.sorted().map { ShareDelivery(session: session.id, recipient: $0, shares: inbox[$0] ?? []) }
    }

    /// Adds one participant's masked input to the running sum.
    public mutating func receive(_ message: MaskedInput) throws {
        try message.words.withUnsafeBufferPointer {
            try receiveMaskedInput(session: message.session, sender: message.sender, words: $0)
        }
    }

    /// Adds a masked input held elsewhere (a buffer filled from the network) to the running sum.
    public mutating func receiveMaskedInput(
        session id: [UInt8],
        sender: UInt16,
        words: UnsafeBufferPointer<UInt32>
    ) throws {
        _ = try open(.masking, "MaskedInput", id)
        guard sharers.contains(sender) else {
            throw SecAggError(.wrongSession, "MaskedInput from participant \(sender), who shared no keys")
        }
        guard words.count == config.wordCount else {
            throw SecAggError(
                .malformed,
                "MaskedInput from participant \(sender) has \(words.count) words, not \(config.wordCount)"
            )
        }
        guard !masked.contains(sender) else {
            throw SecAggError(.wrongPhase, "participant \(sender) already sent its masked input")
        }
        if sum.isEmpty { sum = [UInt32](repeating: 0, count: config.wordCount) }
        try sum.withUnsafeMutableBufferPointer { try ModularSum.add(words, into: $0, parallelism: parallelism) }
        masked.insert(sender)
    }

    /// Closes masking: the survivor set to sign.
    public mutating func closeMasking() throws -> ConsistencyRequest {
        let session = try open(.masking, "closing masking", nil)
        try require(masked.count, max(config.signatureThreshold, config.threshold), "sent masked inputs")
        survivors = masked.sorted()
        dropped = sharers.filter { !masked.contains($0) }.sorted()
        phase = .checking
        return ConsistencyRequest(session: session.id, survivors: survivors)
    }

    /// Accepts one survivor's signature on the survivor set.
    public mutating func receive(_ message: ConsistencySignature) throws {
        let session = try open(.checking, "ConsistencySignature", message.session)
        guard masked.contains(message.sender) else {
            throw SecAggError(
                .wrongSession,
                "a survivor-set signature from participant \(message.sender), who is not a survivor"
            )
        }
        guard
            config.roster[Int(message.sender)].isValidSignature(
                message.signature,
                for: session.survivorsMessage(survivors),
                domain: .secAggSurvivors
            )
        else {
            throw SecAggError(
                .badSignature,
                "the survivor-set signature of participant \(message.sender) does not verify"
            )
        }
        guard signatures[message.sender] == nil else {
            throw SecAggError(.wrongPhase, "participant \(message.sender) already signed")
        }
        signatures[message.sender] = message.signature
    }

    /// Closes the consistency check: the unmasking request for the signers.
    public mutating func closeChecking() throws -> UnmaskRequest {
        let session = try open(.checking, "closing the consistency check", nil)
        try require(signatures.count, config.signatureThreshold, "signed the survivor set")
        phase = .unmasking
        return UnmaskRequest(
            session: session.id,
            survivors: survivors,
            dropped: dropped,
            signatures: signatures.sorted { $0.key < $1.key }.map { .init(signer: $0.key, signature: $0.value) }
        )
    }

    /// The shares `responder` must reveal: for each neighbour whose shares it holds, the self-mask
    /// share of a survivor or the mask-key share of a dropped one.
    private func expectedShares(from responder: UInt16, _ session: Session) -> [(UInt16, ShareKind)] {
        (session.neighbours[responder] ?? []).compactMap { v in
            guard sharers.contains(v) else { return nil }
            return (v, masked.contains(v) ? .selfMask : .maskKey)
        }
    }

    /// Accepts one signer's revealed shares: exactly those it was asked for.
    public mutating func receive(_ message: UnmaskResponse) throws {
        let session = try open(.unmasking, "UnmaskResponse", message.session)
        guard signatures[message.sender] != nil else {
            throw SecAggError(
                .wrongSession,
                "UnmaskResponse from participant \(message.sender), who did not sign the survivor set"
            )
        }
        let expected = expectedShares(from: message.sender, session)
        guard
            message.shares.map({ [$0.peer, UInt16($0.kind.rawValue)] })
                == expected.map({ [$0.0, UInt16($0.1.rawValue)] })
        else {
            throw SecAggError(
                .malformed,
                "UnmaskResponse from participant \(message.sender) does not reveal exactly the shares asked for"
            )
        }
        for share in message.shares {
            do {
                _ = try Shamir.Share(index: message.sender + 1, value: share.value)
            } catch {
                throw SecAggError(
                    .malformed,
                    "UnmaskResponse from participant \(message.sender) holds a malformed share"
                )
            }
        }
        guard responses[message.sender] == nil else {
            throw SecAggError(.wrongPhase, "participant \(message.sender) already answered")
        }
        responses[message.sender] = message
    }

    /// Reconstructs every needed secret and removes the masks: the sum of the survivors' inputs.
    ///
    /// - Throws: ``SecAggError/Code/aborted`` when some secret has fewer than `t` shares, or a
    ///   reconstructed mask key does not match the advertised one; the round is then over.
    public mutating func finish() throws -> AggregateResult {
        let session = try open(.unmasking, "finishing", nil)
        var collected: [UInt16: [ShareKind: [Shamir.Share]]] = [:]
        for (responder, response) in responses.sorted(by: { $0.key < $1.key }) {
            for share in response.shares {
                collected[share.peer, default: [:]][share.kind, default: []].append(
                    try Shamir.Share(index: responder + 1, value: share.value)
                )
            }
        }
        func secret(_ peer: UInt16, _ kind: ShareKind) throws -> SecretBytes {
            let shares = collected[peer]?[kind] ?? []
            guard shares.count >= config.threshold else {
                phase = .aborted
                throw SecAggError(
                    .aborted,
                    "the \(kind == .selfMask ? "self-mask seed" : "mask key") of participant \(peer) has \(shares.count) "
                        + "shares; \(config.threshold) are needed: the round aborts"
                )
            }
            return try Shamir.combine(shares, threshold: config.threshold)
        }
        // Taken rather than copied: the round ends here either way (finished or aborted).
        var sum: [UInt32] = []
        swap(&sum, &self.sum)
        try sum.withUnsafeMutableBufferPointer { y in
            for u in survivors {
                try MaskExpansion.subtract(
                    session.selfMask(secret(u, .selfMask), of: u),
                    from: y,
                    parallelism: parallelism
                )
            }
            for v in dropped {
                let partners = (session.neighbours[v] ?? []).filter(masked.contains)
                guard !partners.isEmpty, let entry = session.entry(v) else { continue }
                let key = try X25519.PrivateKey(rawRepresentation: secret(v, .maskKey))
                guard key.publicKey == entry.maskKey else {
                    phase = .aborted
                    throw SecAggError(
                        .aborted,
                        "the shares of participant \(v)'s mask key do not rebuild its advertised key: the round aborts"
                    )
                }
                for u in partners {
                    guard let partner = session.entry(u) else { continue }
                    let mask = try session.pairMask(key, peerKey: partner.maskKey, u, v)
                    // u added the mask when u < v and subtracted it otherwise; undo that.
                    if u < v {
                        try MaskExpansion.subtract(mask, from: y, parallelism: parallelism)
                    } else {
                        try MaskExpansion.add(mask, to: y, parallelism: parallelism)
                    }
                }
            }
        }
        phase = .finished
        let samples = sum.removeLast()
        return AggregateResult(survivors: survivors, sum: sum, sampleCount: samples)
    }

    /// The number of keystream expansions ``finish()`` makes: one per survivor, plus one per
    /// (dropped participant, surviving neighbour) pair.
    public var unmaskingExpansions: Int {
        guard let session else { return 0 }
        return survivors.count
            + dropped.reduce(0) { total, v in total + survivors.filter { session.areNeighbours($0, v) }.count }
    }

    // MARK: Saved state

    private static let stateLabel = "cairn/secagg-server-state/v2"

    /// The running sum of the masked inputs received so far (`D + 1` words), or an empty buffer
    /// before the first: what ``savedState(includingSum:)`` leaves out when told to.
    public func withRunningSum<R>(_ body: (UnsafeBufferPointer<UInt32>) throws -> R) rethrows -> R {
        try sum.withUnsafeBufferPointer(body)
    }

    /// Everything needed to resume the round: configuration, phase, keys, shares, the running sum,
    /// signatures and revealed shares. It holds secrets once unmasking began: store it encrypted.
    ///
    /// - Parameter includingSum: `false` leaves the running sum (`4 · (D + 1)` bytes) out, for a
    ///   caller that stores it on its own from ``withRunningSum(_:)`` (it changes only while
    ///   masking, and then in every input) and hands it back to ``init(restoring:sum:)``.
    public func savedState(includingSum: Bool = true) -> SecretBytes {
        let withSum = includingSum && !sum.isEmpty
        var w = ByteWriter(
            capacity: 8192 + (withSum ? 4 * sum.count : 0)
                + 200 * config.participantCount * (1 + (shared.isEmpty ? 0 : config.neighbours))
        )
        w.label(Self.stateLabel)
        w.lengthPrefixed(config.encoded)
        w.u8(phase.rawValue)
        w.bool(session != nil)
        w.u32(UInt32(advertised.count))
        for (_, entry) in advertised.sorted(by: { $0.key < $1.key }) { entry.write(&w) }
        w.indices(sharers.sorted())
        w.u32(UInt32(shared.count))
        for (_, message) in shared.sorted(by: { $0.key < $1.key }) { w.lengthPrefixed(message.encoded) }
        w.indices(masked.sorted())
        w.bool(withSum)
        if withSum { sum.withUnsafeBufferPointer { w.u32Words($0) } }
        w.u32(UInt32(signatures.count))
        for (signer, signature) in signatures.sorted(by: { $0.key < $1.key }) {
            w.u16(signer)
            w.raw(signature)
        }
        w.u32(UInt32(responses.count))
        for (_, response) in responses.sorted(by: { $0.key < $1.key }) { response.write(&w) }
        return SecretBytes(draining: &w)
    }

    /// Resumes a round from ``savedState(includingSum:)``; `sum` is the running sum when the
    /// state was saved without it (and masked inputs had arrived).
    public init(restoring state: SecretBytes, sum separateSum: [UInt32]? = nil) throws {
        var r = state.withUnsafeBytes { ByteReader(Array($0)) }
        do {
            guard try r.label("state label") == Self.stateLabel else {
                throw WireError(.invalidValue, "not a SecAgg+ server state")
            }
            self.init(config: try RoundConfig(decoding: r.lengthPrefixed("config", maximum: 1 << 20)))
            guard let phase = Phase(rawValue: try r.u8("phase")) else {
                throw WireError(.invalidValue, "unknown phase")
            }
            let hasSession = try r.bool("session")
            for _ in 0..<(try r.count("advertised")) {
                let entry = try KeyList.Entry(&r)
                advertised[entry.index] = entry
            }
            if hasSession {
                session = try Session(
                    config: config,
                    keys: KeyList(
                        configDigest: config.digest,
                        entries: advertised.keys.sorted().compactMap { advertised[$0] }
                    )
                )
            }
            sharers = Set(try r.indices("sharers"))
            for _ in 0..<(try r.count("shared")) {
                let message = try ShareKeys(decoding: r.lengthPrefixed("share keys", maximum: 1 << 24))
                guard sharers.contains(message.sender) else {
                    throw WireError(.invalidValue, "shares from participant \(message.sender), who is not a sharer")
                }
                shared[message.sender] = message
            }
            masked = Set(try r.indices("masked"))
            if try r.bool("sum included") {
                sum = try r.u32Words(config.wordCount, "sum")
            } else if let separateSum {
                guard separateSum.count == config.wordCount else {
                    throw WireError(
                        .invalidValue,
                        "the running sum has \(separateSum.count) words, not \(config.wordCount)"
                    )
                }
                sum = separateSum
            }
            guard masked.isEmpty || !sum.isEmpty else {
                throw WireError(
                    .invalidValue,
                    "\(masked.count) masked inputs were received but there is no running sum"
                )
            }
            for _ in 0..<(try r.count("signatures")) {
                signatures[try r.u16("signer")] = try r.fixed(Ed25519.signatureByteCount, "signature")
            }
            for _ in 0..<(try r.count("responses")) {
                let response = try UnmaskResponse(&r)
                responses[response.sender] = response
            }
            try r.finish()
            self.phase = phase
            if phase.rawValue >= Phase.checking.rawValue {
                survivors = masked.sorted()
                dropped = sharers.filter { !masked.contains($0) }.sorted()
            }
        } catch let error as SecAggError where error.code != .malformed {
            throw error
        } catch {
            throw SecAggError(.malformed, "the saved server state is refused: \(error)")
        }
    }

    // MARK: Helpers

    private func expect(_ wanted: Phase, _ what: String) throws {
        guard phase == wanted else {
            throw SecAggError(.wrongPhase, "\(what) has no place in phase \(phase)")
        }
    }

    /// The session, after checking the phase and, when given, the message's session id.
    private func open(_ wanted: Phase, _ what: String, _ id: [UInt8]?) throws -> Session {
        try expect(wanted, what)
        guard let session else { throw SecAggError(.wrongPhase, "\(what) has no place before the key list") }
        if let id, id != session.id {
            throw SecAggError(
                .wrongSession,
                "\(what) belongs to another session (round, federation or key list): refused"
            )
        }
        return session
    }

    private mutating func require(_ count: Int, _ needed: Int, _ what: String) throws {
        guard count >= needed else {
            phase = .aborted
            throw SecAggError(
                .aborted,
                "only \(count) participants \(what); the round needs \(needed) and aborts"
            )
        }
    }
}
