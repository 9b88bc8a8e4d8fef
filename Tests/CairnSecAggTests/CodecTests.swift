import CairnCrypto
import CairnSIMD
import CairnWire
import Testing

@testable import CairnSecAgg

/// Every message decoder: canonical round trip, and clean refusals of truncated, extended,
/// mistyped and oversized input.
@Suite struct CodecTests {
    /// One encoded message of each type from a real round, with a decode-then-encode function.
    static func samples() throws -> [(MessageType, [UInt8], ([UInt8]) throws -> [UInt8])] {
        var h = try Harness(n: 6, parameters: RoundParameters(neighbours: 4, threshold: 3, signatureThreshold: 4))
        let advertise = try h.clients[0].advertise()
        try h.advertise()
        try h.share()
        try h.mask()
        let masked = try h.clients[1].maskInput(h.deliveries[1]!, input: h.inputs[1], sampleCount: 2)
        try h.check()
        let response = try h.clients[0].unmask(h.unmask!)
        return [
            (.advertiseKeys, advertise.encoded, { try AdvertiseKeys(decoding: $0).encoded }),
            (.keyList, h.keyList!.encoded, { try KeyList(decoding: $0).encoded }),
            (.shareKeys, try h.clients[2].shareKeys(h.keyList!).encoded, { try ShareKeys(decoding: $0).encoded }),
            (.shareDelivery, h.deliveries[0]!.encoded, { try ShareDelivery(decoding: $0).encoded }),
            (.maskedInput, masked.encoded, { try MaskedInput(decoding: $0).encoded }),
            (.consistencyRequest, h.consistency!.encoded, { try ConsistencyRequest(decoding: $0).encoded }),
            (.consistencySignature, h.signatures[0].encoded, { try ConsistencySignature(decoding: $0).encoded }),
            (.unmaskRequest, h.unmask!.encoded, { try UnmaskRequest(decoding: $0).encoded }),
            (.unmaskResponse, response.encoded, { try UnmaskResponse(decoding: $0).encoded }),
        ]
    }

    @Test func roundTripTruncationTrailingAndType() throws {
        for (type, bytes, codec) in try Self.samples() {
            #expect(try codec(bytes) == bytes, "\(type.name) round trip")
            for length in 0..<bytes.count {
                do {
                    _ = try codec(Array(bytes.prefix(length)))
                    Issue.record("\(type.name) cut to \(length) bytes was accepted")
                } catch let error as SecAggError {
                    #expect(error.code == .malformed)
                    #expect(error.message.hasPrefix("\(type.name) refused: "))
                }
            }
            expectRefusal(.malformed, "\(type.name) refused: 1 unexpected bytes after the end at offset \(bytes.count)")
            {
                _ = try codec(bytes + [0])
            }
            var retyped = bytes
            retyped[2] = type.rawValue % 9 + 1
            let other = MessageType(rawValue: retyped[2])!.name
            expectRefusal(.malformed, "\(type.name) refused: type: this is \(other), not \(type.name)") {
                _ = try codec(retyped)
            }
            var reversioned = bytes
            reversioned[0] = 2
            expectRefusal(.malformed, "\(type.name) refused: version: wire version 2; this build implements 1") {
                _ = try codec(reversioned)
            }
        }
    }

    /// A count above the maximum is refused before anything is allocated.
    @Test func oversizedCountsRefused() throws {
        let samples = try Self.samples()
        func withCount(_ type: MessageType, at offset: Int, _ value: UInt32) -> [UInt8] {
            var bytes = samples.first { $0.0 == type }!.1
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<offset + 4, with: $0) }
            return bytes
        }
        expectRefusal(.malformed, "KeyList refused: entries: 10001 exceeds 10000") {
            _ = try KeyList(decoding: withCount(.keyList, at: 35, 10_001))
        }
        expectRefusal(.malformed, "ShareKeys refused: shares: 4294967295 exceeds 10000") {
            _ = try ShareKeys(decoding: withCount(.shareKeys, at: 37, .max))
        }
        expectRefusal(.malformed, "MaskedInput refused: word count: 268435458 is outside 2…268435457") {
            _ = try MaskedInput(decoding: withCount(.maskedInput, at: 37, (1 << 28) + 2))
        }
        expectRefusal(.malformed, "ConsistencyRequest refused: survivors: 70000 exceeds 10000") {
            _ = try ConsistencyRequest(decoding: withCount(.consistencyRequest, at: 35, 70_000))
        }
    }

    /// Lists must be strictly ascending: one value has one encoding.
    @Test func unorderedListsRefused() throws {
        var request = ConsistencyRequest(session: [UInt8](repeating: 0, count: 32), survivors: [1, 2, 3]).encoded
        request.swapAt(39, 41)
        expectRefusal(.malformed, "ConsistencyRequest refused: survivors: index 1 is not above the one before it") {
            _ = try ConsistencyRequest(decoding: request)
        }
        var response = try Self.samples().first { $0.0 == .unmaskResponse }!.1
        response[43] = 7  // version, type, session, sender and count take 41 bytes; the first peer 2 more
        expectRefusal(.malformed, "UnmaskResponse refused: kind: 7 is neither 0 (self mask) nor 1 (mask key)") {
            _ = try UnmaskResponse(decoding: response)
        }
    }
}
