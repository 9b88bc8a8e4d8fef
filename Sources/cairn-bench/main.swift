import ArgumentParser
import CairnWire

/// `cairn-bench <area>`: measures one area of Cairn against a reference measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "Measure Cairn against a floor measured in the same run, and print the figures.",
        discussion: """
            Areas: crypto (AEAD, secretstream and BLAKE2b throughput for 1 MiB and 64 MiB messages, \
            Ed25519 sign and verify rates, each against direct libsodium calls); averaging (modular \
            sums and weighted averages of n = 10 and 100 vectors of 10^6 and 10^7 coordinates against \
            a plain read-and-reduce loop and numpy, mask expansion and quantisation against \
            libsodium's raw ChaCha20 keystream, on one core and on all); training (samples per second \
            of the logistic, softmax and MLP trainers on the digits data against numpy); audit (durable \
            and batched audit-log appends against raw SQLite inserts of the same rows with the same \
            durability, and offline verification of a 10^6-entry bundle against hashing alone); secagg (a SecAgg+ round of \
            n = 100 participants with D = 10^6 and 10% dropping after ShareKeys: a participant's \
            masking and the server's unmasking against libsodium's raw ChaCha20 keystream for the same \
            expansions, and the bytes each participant uploads against 4·D). \
            crash-writer and crash-check are the halves of scripts/audit-crash. Run it as: \
            swift run -c release cairn-bench averaging --json
            """,
        version: CairnVersion.software
    )

    @Argument(help: "What to measure: crypto, averaging, training, audit or secagg (or crash-writer, crash-check).")
    var area: String

    @Option(help: ArgumentHelp("crash-writer and crash-check: the audit log file.", valueName: "path"))
    var database: String?

    @Option(help: ArgumentHelp("crash-check: the writer's output (its acknowledgements).", valueName: "path"))
    var acked: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Fewer repetitions on smaller inputs: a smoke run, not figures to quote.")
    var quick = false

    func validate() throws {
        guard ["crypto", "averaging", "training", "audit", "secagg", "crash-writer", "crash-check"].contains(area)
        else {
            throw ValidationError("unknown area '\(area)'; available: crypto, averaging, training, audit, secagg")
        }
        if area.hasPrefix("crash-"), database == nil || (area == "crash-check" && acked == nil) {
            throw ValidationError("\(area) needs --database (and crash-check --acked)")
        }
    }

    func run() throws {
        if area == "crash-writer" { try AuditCrash.write(database: database!) }
        if area == "crash-check" {
            print(try AuditCrash.check(database: database!, ackedFile: acked!))
            return
        }
        let report =
            switch area {
            case "crypto": try CryptoBench(quick: quick).run()
            case "averaging": try AveragingBench(quick: quick).run()
            case "audit": try AuditBench(quick: quick).run()
            case "secagg": try SecAggBench(quick: quick).run()
            default: try TrainingBench(quick: quick).run()
            }
        print(json ? report.json : report.table)
    }
}

Bench.main()
