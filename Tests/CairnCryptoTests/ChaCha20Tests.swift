import Testing

@testable import CairnCrypto

@Suite("ChaCha20 keystream (RFC 8439)")
struct ChaCha20Tests {
    let zeroKey = try! ChaCha20Keystream(seed: SecretBytes(copying: [UInt8](repeating: 0, count: 32)))

    func keystream(_ k: ChaCha20Keystream, bytes: Int, fromBlock block: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: bytes)
        try out.withUnsafeMutableBytes { try k.fill($0, fromBlock: block) }
        return out
    }

    @Test("RFC 8439 A.1 test vectors 1 and 2: zero key, zero nonce, block counter 0 and 1")
    func knownAnswers() throws {
        let block0 = hex(
            """
            76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7
            da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586
            """
        )
        let block1 = hex(
            """
            9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed
            29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f
            """
        )
        #expect(try keystream(zeroKey, bytes: 64, fromBlock: 0) == block0)
        #expect(try keystream(zeroKey, bytes: 64, fromBlock: 1) == block1)
        #expect(try keystream(zeroKey, bytes: 128, fromBlock: 0) == block0 + block1)
        // A partial block is the prefix of that block.
        #expect(try keystream(zeroKey, bytes: 7, fromBlock: 1) == Array(block1.prefix(7)))
    }

    @Test("Starting at any block equals the same bytes of the whole keystream")
    func blockOffsets() throws {
        let k = try ChaCha20Keystream(seed: SecretBytes.random(count: 32))
        let whole = try keystream(k, bytes: 64 * 300, fromBlock: 0)
        for block in [1, 2, 17, 255, 299] as [UInt64] {
            let tail = try keystream(k, bytes: 64 * (300 - Int(block)), fromBlock: block)
            #expect(tail == Array(whole[(64 * Int(block))...]))
        }
    }

    @Test("The last block of the 32-bit counter is reachable; one byte past it is refused")
    func exhaustion() throws {
        let last = ChaCha20Keystream.blockCount - 1
        #expect(try keystream(zeroKey, bytes: 64, fromBlock: last).count == 64)
        #expect(try keystream(zeroKey, bytes: 0, fromBlock: ChaCha20Keystream.blockCount).isEmpty)
        expectCryptoError(.keystreamExhausted) { try keystream(zeroKey, bytes: 65, fromBlock: last) }
        expectCryptoError(.keystreamExhausted) {
            try keystream(zeroKey, bytes: 1, fromBlock: ChaCha20Keystream.blockCount)
        }
        expectCryptoError(.keystreamExhausted) { try keystream(zeroKey, bytes: 1, fromBlock: .max) }
    }

    @Test("A seed has exactly 32 bytes")
    func seedLength() {
        for count in [0, 16, 31, 33, 64] {
            expectCryptoError(.invalidKey) { try ChaCha20Keystream(seed: SecretBytes.random(count: count)) }
        }
    }
}
