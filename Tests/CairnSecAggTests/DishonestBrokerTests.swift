import CairnCrypto
import CairnSIMD
import CairnWire
import Testing

@testable import CairnSecAgg

/// An honest client against a lying broker: every refusal, with its reason.
@Suite struct DishonestBrokerTests {
    let parameters = RoundParameters(neighbours: 4, threshold: 3, signatureThreshold: 4)

    /// Participant 0's neighbours that are survivors.
    private func neighbour(of i: UInt16, in h: Harness) throws -> UInt16 {
        let delivery = try #require(h.deliveries[i])
        return try #require(delivery.shares.first?.peer)
    }

    @Test func bothSharesInOneRequest() throws {
        var h = try Harness(n: 6, parameters: parameters)
        try h.toUnmasking()
        let request = try #require(h.unmask)
        let v = try neighbour(of: 0, in: h)
        let lying = UnmaskRequest(
            session: request.session,
            survivors: request.survivors,
            dropped: (request.dropped + [v]).sorted(),
            signatures: request.signatures
        )
        expectRefusal(
            .bothShares,
            "asked for both shares of participant \(v): it is listed as a survivor and as dropped"
        ) {
            _ = try h.clients[0].unmask(lying)
        }
        // Nothing was revealed: the honest request is still answered.
        #expect(try h.clients[0].unmask(request).shares.allSatisfy { $0.kind == .selfMask })
    }

    @Test func bothSharesAcrossTwoRequestsEvenAfterACrash() throws {
        var h = try Harness(n: 6, parameters: parameters)
        try h.toUnmasking()
        let request = try #require(h.unmask)
        let v = try neighbour(of: 0, in: h)
        let first = try h.clients[0].unmask(request)
        #expect(first.shares.contains { $0.peer == v && $0.kind == .selfMask })
        // The broker now claims v dropped, with a survivor set without v.
        let second = UnmaskRequest(
            session: request.session,
            survivors: request.survivors.filter { $0 != v },
            dropped: (request.dropped + [v]).sorted(),
            signatures: request.signatures
        )
        let message = "asked for the mask-key share of participant \(v) after revealing its self-mask share"
        expectRefusal(.bothShares, message) { _ = try h.clients[0].unmask(second) }
        // The same after a crash and restore from the saved state.
        var restored = try SecAggClient(restoring: h.clients[0].savedState(), identity: h.keys[0])
        expectRefusal(.bothShares, message) { _ = try restored.unmask(second) }
        #expect(try restored.unmask(request).encoded == first.encoded)
    }

    @Test func unsignedOrSubstitutedKeys() throws {
        // Full SecAgg (k = n − 1): every entry is participant 0's neighbour, so it checks every
        // signature whatever ring the (random) keys make.
        var h = try Harness(n: 6, parameters: RoundParameters(neighbours: 5, threshold: 3, signatureThreshold: 4))
        try h.advertise()
        let list = try #require(h.keyList)
        func replacing(_ index: Int, _ entry: KeyList.Entry) -> KeyList {
            var entries = list.entries
            entries[index] = entry
            return KeyList(configDigest: list.configDigest, entries: entries)
        }
        let e = list.entries[2]
        let reason =
            "the round keys of participant 2 carry no valid signature from its identity (substituted, or replayed from another round)"
        // A flipped signature bit.
        var signature = e.signature
        signature[5] ^= 1
        expectRefusal(.badSignature, reason) {
            _ = try h.clients[0].shareKeys(
                replacing(2, .init(index: 2, encryptionKey: e.encryptionKey, maskKey: e.maskKey, signature: signature))
            )
        }
        // The broker's own mask key in place of participant 2's.
        let substitute = try X25519.PrivateKey().publicKey
        expectRefusal(.badSignature, reason) {
            _ = try h.clients[0].shareKeys(
                replacing(
                    2,
                    .init(index: 2, encryptionKey: e.encryptionKey, maskKey: substitute, signature: e.signature)
                )
            )
        }
        // Participant 3's keys and signature presented as participant 2's.
        let other = list.entries[3]
        expectRefusal(.badSignature, "participant 3 advertises a key that another entry holds") {
            _ = try h.clients[0].shareKeys(
                replacing(
                    2,
                    .init(
                        index: 2,
                        encryptionKey: other.encryptionKey,
                        maskKey: other.maskKey,
                        signature: other.signature
                    )
                )
            )
        }
        // The client itself left out.
        expectRefusal(.badSignature, "the key list leaves out this participant (0)") {
            _ = try h.clients[0].shareKeys(
                KeyList(configDigest: list.configDigest, entries: Array(list.entries.dropFirst()))
            )
        }
        // Entries out of order or repeated (a list built in memory; the decoder refuses them too).
        expectRefusal(.malformed, "the key list is not in strictly ascending roster order") {
            _ = try h.clients[0].shareKeys(replacing(3, list.entries[2]))
        }
        // Nothing was accepted: the honest list still works.
        #expect(try h.clients[0].shareKeys(list).shares.count == 5)
    }

    /// A participant checks its neighbours' advertised keys only: a forged entry is refused by
    /// every participant it would neighbour, and left unchecked by the others, who use none of its keys.
    @Test func forgedKeysRefusedByTheirNeighbours() throws {
        var h = try Harness(n: 8, parameters: RoundParameters(neighbours: 2, threshold: 2, signatureThreshold: 5))
        try h.advertise()
        let list = try #require(h.keyList)
        var entries = list.entries
        var signature = entries[2].signature
        signature[9] ^= 1
        entries[2] = .init(
            index: 2,
            encryptionKey: entries[2].encryptionKey,
            maskKey: entries[2].maskKey,
            signature: signature
        )
        let forged = KeyList(configDigest: list.configDigest, entries: entries)
        let session = try Session(config: h.config, keys: forged)
        var refused = 0
        for i in [0, 1, 3, 4, 5, 6, 7] {
            if session.areNeighbours(UInt16(i), 2) {
                refused += 1
                expectRefusal(
                    .badSignature,
                    "the round keys of participant 2 carry no valid signature from its identity (substituted, or replayed from another round)"
                ) { _ = try h.clients[i].shareKeys(forged) }
            } else {
                let message = try h.clients[i].shareKeys(forged)
                #expect(!message.shares.contains { $0.peer == 2 })
            }
        }
        #expect(refused == 2)
    }

    @Test func inconsistentOrSmallSurvivorSets() throws {
        var h = try Harness(n: 6, parameters: parameters)
        try h.advertise()
        try h.share()
        try h.mask()
        let request = try #require(h.consistency)
        let session = request.session
        expectRefusal(.inconsistentSurvivors, "the survivor set has 3 members, fewer than the 4 the thresholds need") {
            _ = try h.clients[0].signSurvivors(ConsistencyRequest(session: session, survivors: [0, 1, 2]))
        }
        expectRefusal(.inconsistentSurvivors, "survivor 9 never advertised keys") {
            _ = try h.clients[0].signSurvivors(ConsistencyRequest(session: session, survivors: [0, 1, 2, 3, 9]))
        }
        let signature = try h.clients[0].signSurvivors(request)
        try h.server.receive(signature)
        expectRefusal(.inconsistentSurvivors, "this participant already signed a different survivor set") {
            _ = try h.clients[0].signSurvivors(
                ConsistencyRequest(session: session, survivors: Array(request.survivors.dropLast()))
            )
        }
        for i in 1..<6 { try h.server.receive(h.clients[i].signSurvivors(request)) }
        let unmask = try h.server.closeChecking()
        // Unmasking with another survivor set than the one signed.
        expectRefusal(.inconsistentSurvivors, "the survivor set differs from the one this participant signed") {
            _ = try h.clients[0].unmask(
                UnmaskRequest(
                    session: session,
                    survivors: Array(unmask.survivors.dropLast()),
                    dropped: [],
                    signatures: unmask.signatures
                )
            )
        }
        // A forged signature, then too few signatures.
        var forged = unmask.signatures
        var bytes = forged[1].signature
        bytes[0] ^= 0x80
        forged[1] = .init(signer: forged[1].signer, signature: bytes)
        expectRefusal(
            .badSignature,
            "the signature of participant \(forged[1].signer) on the survivor set does not verify"
        ) {
            _ = try h.clients[0].unmask(
                UnmaskRequest(session: session, survivors: unmask.survivors, dropped: [], signatures: forged)
            )
        }
        // A forged signature after the first `T`: not checked, since `T` valid ones already make
        // the set the only one an honest participant accepts.
        var extra = unmask.signatures
        #expect(extra.count == 6)
        var last = extra[5].signature
        last[0] ^= 0x80
        extra[5] = .init(signer: extra[5].signer, signature: last)
        var probe = try SecAggClient(restoring: h.clients[0].savedState(), identity: h.keys[0])
        _ = try probe.unmask(
            UnmaskRequest(session: session, survivors: unmask.survivors, dropped: [], signatures: extra)
        )
        // One valid signature repeated is not `T` signatures.
        let repeated = Array(repeating: unmask.signatures[0], count: 4)
        expectRefusal(.malformed, "the survivor-set signatures are not strictly ascending by signer") {
            _ = try h.clients[0].unmask(
                UnmaskRequest(session: session, survivors: unmask.survivors, dropped: [], signatures: repeated)
            )
        }
        expectRefusal(.badSignature, "the survivor set carries 3 signatures; 4 are needed") {
            _ = try h.clients[0].unmask(
                UnmaskRequest(
                    session: session,
                    survivors: unmask.survivors,
                    dropped: [],
                    signatures: Array(unmask.signatures.prefix(3))
                )
            )
        }
    }

    /// A survivor that is a neighbour but never sent its shares cannot have masked its input.
    @Test func survivorThatSentNoShares() throws {
        var h = try Harness(n: 6, parameters: parameters)
        try h.advertise()
        let list = try #require(h.keyList)
        var shares: [ShareKeys] = []
        for i in 0..<6 { shares.append(try h.clients[i].shareKeys(list)) }
        for message in shares { try h.server.receive(message) }
        let deliveries = try h.server.closeSharing()
        // The broker withholds one neighbour's share from participant 0, then lists it as a survivor.
        let full = deliveries[0]
        let withheld = try #require(full.shares.first?.peer)
        let partial = ShareDelivery(session: full.session, recipient: 0, shares: Array(full.shares.dropFirst()))
        _ = try h.clients[0].maskInput(partial, input: h.inputs[0], sampleCount: 1)
        expectRefusal(
            .inconsistentSurvivors,
            "survivor \(withheld) is a neighbour that sent this participant no shares, so it cannot have masked its input"
        ) {
            _ = try h.clients[0].signSurvivors(
                ConsistencyRequest(session: full.session, survivors: [0, 1, 2, 3, 4, 5])
            )
        }
    }

    @Test func replaysFromAnotherRoundFederationOrSession() throws {
        var a = try Harness(n: 6, parameters: parameters, round: 7)
        var b = try Harness(n: 6, parameters: parameters, round: 8)
        var c = try Harness(n: 6, parameters: parameters, federation: "clinics")
        var roundSeven = try SecAggClient(config: a.config, identity: a.keys[1])
        let advertisement = try roundSeven.advertise()
        // Round 7's advertisement offered to round 8's broker.
        expectRefusal(.wrongSession, "AdvertiseKeys for another round configuration: refused as a replay") {
            try b.server.receive(advertisement)
        }
        try a.toUnmasking()
        try b.advertise()
        try c.advertise()
        let replay =
            "the key list is for another round configuration (federation, round or roster): refused as a replay"
        expectRefusal(.wrongSession, replay) { _ = try b.clients[0].shareKeys(a.keyList!) }
        expectRefusal(.wrongSession, replay) { _ = try c.clients[0].shareKeys(a.keyList!) }
        // Round 7's signed keys relabelled with round 8's digest: the signature no longer verifies.
        let relabelled = KeyList(configDigest: b.config.digest, entries: a.keyList!.entries)
        expectRefusal(.badSignature, "the key list replaces this participant's own round keys") {
            _ = try b.clients[0].shareKeys(relabelled)
        }
        // Later messages of round 7's session offered to round 8's clients, mid-round.
        try b.share()
        expectRefusal(
            .wrongSession,
            "the ShareDelivery belongs to another session (round, federation or key list): refused"
        ) { _ = try b.clients[0].maskInput(a.deliveries[0]!, input: b.inputs[0], sampleCount: 1) }
        try b.mask()
        expectRefusal(
            .wrongSession,
            "the ConsistencyRequest belongs to another session (round, federation or key list): refused"
        ) { _ = try b.clients[0].signSurvivors(a.consistency!) }
        try b.check()
        expectRefusal(
            .wrongSession,
            "the UnmaskRequest belongs to another session (round, federation or key list): refused"
        ) {
            _ = try b.clients[0].unmask(a.unmask!)
        }
        // Round 7's encrypted shares re-addressed under round 8's session id do not open.
        var d = try Harness(n: 6, parameters: parameters, round: 8)
        try d.advertise()
        try d.share()
        let own = d.deliveries[0]!
        let forged = ShareDelivery(
            session: own.session,
            recipient: 0,
            shares: own.shares.map { mine in a.deliveries[0]!.shares.first { $0.peer == mine.peer } ?? mine }
        )
        let peer = try #require(
            forged.shares.first { s in a.deliveries[0]!.shares.contains { $0.peer == s.peer } }?.peer
        )
        expectRefusal(.badShare, "the share from participant \(peer) does not open (tampered, misrouted or replayed)") {
            _ = try d.clients[0].maskInput(forged, input: d.inputs[0], sampleCount: 1)
        }
        // A round 7 signature offered to round 7's broker is accepted only once.
        expectRefusal(.wrongPhase, "ConsistencySignature has no place in phase unmasking") {
            try a.server.receive(a.signatures[0])
        }
    }
}
