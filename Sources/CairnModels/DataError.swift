/// An error raised while reading data, schemas or model files, or while training.
///
/// Equality compares ``code`` only.
public struct DataError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable identifier for the kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A file could not be opened, read or written.
        public static let io = Code("io")
        /// A CSV file is not well-formed (unterminated quote, bad UTF-8, an over-long row).
        public static let malformedCSV = Code("malformedCSV")
        /// A schema file is malformed or contradicts itself.
        public static let invalidSchema = Code("invalidSchema")
        /// The data failed validation against its schema; nothing was trained.
        public static let invalidData = Code("invalidData")
        /// A model file is malformed, or does not match the model expected.
        public static let invalidModelFile = Code("invalidModelFile")
        /// A training setting or model shape is out of range.
        public static let invalidParameters = Code("invalidParameters")
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

    public static func == (lhs: DataError, rhs: DataError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
