/// An error raised while decoding untrusted bytes or writing a file.
///
/// Equality compares ``code`` only, so tests and callers can match on the kind of failure
/// while the ``message`` carries the detail for a person.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable identifier for the kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The input ended before a field was complete.
        public static let truncated = Code("truncated")
        /// Bytes were left over after the last field.
        public static let trailingBytes = Code("trailingBytes")
        /// A length or count is larger than the format allows.
        public static let tooLarge = Code("tooLarge")
        /// A field holds a value the format does not allow (a bad tag, a bad boolean, bad UTF-8).
        public static let invalidValue = Code("invalidValue")
        /// A file could not be read or written.
        public static let io = Code("io")
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for a person. Never contains secret material.
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

    public static func == (lhs: WireError, rhs: WireError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
