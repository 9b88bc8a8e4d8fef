import CairnWire
import Testing

@testable import CairnCrypto

/// Shamir t-of-n: every t-subset tried reconstructs, t − 1 shares do not, bad shares are refused.
@Suite struct ShamirTests {
    /// A random subset of `count` of `shares`, by a partial Fisher–Yates shuffle.
    private func subset(_ shares: [Shamir.Share], _ count: Int) -> [Shamir.Share] {
        var pool = shares
        for i in 0..<count {
            let j = i + Int(SecureRandom.uniform(UInt32(pool.count - i)))
            pool.swapAt(i, j)
        }
        return Array(pool.prefix(count))
    }

    @Test(arguments: [
        (1, 1), (1, 5), (2, 2), (2, 3), (3, 5), (5, 10), (17, 50), (51, 100), (100, 200),
        (2, 1000), (334, 1000), (667, 1000), (1000, 1000),
    ])
    func everyTriedThresholdSubsetReconstructsAndFewerDoNot(_ t: Int, _ n: Int) throws {
        let secret = SecretBytes.random(count: 32)
        let shares = try Shamir.split(secret, threshold: t, shareCount: n)
        #expect(shares.map(\.index) == (1...n).map { UInt16($0) })
        #expect(shares.allSatisfy { $0.value.count == 64 })
        let tries = n <= 10 ? 8 : 3
        var subsets = [Array(shares.prefix(t)), Array(shares.suffix(t))]
        subsets += (0..<tries).map { _ in subset(shares, t) }
        for chosen in subsets {
            #expect(try Shamir.combine(chosen, threshold: t).constantTimeEquals(secret))
        }
        // More than t shares: the first t are used, and the answer is the same.
        #expect(try Shamir.combine(subset(shares, n), threshold: t).constantTimeEquals(secret))
        // t − 1 shares are refused for threshold t ...
        if t > 1 {
            let fewer = subset(shares, t - 1)
            expectCryptoError(.notEnoughShares) { try Shamir.combine(fewer, threshold: t) }
            // ... and interpolating them as if the threshold were t − 1 does not give the secret.
            do {
                let wrong = try Shamir.combine(fewer, threshold: t - 1)
                #expect(!wrong.constantTimeEquals(secret))
            } catch let error as CryptoError {
                #expect(error.code == .inconsistentShares)
            }
        }
    }

    @Test func coefficientsAreFreshForEverySplit() throws {
        let secret = SecretBytes.random(count: 32)
        let first = try Shamir.split(secret, threshold: 3, shareCount: 5)
        let second = try Shamir.split(secret, threshold: 3, shareCount: 5)
        for (a, b) in zip(first, second) { #expect(!a.value.constantTimeEquals(b.value)) }
        // With threshold 1 every share is the secret's limbs themselves, so it is deterministic.
        let copies = try Shamir.split(secret, threshold: 1, shareCount: 3)
        #expect(copies[0].value.constantTimeEquals(copies[2].value))
    }

    @Test func indexZeroDuplicatesAndBadParametersAreRefused() throws {
        let secret = SecretBytes.random(count: 32)
        expectCryptoError(.invalidShare) { try Shamir.split(secret, threshold: 2, indices: [1, 0, 3]) }
        expectCryptoError(.duplicateShareIndex) { try Shamir.split(secret, threshold: 2, indices: [1, 2, 2]) }
        expectCryptoError(.invalidThreshold) { try Shamir.split(secret, threshold: 0, shareCount: 3) }
        expectCryptoError(.invalidThreshold) { try Shamir.split(secret, threshold: 4, shareCount: 3) }
        expectCryptoError(.invalidThreshold) { try Shamir.split(secret, threshold: 1, shareCount: 65_536) }
        expectCryptoError(.invalidShare) {
            try Shamir.split(SecretBytes.random(count: 31), threshold: 1, shareCount: 3)
        }

        let shares = try Shamir.split(secret, threshold: 3, indices: [7, 300, 65_535, 9])
        #expect(try Shamir.combine([shares[3], shares[1], shares[2]], threshold: 3).constantTimeEquals(secret))
        expectCryptoError(.duplicateShareIndex) { try Shamir.combine([shares[0], shares[1], shares[0]], threshold: 3) }
        expectCryptoError(.invalidShare) { try Shamir.Share(index: 0, value: shares[0].value) }
        expectCryptoError(.invalidShare) { try Shamir.Share(index: 1, value: SecretBytes.random(count: 63)) }
        // A value that is not reduced modulo L (all 0xff) is refused when received.
        expectCryptoError(.invalidShare) {
            try Shamir.Share(index: 1, value: SecretBytes(copying: [UInt8](repeating: 0xff, count: 64)))
        }
        // A received copy of a genuine share is accepted and works.
        let received = try Shamir.Share(index: shares[0].index, value: SecretBytes(copying: reveal(shares[0].value)))
        #expect(try Shamir.combine([received, shares[1], shares[2]], threshold: 3).constantTimeEquals(secret))
    }

    @Test func sharesOfDifferentSecretsDoNotCombine() throws {
        let a = try Shamir.split(SecretBytes.random(count: 32), threshold: 3, shareCount: 5)
        let b = try Shamir.split(SecretBytes.random(count: 32), threshold: 3, shareCount: 5)
        // Mixed shares interpolate to a random field element, which is not a 32-byte secret
        // (its upper limb halves are not zero) except with probability about 2^-256.
        expectCryptoError(.inconsistentShares) { try Shamir.combine([a[0], a[1], b[2]], threshold: 3) }
    }
}
