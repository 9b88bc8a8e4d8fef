public import CairnWire

/// An error raised while reading data, schemas or model files, or while training.
///
/// Equality compares ``code`` only.
public typealias DataError = CairnError<DataErrorDomain>

/// The domain tag of ``DataError``.
public enum DataErrorDomain: Sendable {}

extension ErrorCode where Domain == DataErrorDomain {
    /// A file could not be opened, read or written.
    public static let io = Self("io")
    /// A CSV file is not well-formed (unterminated quote, bad UTF-8, an over-long row).
    public static let malformedCSV = Self("malformedCSV")
    /// A schema file is malformed or contradicts itself.
    public static let invalidSchema = Self("invalidSchema")
    /// The data failed validation against its schema; nothing was trained.
    public static let invalidData = Self("invalidData")
    /// A model file is malformed, or does not match the model expected.
    public static let invalidModelFile = Self("invalidModelFile")
    /// A training setting or model shape is out of range.
    public static let invalidParameters = Self("invalidParameters")
}
