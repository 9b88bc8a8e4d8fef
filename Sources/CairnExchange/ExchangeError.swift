public import CairnWire

/// An error of the exchange's HTTP API. Each code has one HTTP status (``status``), so the broker
/// maps errors to responses in one place and the node can tell a refusal from a retryable fault.
/// Messages never hold keys, shares, masks, updates or personal data.
public typealias ExchangeError = CairnError<ExchangeErrorDomain>

/// The domain tag of ``ExchangeError``.
public enum ExchangeErrorDomain: Sendable {}

extension ErrorCode where Domain == ExchangeErrorDomain {
    /// 400: a body, header or parameter that does not decode or breaks a rule.
    public static let malformed = Self("malformed")
    /// 401: no signature, a bad one, a stale time, a replayed nonce or an unknown key.
    public static let unauthenticated = Self("unauthenticated")
    /// 403: a known caller without the role, membership or standing the endpoint needs.
    public static let forbidden = Self("forbidden")
    /// 404: no such federation, participant or round.
    public static let notFound = Self("notFound")
    /// 409: the request does not fit the current state (a phase closed, a name taken, an invite used).
    public static let conflict = Self("conflict")
    /// 413: a body larger than the endpoint takes.
    public static let tooLarge = Self("tooLarge")
    /// 415: a body of the wrong content type.
    public static let unsupportedMediaType = Self("unsupportedMediaType")
    /// 429: too many requests from one identity; retry later.
    public static let rateLimited = Self("rateLimited")
    /// 503: the broker cannot take this now (uploads at capacity); retry later.
    public static let unavailable = Self("unavailable")
    /// 500: a fault of the broker itself.
    public static let `internal` = Self("internal")
    /// Not from the broker: the network or the broker's answer failed (the node retries).
    public static let transport = Self("transport")
}

extension CairnError where Domain == ExchangeErrorDomain {
    /// The HTTP status of this error.
    public var status: Int {
        switch code {
        case .malformed: 400
        case .unauthenticated: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .unsupportedMediaType: 415
        case .rateLimited: 429
        case .unavailable: 503
        default: 500
        }
    }

    /// The error for a status and message received from the broker.
    public init(status: Int, message: String) {
        let code: Code =
            switch status {
            case 400: .malformed
            case 401: .unauthenticated
            case 403: .forbidden
            case 404: .notFound
            case 409: .conflict
            case 413: .tooLarge
            case 415: .unsupportedMediaType
            case 429: .rateLimited
            case 503: .unavailable
            default: .internal
            }
        self.init(code, message)
    }

    /// Whether retrying the same request later can succeed.
    public var isRetryable: Bool { [.rateLimited, .unavailable, .internal, .transport].contains(code) }
}
