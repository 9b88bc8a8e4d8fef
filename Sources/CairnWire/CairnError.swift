/// Every Cairn error: a stable ``code``, a ``message`` for a person and the source ``location``
/// where it was raised. Equality and hashing use the code only, so tests and callers match on the
/// kind of failure; the description is the message.
///
/// Each module names its errors with a domain tag, `public typealias CryptoError =
/// CairnError<CryptoErrorDomain>`, and declares its codes in `extension ErrorCode where Domain
/// == CryptoErrorDomain`. Errors of different modules are different types.
public struct CairnError<Domain>: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kinds of failure of this domain.
    public typealias Code = ErrorCode<Domain>

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for a person. Never holds secrets, shares, updates or personal data.
    public let message: String
    /// Where the error was raised (`file:line`).
    public let location: String

    /// An error raised here, with its source location.
    public init(_ code: Code, _ message: String, file: StaticString = #fileID, line: UInt = #line) {
        self.code = code
        self.message = message
        self.location = "\(file):\(line)"
    }

    public var description: String { message }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// A stable identifier for a kind of failure in `Domain`: a name compared by value.
public struct ErrorCode<Domain>: Hashable, Sendable, CustomStringConvertible {
    private let name: String

    /// A code named `name`; declare codes as statics in an extension constrained to `Domain`.
    public init(_ name: String) { self.name = name }

    public var description: String { name }
}
