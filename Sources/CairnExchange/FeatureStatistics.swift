public import CairnCrypto
public import CairnModels
import CairnWire

extension Domain {
    /// The base-model digest of a statistics round (`Protocol/README.md`, "Pooled feature statistics").
    public static let featureStatistics = Domain("cairn/feature-statistics/v1")
}

/// The statistics round of a federation that standardises on pooled statistics: before its first
/// training round, each participant sends, through the same SecAgg+ round as an update, the sum
/// and the sum of squares of each of its inputs (and its row count as the sample count), so the
/// broker learns only the federation-wide sums, from which every participant's standardisation
/// follows (`(x − mean) / standard deviation`, as `cairn-node train` computes on local data).
///
/// Each sum is a signed 192-bit fixed-point number with 64 fractional bits, carried as twelve
/// 16-bit limbs (least significant first), one per 32-bit word of the masked vector: the
/// modular sum of up to 65,536 inputs' limbs cannot wrap, so the carries are resolved exactly
/// after unmasking. Each value is clipped to ±2^47 before it is summed, so no sum of squares of
/// up to 2^32 rows can reach 2^127.
public enum FeatureStatistics {
    /// Limbs per number.
    public static let limbs = 12
    /// Fractional bits of the fixed point.
    public static let fractionBits = 64
    /// The largest magnitude a value contributes (larger ones are clipped to it).
    public static let valueLimit = Double(1 << 47)

    /// The number of words a statistics input has for `inputs` model inputs (the sample count
    /// word comes after them, as in every round): the sum then the sum of squares of each input.
    public static func dimension(inputs: Int) -> Int { 2 * limbs * inputs }

    /// The base-model digest a statistics round's configuration carries: BLAKE2b-256 in
    /// `cairn/feature-statistics/v1` over the digest of the model it starts from. It differs from
    /// every model's digest, so a participant's signature on the configuration says which kind of
    /// round it answers.
    public static func roundDigest(base: [UInt8]) throws -> [UInt8] {
        try BLAKE2b.hash(base, domain: .featureStatistics)
    }

    /// A participant's input: the limbs of each input's sum and sum of squares over its first
    /// `maximumRows` rows (raw, not standardised), and the number of rows counted.
    public static func input(of data: Dataset, maximumRows: Int) throws -> (words: [UInt32], rows: UInt32) {
        let rows = min(data.count, maximumRows)
        guard rows >= 1 else { throw ExchangeError(.malformed, "a participant needs at least one row") }
        let d = data.inputCount
        var sums = [Double](repeating: 0, count: 2 * d)
        for r in 0..<rows {
            for j in 0..<d {
                let x = min(max(Double(data.features[r * d + j]), -valueLimit), valueLimit)
                sums[2 * j] += x
                sums[2 * j + 1] += x * x
            }
        }
        var words: [UInt32] = []
        words.reserveCapacity(dimension(inputs: d))
        for s in sums { words += fixedPoint(s) }
        return (words, UInt32(rows))
    }

    /// The pooled standardisation from a statistics round's unmasked sum: refused when a word is
    /// beyond what `contributors` inputs' limbs add up to, the row count is outside what they may
    /// declare (1 to `maximumRows` each), or a sum of squares is negative (an input was forged).
    public static func standardisation(
        sum: [UInt32],
        rows: UInt32,
        contributors: Int,
        maximumRows: UInt32,
        inputs: Int
    ) throws -> Standardisation {
        guard sum.count == dimension(inputs: inputs) else {
            throw ExchangeError(
                .malformed,
                "the statistics sum has \(sum.count) words; \(inputs) inputs need \(dimension(inputs: inputs))"
            )
        }
        let most = UInt64(contributors) * 0xFFFF
        if let at = sum.firstIndex(where: { UInt64($0) > most }) {
            throw ExchangeError(
                .malformed,
                "word \(at) of the statistics sum is beyond what \(contributors) inputs' 16-bit limbs reach: an input was forged; the statistics are not applied"
            )
        }
        guard UInt64(rows) >= UInt64(contributors), UInt64(rows) <= UInt64(contributors) * UInt64(maximumRows) else {
            throw ExchangeError(
                .malformed,
                "the inputs declare \(rows) rows in all, outside what \(contributors) inputs may declare: an input was forged; the statistics are not applied"
            )
        }
        var sums: [Double] = []
        sums.reserveCapacity(2 * inputs)
        for i in 0..<(2 * inputs) { sums.append(value(ofLimbs: sum[(i * limbs)..<((i + 1) * limbs)])) }
        // What `rows` rows of values clipped to ±2^47 can sum to: |S| ≤ N·2^47, 0 ≤ Q ≤ N·2^94
        // and S² ≤ N·Q (Cauchy–Schwarz). One input still moves the pooled statistics as far as
        // values at the clip would, no further.
        let n = Double(rows)
        for j in 0..<inputs {
            let (s, q) = (sums[2 * j], sums[2 * j + 1])
            guard q >= 0, abs(s) <= n * valueLimit, q <= n * valueLimit * valueLimit, s * s <= n * q * (1 + 1e-9)
            else {
                throw ExchangeError(
                    .malformed,
                    "the pooled sums of input \(j) cannot come from \(rows) rows of values within ±2^47: an input was forged; the statistics are not applied"
                )
            }
        }
        return Standardisation(
            count: Double(rows),
            sums: stride(from: 0, to: sums.count, by: 2).map { sums[$0] },
            squares: stride(from: 1, to: sums.count, by: 2).map { sums[$0] }
        )
    }

    /// `x` (|x| < 2^127) as twelve 16-bit limbs of the two's complement of `round(x · 2^64)`
    /// modulo 2^192.
    static func fixedPoint(_ x: Double) -> [UInt32] {
        var words: [UInt64] = [0, 0, 0]
        if x != 0, x.isNormal {
            let mantissa = (UInt64(1) << 52) | x.significandBitPattern
            let shift = Int(x.exponent) - 52 + fractionBits
            if shift >= 0 {
                let (word, bit) = (shift / 64, shift % 64)
                words[word] = mantissa << UInt64(bit)
                if bit > 0, word + 1 < 3 { words[word + 1] = mantissa >> UInt64(64 - bit) }
            } else if shift > -64 {
                let kept = mantissa >> UInt64(-shift)
                let half = UInt64(1) << UInt64(-shift - 1)
                words[0] = kept + (mantissa & ((half << 1) - 1) >= half ? 1 : 0)
            }
            if x < 0 {
                var carry: UInt64 = 1
                for i in 0..<3 {
                    let (v, o) = (~words[i]).addingReportingOverflow(carry)
                    words[i] = v
                    carry = o ? 1 : 0
                }
            }
        }
        return (0..<limbs).map { UInt32((words[$0 / 4] >> UInt64(16 * ($0 % 4))) & 0xFFFF) }
    }

    /// The signed value of twelve summed limbs (each below 2^32), carries resolved modulo 2^192.
    static func value(ofLimbs limbs: ArraySlice<UInt32>) -> Double {
        var words: [UInt64] = [0, 0, 0, 0]
        for (k, limb) in limbs.enumerated() {
            // limb · 2^(16k): up to 48 bits starting at bit 16k, spread over two 64-bit words.
            let (word, bit) = (k / 4, 16 * (k % 4))
            var carry: UInt64 = 0
            for (i, part) in [UInt64(limb) << UInt64(bit), bit == 0 ? 0 : UInt64(limb) >> UInt64(64 - bit)].enumerated()
            where word + i < 4 {
                let (a, o1) = words[word + i].addingReportingOverflow(part)
                let (b, o2) = a.addingReportingOverflow(carry)
                words[word + i] = b
                carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
            }
            var i = word + 2
            while carry > 0, i < 4 {
                let (v, o) = words[i].addingReportingOverflow(carry)
                words[i] = v
                carry = o ? 1 : 0
                i += 1
            }
        }
        let negative = words[2] >> 63 == 1
        if negative {
            var carry: UInt64 = 1
            for i in 0..<3 {
                let (v, o) = (~words[i]).addingReportingOverflow(carry)
                words[i] = v
                carry = o ? 1 : 0
            }
        }
        let magnitude = (Double(words[2]) * 0x1p64 + Double(words[1])) + Double(words[0]) * 0x1p-64
        return negative ? -magnitude : magnitude
    }
}
