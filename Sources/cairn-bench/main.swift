import ArgumentParser
import CairnWire

/// `cairn-bench <area>`: measures one area of Cairn against a reference measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "Measure Cairn against a floor measured in the same run, and print the figures.",
        discussion: """
            Areas: crypto (AEAD, secretstream and BLAKE2b throughput for 1 MiB and 64 MiB messages, \
            Ed25519 sign and verify rates, each against direct libsodium calls). Other areas arrive \
            with their issues. Run it as: swift run -c release cairn-bench crypto --json
            """,
        version: CairnVersion.software
    )

    @Argument(help: "What to measure: crypto.")
    var area: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Fewer repetitions: a smoke run, not figures to quote.")
    var quick = false

    func validate() throws {
        guard area == "crypto" else {
            throw ValidationError("unknown or not yet implemented area '\(area)'; available: crypto")
        }
    }

    func run() throws {
        let report = try CryptoBench(quick: quick).run()
        print(json ? report.json : report.table)
    }
}

Bench.main()
