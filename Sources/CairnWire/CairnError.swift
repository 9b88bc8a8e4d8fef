/// The shape every Cairn error shares: a stable ``code``, a ``message`` for a person and the
/// source ``location`` where it was raised. Equality and hashing use the code only, so tests and
/// callers match on the kind of failure; the description is the message.
///
/// Each module has one error type (`WireError`, `CryptoError`, …) whose codes are
/// ``ErrorCode`` values declared in an extension of `ErrorCode where Kind == ThatError`.
public protocol CairnError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    var code: ErrorCode<Self> { get }
    /// What went wrong, for a person. Never holds secrets, shares, updates or personal data.
    var message: String { get }
    /// Where the error was raised (`file:line`).
    var location: String { get }

    /// An error from its parts.
    init(code: ErrorCode<Self>, message: String, location: String)
}

extension CairnError {
    /// An error raised here, with its source location.
    public init(_ code: ErrorCode<Self>, _ message: String, file: StaticString = #fileID, line: UInt = #line) {
        self.init(code: code, message: message, location: "\(file):\(line)")
    }

    public var description: String { message }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// A stable identifier for a kind of failure of the error type `Kind`: a name compared by value.
/// Codes of different error types are different types and never compare equal.
public struct ErrorCode<Kind>: Hashable, Sendable, CustomStringConvertible {
    private let name: String

    /// A code named `name`; declare codes as statics in an extension constrained to `Kind`.
    public init(_ name: String) { self.name = name }

    public var description: String { name }
}
