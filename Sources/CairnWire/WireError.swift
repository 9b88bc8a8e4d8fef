/// An error raised while decoding untrusted bytes or writing a file.
///
/// Equality compares ``code`` only, so tests and callers can match on the kind of failure
/// while the ``message`` carries the detail for a person.
public typealias WireError = CairnError<WireErrorDomain>

/// The domain tag of ``WireError``.
public enum WireErrorDomain: Sendable {}

extension ErrorCode where Domain == WireErrorDomain {
    /// The input ended before a field was complete.
    public static let truncated = Self("truncated")
    /// Bytes were left over after the last field.
    public static let trailingBytes = Self("trailingBytes")
    /// A length or count is larger than the format allows.
    public static let tooLarge = Self("tooLarge")
    /// A field holds a value the format does not allow (a bad tag, a bad boolean, bad UTF-8).
    public static let invalidValue = Self("invalidValue")
    /// A file could not be read or written.
    public static let io = Self("io")
}
