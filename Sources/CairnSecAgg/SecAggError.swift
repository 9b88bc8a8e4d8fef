public import CairnWire

/// An error of secure aggregation: a configuration refused, a message refused, a dishonest
/// broker detected, or a round that cannot finish.
///
/// Messages name participants by roster index and phases by name; they never hold keys, shares,
/// masks or input values.
public typealias SecAggError = CairnError<SecAggErrorDomain>

/// The domain tag of ``SecAggError``.
public enum SecAggErrorDomain: Sendable {}

extension ErrorCode where Domain == SecAggErrorDomain {
    /// A round configuration or a parameter choice that cannot be made safe (threshold too low
    /// for an active broker, a fixed-point sum that could overflow, too few participants).
    public static let unsafeConfiguration = Self("unsafeConfiguration")
    /// A message that does not decode, or is too large, or does not fit the round's configuration.
    public static let malformed = Self("malformed")
    /// A message for another round, federation or session (a replay), or for another participant.
    public static let wrongSession = Self("wrongSession")
    /// A message that arrives in a phase where it has no place, or twice.
    public static let wrongPhase = Self("wrongPhase")
    /// A key or survivor-set signature that does not verify, or a participant's own keys replaced.
    public static let badSignature = Self("badSignature")
    /// A survivor set that is inconsistent with what this participant saw or signed, or smaller
    /// than the thresholds.
    public static let inconsistentSurvivors = Self("inconsistentSurvivors")
    /// A request that would reveal both the self-mask share and the mask-key share of one peer.
    public static let bothShares = Self("bothShares")
    /// An encrypted share that does not open (tampered, misrouted or replayed).
    public static let badShare = Self("badShare")
    /// Too many participants dropped out: the round cannot finish and aborts.
    public static let aborted = Self("aborted")
}
