/// An error raised by the averaging core.
///
/// Equality compares ``code`` only. Messages name positions and sizes, never values: a value of
/// a model update is private.
public struct AveragingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable identifier for the kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Two vectors that must have the same length do not, a piece runs past its vector, or
        /// coordinates run past the 2^36 words of one keystream.
        public static let lengthMismatch = Code("lengthMismatch")
        /// An input holds NaN or an infinity where only finite values make sense.
        public static let nonFinite = Code("nonFinite")
        /// A scale, bound or weight is zero, negative, not finite or too large.
        public static let invalidParameters = Code("invalidParameters")
        /// The fixed-point sum of this many participants could overflow.
        public static let overflowRisk = Code("overflowRisk")
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for a person.
    public let message: String
    /// Where the error was raised.
    public let location: String

    /// Makes an error with its source location.
    public init(_ code: Code, _ message: String, file: StaticString = #fileID, line: UInt = #line) {
        self.code = code
        self.message = message
        self.location = "\(file):\(line)"
    }

    public var description: String { message }

    public static func == (lhs: AveragingError, rhs: AveragingError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// Throws ``AveragingError/Code/lengthMismatch`` unless `a == b`.
func checkLengths(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws {
    guard a == b else { throw AveragingError(.lengthMismatch, "\(what()): \(a) and \(b) coordinates") }
}
