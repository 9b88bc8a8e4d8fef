import ArgumentParser
import CairnWire

/// `cairn-broker`: the broker daemon and its admin commands.
struct BrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-broker",
        abstract: "The Cairn broker: secure aggregation, access control, audit trail and licensed model delivery.",
        discussion: """
            This release (\(CairnVersion.software)) is the foundation only. The daemon (init, serve) and \
            its admin commands are not implemented yet: this command answers --help and --version and \
            does nothing else.
            """,
        version: CairnVersion.software
    )

    init() {}
}

/// `cairn-audit`: export, verify and report on the broker's audit trail.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-audit",
        abstract: "Export the Cairn audit trail as a verifiable bundle, verify it offline, and report on it.",
        discussion: """
            This release (\(CairnVersion.software)) is the foundation only. export, verify, report and prove \
            are not implemented yet: this command answers --help and --version and does nothing else.
            """,
        version: CairnVersion.software
    )

    init() {}
}
