public import CairnWire

/// An error raised by the averaging core.
///
/// Messages name positions and sizes, never values: a value of a model update is private.
public typealias AveragingError = CairnError<AveragingErrorDomain>

/// The domain tag of ``AveragingError``.
public enum AveragingErrorDomain: Sendable {}

extension ErrorCode where Domain == AveragingErrorDomain {
    /// Two vectors that must have the same length do not, a piece runs past its vector, or
    /// coordinates run past the 2^36 words of one keystream.
    public static let lengthMismatch = Self("lengthMismatch")
    /// An input holds NaN or an infinity where only finite values make sense.
    public static let nonFinite = Self("nonFinite")
    /// A scale, bound or weight is zero, negative, not finite or too large.
    public static let invalidParameters = Self("invalidParameters")
    /// The fixed-point sum of this many participants could overflow.
    public static let overflowRisk = Self("overflowRisk")
}

/// Throws ``AveragingError`` `lengthMismatch` unless `a == b`.
func checkLengths(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws {
    guard a == b else { throw AveragingError(.lengthMismatch, "\(what()): \(a) and \(b) coordinates") }
}
