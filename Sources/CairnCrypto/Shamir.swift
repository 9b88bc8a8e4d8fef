internal import CSodium
import CairnWire

/// Shamir secret sharing, t-of-n, of 32-byte secrets over the prime field of the Ed25519 group
/// order L = 2^252 + 27742317777372353535851937790883648493, with libsodium's constant-time
/// scalar arithmetic (`crypto_core_ed25519_scalar_*`).
///
/// A 32-byte secret is split into two 16-byte limbs (little-endian integers below 2^128 < L) and
/// each limb is shared with its own polynomial of degree t − 1 whose other coefficients are fresh
/// random scalars. A share is its index x (1…65535, public) and the two polynomial values at x
/// (64 bytes, secret). Any t shares give the secret back by Lagrange interpolation at 0; t − 1
/// shares give no information about it.
public enum Shamir {
    /// The size of a secret in bytes.
    public static let secretByteCount = 32
    /// The size of a share's value in bytes (two scalars).
    public static let shareValueByteCount = 64
    /// The largest number of shares one secret can be split into.
    public static let maximumShareCount = Int(UInt16.max)

    private static let scalarByteCount = 32
    private static let limbByteCount = 16

    /// One share: a public index and a secret value.
    public struct Share: Sendable {
        /// The evaluation point, 1…65535. Index 0 would be the secret itself and is refused.
        public let index: UInt16
        /// Two canonical little-endian scalars, 64 bytes.
        public let value: SecretBytes

        /// Wraps a share received from elsewhere, refusing index 0 and non-canonical values.
        public init(index: UInt16, value: SecretBytes) throws {
            guard index != 0 else { throw CryptoError(.invalidShare, "share index 0 is not allowed") }
            guard value.count == shareValueByteCount else {
                throw CryptoError(.invalidShare, "a share value has 64 bytes, not \(value.count)")
            }
            guard value.withUnsafeBytes({ isCanonical($0) }) else {
                throw CryptoError(.invalidShare, "share \(index) is not a pair of canonical field elements")
            }
            self.index = index
            self.value = value
        }

        fileprivate init(trustedIndex index: UInt16, value: SecretBytes) {
            self.index = index
            self.value = value
        }
    }

    /// Splits `secret` into shares with indices 1…`shareCount`, any `threshold` of which recover it.
    public static func split(_ secret: SecretBytes, threshold: Int, shareCount: Int) throws -> [Share] {
        guard shareCount >= 1, shareCount <= maximumShareCount else {
            throw CryptoError(.invalidThreshold, "the share count must be 1…\(maximumShareCount), not \(shareCount)")
        }
        return try split(secret, threshold: threshold, indices: (1...shareCount).map { UInt16($0) })
    }

    /// Splits `secret` into one share per index in `indices` (non-zero, distinct).
    public static func split(_ secret: SecretBytes, threshold: Int, indices: [UInt16]) throws -> [Share] {
        ensureSodium()
        guard secret.count == secretByteCount else {
            throw CryptoError(.invalidShare, "a Shamir secret has 32 bytes, not \(secret.count)")
        }
        guard threshold >= 1, threshold <= indices.count else {
            throw CryptoError(.invalidThreshold, "the threshold must be 1…\(indices.count), not \(threshold)")
        }
        try checkIndices(indices)
        // coefficients[limb][k], k = 0 the limb of the secret, k ≥ 1 fresh random scalars.
        let coefficients = SecretBytes(count: 2 * threshold * scalarByteCount) { c in
            let base = c.baseAddress!.assumingMemoryBound(to: UInt8.self)
            secret.withUnsafeBytes { s in
                for limb in 0..<2 {
                    let row = base + limb * threshold * scalarByteCount
                    UnsafeMutableRawPointer(row).copyMemory(
                        from: s.baseAddress! + limb * limbByteCount,
                        byteCount: limbByteCount
                    )
                    for k in 1..<threshold { crypto_core_ed25519_scalar_random(row + k * scalarByteCount) }
                }
            }
        }
        return coefficients.withUnsafeBytes { c in
            let base = c.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return indices.map { index in
                let x = scalar(index)
                let value = SecretBytes(count: shareValueByteCount) { out in
                    let product = UnsafeMutablePointer<UInt8>.allocate(capacity: scalarByteCount)
                    defer {
                        sodium_memzero(product, scalarByteCount)
                        product.deallocate()
                    }
                    for limb in 0..<2 {
                        let row = base + limb * threshold * scalarByteCount
                        let acc = out.baseAddress!.assumingMemoryBound(to: UInt8.self) + limb * scalarByteCount
                        acc.update(from: row + (threshold - 1) * scalarByteCount, count: scalarByteCount)
                        for k in stride(from: threshold - 2, through: 0, by: -1) {  // Horner's rule
                            crypto_core_ed25519_scalar_mul(product, acc, x)
                            crypto_core_ed25519_scalar_add(acc, product, row + k * scalarByteCount)
                        }
                    }
                }
                return Share(trustedIndex: index, value: value)
            }
        }
    }

    /// Recovers the secret from at least `threshold` shares (the first `threshold` are used).
    ///
    /// - Throws: ``CryptoError/Code/notEnoughShares``, ``CryptoError/Code/duplicateShareIndex``,
    ///   ``CryptoError/Code/invalidShare`` (index 0), or ``CryptoError/Code/inconsistentShares``
    ///   when the shares do not interpolate to a 32-byte secret (mixed or corrupted shares).
    public static func combine(_ shares: [Share], threshold: Int) throws -> SecretBytes {
        ensureSodium()
        guard threshold >= 1 else { throw CryptoError(.invalidThreshold, "the threshold must be at least 1") }
        guard shares.count >= threshold else {
            throw CryptoError(.notEnoughShares, "\(shares.count) shares given, \(threshold) needed")
        }
        try checkIndices(shares.map(\.index))
        let used = Array(shares.prefix(threshold))
        let xs = used.map { scalar($0.index) }
        let lambdas = try lagrangeCoefficientsAtZero(xs)

        let sums = SecretBytes(count: 2 * scalarByteCount) { out in
            let acc = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let product = UnsafeMutablePointer<UInt8>.allocate(capacity: scalarByteCount)
            let sum = UnsafeMutablePointer<UInt8>.allocate(capacity: scalarByteCount)
            defer {
                sodium_memzero(product, scalarByteCount)
                sodium_memzero(sum, scalarByteCount)
                product.deallocate()
                sum.deallocate()
            }
            for (share, lambda) in zip(used, lambdas) {
                share.value.withUnsafeBytes { y in
                    let yBase = y.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    for limb in 0..<2 {
                        let a = acc + limb * scalarByteCount
                        crypto_core_ed25519_scalar_mul(product, lambda, yBase + limb * scalarByteCount)
                        crypto_core_ed25519_scalar_add(sum, a, product)
                        a.update(from: sum, count: scalarByteCount)
                    }
                }
            }
        }
        // Each limb must be below 2^128; the check's timing reveals only success or failure.
        let wellFormed = sums.withUnsafeBytes { s in
            sodium_is_zero(s.baseAddress! + limbByteCount, limbByteCount) == 1
                && sodium_is_zero(s.baseAddress! + scalarByteCount + limbByteCount, limbByteCount) == 1
        }
        guard wellFormed else {
            throw CryptoError(.inconsistentShares, "the shares do not belong to one secret (mixed or corrupted shares)")
        }
        return SecretBytes(count: secretByteCount) { out in
            sums.withUnsafeBytes { s in
                out.baseAddress!.copyMemory(from: s.baseAddress!, byteCount: limbByteCount)
                (out.baseAddress! + limbByteCount).copyMemory(
                    from: s.baseAddress! + scalarByteCount,
                    byteCount: limbByteCount
                )
            }
        }
    }

    /// λ_i = Π_{j≠i} x_j / (x_j − x_i), the weights that interpolate at 0. Indices are public.
    private static func lagrangeCoefficientsAtZero(_ xs: [[UInt8]]) throws -> [[UInt8]] {
        let count = xs.count
        var one = [UInt8](repeating: 0, count: scalarByteCount)
        one[0] = 1
        // Π_{j≠i} x_j from prefix and suffix products.
        var prefix = [one]
        for x in xs { prefix.append(mul(prefix.last!, x)) }
        var suffix = [[UInt8]](repeating: one, count: count + 1)
        for i in stride(from: count - 1, through: 0, by: -1) { suffix[i] = mul(xs[i], suffix[i + 1]) }
        var lambdas: [[UInt8]] = []
        lambdas.reserveCapacity(count)
        var difference = [UInt8](repeating: 0, count: scalarByteCount)
        var inverse = [UInt8](repeating: 0, count: scalarByteCount)
        for i in 0..<count {
            var denominator = one
            for j in 0..<count where j != i {
                crypto_core_ed25519_scalar_sub(&difference, xs[j], xs[i])
                denominator = mul(denominator, difference)
            }
            guard crypto_core_ed25519_scalar_invert(&inverse, denominator) == 0 else {
                throw CryptoError(.duplicateShareIndex, "share indices are not distinct")
            }
            lambdas.append(mul(mul(prefix[i], suffix[i + 1]), inverse))
        }
        return lambdas
    }

    private static func mul(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: scalarByteCount)
        crypto_core_ed25519_scalar_mul(&out, a, b)
        return out
    }

    private static func scalar(_ index: UInt16) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: scalarByteCount)
        out[0] = UInt8(index & 0xff)
        out[1] = UInt8(index >> 8)
        return out
    }

    private static func checkIndices(_ indices: [UInt16]) throws {
        var seen = Set<UInt16>()
        for index in indices {
            guard index != 0 else { throw CryptoError(.invalidShare, "share index 0 is not allowed") }
            guard seen.insert(index).inserted else {
                throw CryptoError(.duplicateShareIndex, "share index \(index) appears twice")
            }
        }
    }

    /// Whether both 32-byte halves are reduced modulo L (reduce(v ‖ 0³²) == v, compared in constant time).
    private static func isCanonical(_ value: UnsafeRawBufferPointer) -> Bool {
        var wide = [UInt8](repeating: 0, count: 64)
        var reduced = [UInt8](repeating: 0, count: scalarByteCount)
        defer {
            wide.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
            reduced.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
        }
        var canonical = true
        for limb in 0..<2 {
            let half = UnsafeRawBufferPointer(
                rebasing: value[(limb * scalarByteCount)..<((limb + 1) * scalarByteCount)]
            )
            wide.withUnsafeMutableBytes { $0.copyMemory(from: half) }
            crypto_core_ed25519_scalar_reduce(&reduced, wide)
            canonical = reduced.withUnsafeBytes { ConstantTime.equals($0, half) } && canonical
        }
        return canonical
    }
}
