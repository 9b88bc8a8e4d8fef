import ArgumentParser
import CairnExchange
import CairnNode
import CairnWire
import Foundation
import Synchronization

/// Entry points of Cairn's three executables, so each `main.swift` is one line.
public enum CairnTool {
    /// Runs `cairn-broker` with the process's arguments and exits.
    public static func broker() async { await BrokerCommand.main() }
    /// Runs `cairn-node` with the process's arguments and exits.
    public static func node() async { await NodeCommand.main() }
    /// Runs `cairn-audit` with the process's arguments and exits.
    public static func audit() async { await AuditCommand.main() }
}

/// A run-time refusal: printed as `Error: <message>` with exit status 1, without a usage line
/// (the command line was fine; the input was not).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// `--wait`: how long a command keeps trying a broker that cannot be reached or fails to answer.
struct WaitOption: ParsableArguments {
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "How long to keep trying a broker that cannot be reached or fails to answer before giving up, in seconds. What it waits for is said on standard error within 2 s.",
            valueName: "seconds"
        )
    )
    var wait: Double = 30

    func validate() throws {
        guard wait.isFinite, (0...86_400).contains(wait) else {
            throw ValidationError("--wait is a number of seconds from 0 to 86400, not \(wait)")
        }
    }

    /// The policy: `--wait`, each wait said on standard error.
    var waiting: Waiting {
        Waiting(
            patience: wait,
            report: waitReport(giveUp: "after \(String(format: "%g", wait)) s; --wait changes this")
        )
    }
}

/// Says on standard error what a command is waiting for: the first failure (or an attempt
/// unanswered for 2 s) at once, then at most one line every 5 s.
func waitReport(giveUp: String) -> RetryReport {
    let last = Mutex<ContinuousClock.Instant?>(nil)
    return { failure, wait in
        let now = ContinuousClock.now
        let due = last.withLock { last -> Bool in
            if let last, now - last < .seconds(5) { return false }
            last = now
            return true
        }
        guard due else { return }
        let reason = failure.message
        let next = wait > 0 ? "; trying again in \(String(format: "%.2g", wait)) s" : ""
        FileHandle.standardError.write(Data("waiting for the broker: \(reason)\(next) (giving up \(giveUp))\n".utf8))
    }
}
