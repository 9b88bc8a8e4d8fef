import ArgumentParser
import CairnCrypto
import CairnExchange
import CairnModels
import CairnNode
import CairnWire
import Foundation
import Glibc

extension NodeCommand {
    /// `cairn-node enroll`.
    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join a federation with an operator's invite.",
            discussion: """
                Checks that the broker at --broker holds the identity key named in the invite (and that its \
                transport key is signed by it), then sends a signed enrolment with this node's identity and \
                delivery keys. Each enrolment is kept in its own folder, <home>/enrolments/<federation>@<broker \
                key prefix>/, with its round state: one home (one key) may join several federations, at one \
                broker or several, and other commands choose one with --federation. An invite works once, \
                before it expires; a federation the key already joined is refused and the invite left unused.
                """
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @Option(help: ArgumentHelp("The broker's URL, e.g. http://127.0.0.1:7400.", valueName: "url")) var broker:
            String
        @Option(help: ArgumentHelp("The invite code from the operator.", valueName: "code")) var invite: String

        func run() async throws {
            let identity = try NodeIdentity.unlock(
                home: home.resolved,
                passphrase: try passphrase.read(newKeystore: false)
            )
            let (enrolment, record) = try await cliCall(wait.waiting) {
                try await Enrolment.enrol(url: broker, code: invite, identity: identity)
            }
            let held = try enrolment.write(home: home.resolved)
            let count = try Enrolment.all(home: home.resolved).count
            print(
                "enrolled \(record.fingerprint) as \(record.role.rawValue) of federation \(record.federation) at \(broker)"
                    + (count > 1
                        ? " (enrolment \(held.name), one of \(count) in this home: choose with --federation)" : "")
            )
        }
    }

    /// `cairn-node run`.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take part in the federation's secure rounds, training on a local CSV.",
            discussion: """
                Validates the CSV against the federation's schema, then waits for rounds. In each round it \
                fetches the global model (checking its digest against the round's configuration), trains on \
                its rows, and answers all five SecAgg+ phases: only a masked, quantised update leaves the \
                machine, encrypted to the broker. With --evaluate, each new global model is scored on the \
                held-out rows and only the score (row count, accuracy, log-loss) is sent, signed, to the broker, \
                which averages the participants' scores by row count into the metrics of the version it \
                publishes. After each round the node witnesses the broker's audit log: it checks the checkpoint \
                signed at the round's end against the last one it saw (witness.checkpoint in the enrolment's \
                folder, <home>/enrolments/<name>/) and cosigns \
                it; a log that was rewritten, or shown differently to others, stops the node with both signed \
                checkpoints kept in witness-evidence-<time>/ there. Its round state is kept encrypted there in round.state, so a \
                restart resumes without ever revealing both shares of a peer. Network errors and broker \
                restarts are retried with backoff (0.1 s doubling to 5 s, for up to two minutes per request), \
                each wait said on standard error; an answer the broker refuses makes the node sit that round \
                out, with the broker's reason, and go on with the next. Each round is reported as the broker \
                recorded it: finished with this node's input summed, finished without it, or aborted with \
                its reason; only the first kind counts toward --rounds. Progress goes to standard output on \
                a terminal (--progress forces it): each phase, and how many participants it still waits for \
                and the time left; otherwise it prints one line per round.
                """
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var choice: EnrolmentChoice
        @Option(help: ArgumentHelp("This participant's data (CSV with a header row).", valueName: "csv")) var data:
            String
        @Option(
            help: ArgumentHelp(
                "Stop once this node's input is in the sum of this many rounds (rounds that aborted or went on without it do not count). Default: until the federation stops training.",
                valueName: "n"
            )
        )
        var rounds: Int?
        @Option(
            help: ArgumentHelp(
                "Held-out labelled CSV (rows not in --data): score each new global model on it, print the accuracy and report the score to the broker for federated evaluation.",
                valueName: "csv"
            )
        )
        var evaluate: String?
        @Flag(help: "Report every phase, not just each round.") var progress = false

        func validate() throws {
            if let rounds, !(1...10_000).contains(rounds) { throw ValidationError("--rounds must be 1 to 10000") }
        }

        func run() async throws {
            let identity = try NodeIdentity.unlock(
                home: home.resolved,
                passphrase: try passphrase.read(newKeystore: false)
            )
            // Rounds go on through a broker's restart: each request waits up to two minutes.
            let waiting = Waiting(patience: 120, report: waitReport(giveUp: "after 2 minutes per request"))
            let participant = try await cliCall(waiting) {
                try await Participant.connect(home: home.resolved, federation: choice.federation, identity: identity)
            }
            let spec = try await cliCall(waiting) { try await participant.info().spec }
            let (rows, _) = try DataValidator.load(data, schema: spec.schema)
            let evaluation = try evaluate.map { try DataValidator.load($0, schema: spec.schema).0 }
            say("\(spec.id): \(rows.count) rows checked against the federation's schema; waiting for rounds")
            let verbose = progress || isatty(STDOUT_FILENO) == 1
            try await cliCall(waiting) {
                try await participant.run(data: rows, evaluation: evaluation, rounds: rounds) { event in
                    switch event {
                    case .roundOpened(let round, let n):
                        if verbose { say("round \(round): open with \(n) participants; training and advertising keys") }
                    case .answered(let round, let phase, let bytes):
                        if verbose { say("round \(round): \(phase) sent (\(bytes) bytes)") }
                    case .roundFinished(let round, let included, let counted, let target, let evaluation, let refused):
                        var line = "round \(round): finished; "
                        line +=
                            included
                            ? "this node's input summed (\(counted)\(target.map { " of \($0)" } ?? ""))"
                            : "without this node's input"
                        if let evaluation {
                            line += "; global model accuracy \(rounded(evaluation.accuracy))"
                            line += " on \(evaluation.sampleCount) held-out rows"
                            line += refused.map { " (the broker did not record it: \($0))" } ?? " (score reported)"
                        }
                        say(line)
                    case .statisticsPooled(let round, let included):
                        say(
                            "round \(round): feature statistics pooled \(included ? "with" : "without") this node's; inputs are standardised on them from now on"
                        )
                    case .roundMissed(let round, let reason):
                        say("round \(round): not taking part: \(reason)")
                    case .waiting(let round, let phase, let participants, let left):
                        if verbose {
                            say(
                                "round \(round): \(phase) waits for \(participants) more participant\(participants == 1 ? "" : "s"), \(left) s left"
                            )
                        }
                    case .trainingStopped(let counted):
                        say("the federation stopped training; this node's input was summed in \(counted) rounds")
                    case .retrying(let failure, let wait):
                        waiting.report?(failure, wait)
                    case .witnessed(let size, let witnesses):
                        say(
                            "audit log: checkpoint of \(size) entries is consistent with the last one this node saw; cosigned (\(witnesses) witnesses so far)"
                        )
                    }
                }
            }
        }
    }

    /// `cairn-node status`.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show this node's enrolments and its part in each round, as the broker records it.",
            discussion: "Every enrolment of the home, or the one --federation names."
        )
        @OptionGroup var home: NodeHomeOptions
        @OptionGroup var passphrase: PassphraseOptions
        @OptionGroup var wait: WaitOption
        @OptionGroup var choice: EnrolmentChoice
        @Flag(help: "Print the broker's JSON (a list when the home holds several enrolments).") var json = false

        func run() async throws {
            let identity = try NodeIdentity.unlock(
                home: home.resolved,
                passphrase: try passphrase.read(newKeystore: false)
            )
            // Every enrolment, or the one chosen (select refuses a home with none, saying why).
            var chosen = try choice.federation == nil ? Enrolment.all(home: home.resolved) : []
            if chosen.isEmpty { chosen = [try choice.held(home)] }
            // One connection per broker, so a broker that cannot be reached is waited for once.
            var records: [Enrolment.Held: MemberRecord] = [:]
            for held in chosen where records[held] == nil {
                let here = chosen.filter {
                    $0.enrolment.broker == held.enrolment.broker && $0.enrolment.brokerKey == held.enrolment.brokerKey
                }
                let found: [MemberRecord] = try await cliCall(wait.waiting) {
                    let (client, _) = try await held.enrolment.connect(identity: identity.identity)
                    var found: [MemberRecord] = []
                    for one in here {
                        found.append(try await client.json("GET", "/v1/me?federation=\(one.enrolment.federation)"))
                    }
                    return found
                }
                for (one, record) in zip(here, found) { records[one] = record }
            }
            if json {
                let ordered = chosen.compactMap { records[$0] }
                return try ordered.count == 1 ? printJSON(ordered[0]) : printJSON(ordered)
            }
            for held in chosen {
                guard let record = records[held] else { continue }
                print(
                    "\(record.fingerprint): \(record.role.rawValue) of \(record.federation) at \(held.enrolment.broker), \(record.status)"
                        + (chosen.count > 1 ? " (enrolment \(held.name))" : "")
                )
                let training = record.rounds.filter { $0.statistics != true }
                print("input summed in \(training.filter(\.included).count) of \(training.count) training rounds")
                for r in record.rounds {
                    print(
                        "  round \(r.round)\(r.statistics == true ? " (feature statistics)" : ""): \(r.outcome); answered \(r.phases.joined(separator: ", "))\(r.included ? "; included" : "")"
                    )
                }
            }
        }
    }
}

/// One line to standard output, unbuffered (progress shows as it happens, also through a pipe).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
