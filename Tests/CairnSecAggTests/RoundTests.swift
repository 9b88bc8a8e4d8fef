import CairnCrypto
import CairnSIMD
import CairnWire
import Testing

@testable import CairnSecAgg

/// Whole rounds: the unmasked result is the exact modular sum of the survivors' inputs.
@Suite struct RoundTests {
    /// Random rounds, n up to 200, dropouts spread over every phase up to the tolerance chosen
    /// by the parameter rule (10% dropouts, 5% corrupt where n allows it).
    @Test(arguments: [3, 4, 9, 23, 57, 112, 200] + (0..<5).map { Int(words(1, seed: 77 + UInt64($0))[0] % 198) + 3 })
    func exactSumWithDropoutsAtEveryPhase(_ n: Int) throws {
        let fractions = n >= 20 ? (0.1, 0.05) : n >= 9 ? (0.1, 0.0) : (0.0, 0.0)
        let parameters = try RoundParameters.choose(
            participants: n,
            dropoutFraction: fractions.0,
            corruptFraction: fractions.1
        )
        let keys = identities(n, salt: UInt8(n & 0xff))
        let config = try config(keys, parameters, dimension: 33)
        let inputs = (0..<n).map { words(33, seed: UInt64(n * 1000 + $0)) }
        let counts = (0..<n).map { UInt32($0 * 17 % 1000) }
        let tolerated = Int((fractions.0 * Double(n) - 1e-9).rounded(.up))
        // Spread the tolerated dropouts over the five phases, round-robin, on pseudorandom participants.
        let order = words(n, seed: UInt64(n)).enumerated().sorted { $0.element < $1.element }.map(\.offset)
        var dropouts: [Int: RoundPhase] = [:]
        for (k, i) in order.prefix(tolerated).enumerated() { dropouts[i] = RoundPhase.allCases[k % 5] }
        let outcome = try SecAggSimulation(config: config, identities: keys).run(
            inputs: inputs,
            sampleCounts: counts,
            dropouts: dropouts
        )
        // Dropping at ConsistencyCheck or Unmasking comes after the input is in: still counted.
        let counted = (0..<n).filter { dropouts[$0].map { $0 >= .consistencyCheck } ?? true }
        let (sum, total) = expectedSum(inputs, counts, counted)
        #expect(outcome.result.survivors == counted.map { UInt16($0) })
        #expect(outcome.result.sum == sum)
        #expect(outcome.result.sampleCount == total)
    }

    /// Full SecAgg (k = n − 1), with dropouts after ShareKeys and in Unmasking.
    @Test func fullSecAgg() throws {
        let n = 40
        let keys = identities(n)
        let config = try config(keys, RoundParameters(neighbours: n - 1, threshold: 25, signatureThreshold: 25))
        let inputs = (0..<n).map { words(37, seed: UInt64($0)) }
        let counts = (0..<n).map { UInt32($0) }
        let dropouts: [Int: RoundPhase] = [3: .maskedInput, 11: .maskedInput, 12: .unmasking, 30: .shareKeys]
        let outcome = try SecAggSimulation(config: config, identities: keys).run(
            inputs: inputs,
            sampleCounts: counts,
            dropouts: dropouts
        )
        let counted = (0..<n).filter { ![3, 11, 30].contains($0) }
        let (sum, total) = expectedSum(inputs, counts, counted)
        #expect(outcome.result.sum == sum)
        #expect(outcome.result.sampleCount == total)
        // Each of 37 survivors' self masks, plus the pair masks of the two who shared and then
        // dropped with each of the 37 survivors.
        #expect(outcome.unmaskingExpansions == 37 + 2 * 37)
    }

    /// A real update: floats quantised, summed securely, dequantised as a weighted average.
    @Test func quantisedAverage() throws {
        let n = 12
        let keys = identities(n)
        let config = try config(keys, RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 7), dimension: 5)
        let deltas: [[Float]] = (0..<n).map { i in (0..<5).map { Float(i) * 0.25 - Float($0) } }
        var inputs: [[UInt32]] = []
        for (i, delta) in deltas.enumerated() {
            var q = [UInt32](repeating: 0, count: 5)
            try delta.withUnsafeBufferPointer { x in
                try q.withUnsafeMutableBufferPointer { out in
                    try Quantisation.quantise(
                        x,
                        into: out,
                        parameters: config.quantisation,
                        rounding: ChaCha20Keystream(seed: SecretBytes(copying: [UInt8](repeating: UInt8(i), count: 32)))
                    )
                }
            }
            inputs.append(q)
        }
        let outcome = try SecAggSimulation(config: config, identities: keys).run(
            inputs: inputs,
            sampleCounts: [UInt32](repeating: 1, count: n)
        )
        // Every value is a multiple of 1/1024 within the clip bound, so quantisation is exact.
        var mean = [Float](repeating: 0, count: 5)
        try outcome.result.sum.withUnsafeBufferPointer { q in
            try mean.withUnsafeMutableBufferPointer {
                try Quantisation.dequantise(
                    q,
                    into: $0,
                    parameters: config.quantisation,
                    dividingBy: Double(outcome.result.sampleCount)
                )
            }
        }
        let expected: [Float] = (0..<5).map { j in deltas.map { max(-4, min(4, $0[j])) }.reduce(0, +) / Float(n) }
        #expect(mean == expected)
    }

    /// Beyond the tolerance the round aborts with a clear error, and nobody revealed both shares
    /// of any participant.
    @Test func beyondToleranceAborts() throws {
        let parameters = RoundParameters(neighbours: 6, threshold: 5, signatureThreshold: 6)
        // Too few advertise.
        var h = try Harness(n: 10, parameters: parameters)
        expectRefusal(.aborted, "only 5 participants advertised keys; the round needs 6 and aborts") {
            try h.advertise(absent: [0, 1, 2, 3, 4])
        }
        #expect(h.server.phase == .aborted)
        // Too few masked inputs.
        h = try Harness(n: 10, parameters: parameters)
        try h.advertise()
        try h.share()
        expectRefusal(.aborted, "only 5 participants sent masked inputs; the round needs 6 and aborts") {
            try h.mask(absent: [1, 3, 5, 7, 9])
        }
        // Too few answers in unmasking: a survivor's self-mask seed cannot be rebuilt.
        h = try Harness(n: 10, parameters: parameters)
        try h.toUnmasking()
        var revealed: [UInt16: Set<ShareKind>] = [:]
        for i in [0, 1, 2, 3] {
            let response = try h.clients[i].unmask(h.unmask!)
            for share in response.shares { revealed[share.peer, default: []].insert(share.kind) }
            try h.server.receive(response)
        }
        do {
            _ = try h.server.finish()
            Issue.record("finish should abort")
        } catch let error as SecAggError {
            #expect(error.code == .aborted)
            #expect(error.message.hasPrefix("the self-mask seed of participant "))
            #expect(error.message.hasSuffix(" shares; 5 are needed: the round aborts"))
        }
        #expect(h.server.phase == .aborted)
        #expect(revealed.values.allSatisfy { $0 == [.selfMask] })
    }

    /// A client and the server saved and restored between every step still give the exact sum.
    @Test func saveAndRestoreBetweenEverySteps() throws {
        var h = try Harness(n: 8, parameters: RoundParameters(neighbours: 6, threshold: 4, signatureThreshold: 5))
        func crash(_ i: Int) throws {
            h.clients[i] = try SecAggClient(restoring: h.clients[i].savedState(), identity: h.keys[i])
        }
        // Each crash restores the server twice: from a state holding the running sum, then from
        // one without it plus the sum kept aside (as the broker stores them).
        func crashServer() throws {
            h.server = try SecAggServer(restoring: h.server.savedState())
            let sum = h.server.withRunningSum { Array($0) }
            h.server = try SecAggServer(
                restoring: h.server.savedState(includingSum: false),
                sum: sum.isEmpty ? nil : sum
            )
        }
        for i in 0..<8 {
            try h.server.receive(h.clients[i].advertise())
            try crash(i)
        }
        try crashServer()
        h.keyList = try h.server.closeAdvertising()
        try crashServer()
        for i in 0..<8 where i != 2 {
            let first = try h.clients[i].shareKeys(h.keyList!)
            try crash(i)
            // A restored client gives the very same shares again.
            #expect(try h.clients[i].shareKeys(h.keyList!) == first)
            try h.server.receive(first)
            try crashServer()
        }
        for d in try h.server.closeSharing() { h.deliveries[d.recipient] = d }
        for i in [0, 1, 3, 4, 5, 6, 7] {
            let masked = try h.clients[i].maskInput(h.deliveries[UInt16(i)]!, input: h.inputs[i], sampleCount: 5)
            try crash(i)
            #expect(try h.clients[i].maskInput(h.deliveries[UInt16(i)]!, input: h.inputs[i], sampleCount: 5) == masked)
            if i != 6 { try h.server.receive(masked) }
            try crashServer()
        }
        let request = try h.server.closeMasking()
        try crashServer()
        // Without its running sum, a state with masked inputs in it is refused, as is a wrong sum.
        let bare = h.server.savedState(includingSum: false)
        let missing = #expect(throws: SecAggError.self) { try SecAggServer(restoring: bare) }
        #expect(
            missing?.message
                == "the saved server state is refused: 6 masked inputs were received but there is no running sum"
        )
        let short = #expect(throws: SecAggError.self) { try SecAggServer(restoring: bare, sum: [1, 2, 3]) }
        #expect(short?.message == "the saved server state is refused: the running sum has 3 words, not 38")
        for i in [0, 1, 3, 4, 5, 7] {
            let signature = try h.clients[i].signSurvivors(request)
            try crash(i)
            try h.server.receive(signature)
            try crashServer()
        }
        let unmask = try h.server.closeChecking()
        for i in [0, 1, 3, 4, 5, 7] {
            let response = try h.clients[i].unmask(unmask)
            try crash(i)
            // After a crash the same request gets the same shares.
            #expect(try h.clients[i].unmask(unmask).encoded == response.encoded)
            try h.server.receive(response)
            try crashServer()
        }
        let result = try h.server.finish()
        let (sum, _) = expectedSum(h.inputs, [UInt32](repeating: 5, count: 8), [0, 1, 3, 4, 5, 7])
        #expect(result.sum == sum)
        #expect(result.sampleCount == 30)
    }
}
