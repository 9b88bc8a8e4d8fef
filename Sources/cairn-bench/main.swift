import ArgumentParser
import CairnSecAgg
import CairnWire

/// `cairn-bench <area>`: measures one area of Cairn against a reference measured in the same run.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "Measure Cairn against a floor measured in the same run, and print the figures.",
        discussion: """
            Areas: crypto (AEAD, secretstream and BLAKE2b throughput for 1 MiB and 64 MiB messages, \
            Ed25519 sign and verify rates, each against direct libsodium calls); averaging (modular \
            sums and weighted averages of n = 10 and 100 vectors of 10^6 and 10^7 coordinates against \
            a plain read-and-reduce loop and numpy, mask expansion and quantisation against \
            libsodium's raw ChaCha20 keystream, on one core and on all); training (samples per second \
            of the logistic, softmax and MLP trainers on the digits data against numpy); optimisers (held-out \
            accuracy of each server optimiser after 40 simulated rounds over 4 label-skewed participants of a \
            4-class synthetic set, MLP and softmax, against FedAvg on an iid split of the same rows); privacy \
            (exact discrete Gaussian noise for D = 10^6 coordinates at σ = 2^20 against ChaCha20 mask expansion \
            of the same D, on one core and on all); audit (durable \
            and batched audit-log appends against raw SQLite inserts of the same rows with the same \
            durability, offline verification of a 10^6-entry bundle against hashing alone, and of a \
            bundle whose 50,000 entries carry their actors' signed requests against Ed25519 verification \
            of the same signatures alone); secagg (a SecAgg+ round of \
            n = 100 participants with D = 10^6 and 10% dropping after ShareKeys: a participant's \
            masking and the server's unmasking against libsodium's raw ChaCha20 keystream for the same \
            expansions, and the bytes each participant uploads against 4·D); broker (one round of n = 100 \
            participants over loopback HTTP with D = 10^6 against a broker in a child process: round wall \
            time, the broker's peak memory above idle against 4·(4·D) + 64 KiB·n, and masked-input ingest \
            against the same bodies uploaded to a null endpoint); delivery (sealing and opening a 1 GiB model \
            container, licence and signature checks included, against raw libsodium secretstream on the \
            same bytes with the same 1 MiB chunks); attack (the broker in a child process under 300 slow \
            anonymous connections and 10,000 unsigned requests: its memory growth against 64 MiB, the audit \
            entries added against 100, and a member's signed-call p99 latency against the same calls \
            unattacked; exits non-zero past the memory or audit bound). \
            crash-writer and crash-check are the halves of scripts/audit-crash; broker-serve is the broker \
            half of the broker benchmark, attack-flood the flooding half of the attack benchmark. Run it as: \
            swift run -c release cairn-bench averaging --json
            """,
        version: CairnVersion.software
    )

    @Argument(
        help:
            "What to measure: crypto, averaging, training, optimisers, privacy, audit, secagg, broker, delivery or attack (or crash-writer, crash-check)."
    )
    var area: String

    @Option(
        help: ArgumentHelp(
            "crash-writer and crash-check: the audit log file (broker-serve: its folder).",
            valueName: "path"
        )
    )
    var database: String?

    @Option(help: ArgumentHelp("crash-check: the writer's output (its acknowledgements).", valueName: "path"))
    var acked: String?

    @Option(help: ArgumentHelp("attack-flood: the broker's URL.", valueName: "url"))
    var url: String?

    @Option(
        help: ArgumentHelp("secagg and broker: participants n (default 100); attack-flood: requests.", valueName: "n")
    )
    var participants: Int?

    @Option(help: ArgumentHelp("secagg: model coordinates D (default 10^6).", valueName: "D"))
    var dimension: Int?

    @Option(
        help: ArgumentHelp("secagg: neighbours k (with --threshold; default by the parameter rule).", valueName: "k")
    )
    var neighbours: Int?

    @Option(help: ArgumentHelp("secagg: Shamir threshold t (with --neighbours).", valueName: "t"))
    var threshold: Int?

    @Option(help: ArgumentHelp("secagg: fraction of participants that drop out (default 0.1).", valueName: "fraction"))
    var dropoutFraction = 0.1

    @Option(
        help: ArgumentHelp(
            "secagg: the phase in which they stop answering: advertise, share, mask (default: they shared keys, then "
                + "send no masked input), sign or unmask.",
            valueName: "phase"
        )
    )
    var dropAt = "mask"

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Fewer repetitions on smaller inputs: a smoke run, not figures to quote.")
    var quick = false

    func validate() throws {
        guard
            [
                "crypto", "averaging", "training", "optimisers", "privacy", "audit", "secagg", "broker", "delivery",
                "attack", "attack-flood",
                "crash-writer",
                "crash-check",
                "broker-serve",
            ]
            .contains(area)
        else {
            throw ValidationError(
                "unknown area '\(area)'; available: crypto, averaging, training, optimisers, privacy, audit, secagg, broker, delivery, attack"
            )
        }
        if (neighbours == nil) != (threshold == nil) {
            throw ValidationError("--neighbours and --threshold go together")
        }
        guard Self.phases[dropAt] != nil else {
            throw ValidationError("unknown phase '\(dropAt)'; available: advertise, share, mask, sign, unmask")
        }
        guard (0..<1).contains(dropoutFraction) else { throw ValidationError("--dropout-fraction must be in [0, 1)") }
        if area.hasPrefix("crash-") || area == "broker-serve",
            database == nil || (area == "crash-check" && acked == nil)
        {
            throw ValidationError("\(area) needs --database (and crash-check --acked)")
        }
    }

    static let phases: [String: RoundPhase] = [
        "advertise": .advertiseKeys, "share": .shareKeys, "mask": .maskedInput, "sign": .consistencyCheck,
        "unmask": .unmasking,
    ]

    func run() async throws {
        if area == "broker-serve" {
            try await BrokerBenchServer.serve(
                folder: database!,
                participants: participants ?? 100,
                quick: quick
            )
            return
        }
        if area == "attack-flood" {
            guard let url, let count = participants else {
                throw ValidationError("attack-flood needs --url and a count")
            }
            try await AttackBench.flood(url: url, count: count)
            return
        }
        if area == "crash-writer" { try AuditCrash.write(database: database!) }
        if area == "crash-check" {
            print(try AuditCrash.check(database: database!, ackedFile: acked!))
            return
        }
        let report =
            switch area {
            case "crypto": try CryptoBench(quick: quick).run()
            case "optimisers": try OptimiserBench(quick: quick).run()
            case "privacy": try PrivacyBench(quick: quick).run()
            case "averaging": try AveragingBench(quick: quick).run()
            case "audit": try AuditBench(quick: quick).run()
            case "delivery": try DeliveryBench(quick: quick).run()
            case "broker": try await BrokerBench(quick: quick, participants: participants).run()
            case "attack": try await AttackBench(quick: quick).run()
            case "secagg":
                try SecAggBench(
                    quick: quick,
                    participants: participants,
                    dimension: dimension,
                    neighbours: neighbours,
                    threshold: threshold,
                    dropoutFraction: dropoutFraction,
                    dropPhase: Self.phases[dropAt]!
                ).run()
            default: try TrainingBench(quick: quick).run()
            }
        print(json ? report.json : report.table)
    }
}

/// Runs the command (the asynchronous entry point, which top-level code would not pick).
func start() async { await Bench.main() }
await start()
