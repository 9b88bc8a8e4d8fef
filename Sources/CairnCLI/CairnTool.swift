import ArgumentParser

/// Entry points of Cairn's three executables, so each `main.swift` is one line.
public enum CairnTool {
    /// Runs `cairn-broker` with the process's arguments and exits.
    public static func broker() async { await BrokerCommand.main() }
    /// Runs `cairn-node` with the process's arguments and exits.
    public static func node() async { await NodeCommand.main() }
    /// Runs `cairn-audit` with the process's arguments and exits.
    public static func audit() { AuditCommand.main() }
}

/// A run-time refusal: printed as `Error: <message>` with exit status 1, without a usage line
/// (the command line was fine; the input was not).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
