internal import CSodium

/// The operating system's cryptographically secure random number generator (through libsodium).
public enum SecureRandom {
    /// `count` random bytes. For secret material use ``SecretBytes/random(count:)`` instead.
    public static func bytes(_ count: Int) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { if let base = $0.baseAddress { randombytes_buf(base, $0.count) } }
        return out
    }

    /// A uniformly distributed integer in `0..<upperBound` (no modulo bias).
    public static func uniform(_ upperBound: UInt32) -> UInt32 {
        ensureSodium()
        return randombytes_uniform(upperBound)
    }
}
