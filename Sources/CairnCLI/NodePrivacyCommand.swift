import ArgumentParser
import CairnExchange
import Foundation

extension NodeCommand {
    /// `cairn-node privacy`: the privacy accountant, offline.
    struct Privacy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compute the (ε, δ) that rounds of Gaussian noise give, or the noise a budget needs.",
            discussion: """
                The accountant Cairn's differential privacy is built on (federations do not add noise to \
                their rounds yet), without a broker: rounds of the \
                Gaussian mechanism at a noise multiplier z (the noise's standard deviation over the L2 bound \
                of one participant's update), composed in Rényi DP and converted to (ε, δ) with the bound of \
                Canonne, Kamath and Steinke (2020) at the best order. With --noise-multiplier it prints the ε \
                spent; with --epsilon, the smallest z (3 significant digits, rounded up) that stays within it. \
                The distributed discrete Gaussian of a federation adds a small term for its integer noise; \
                this is the mechanism without it.
                """
        )

        @Option(help: "The noise multiplier z (above 0).") var noiseMultiplier: Double?
        @Option(help: "A target ε (above 0): prints the noise multiplier it needs.") var epsilon: Double?
        @Option(help: "Rounds composed (1 to 100000).") var rounds: Int
        @Option(help: "δ (above 0, below 1).") var delta = 1e-5
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (noiseMultiplier == nil) != (epsilon == nil) else {
                throw ValidationError("give exactly one of --noise-multiplier and --epsilon")
            }
            if let z = noiseMultiplier, !(z.isFinite && z > 0) {
                throw ValidationError("--noise-multiplier must be above 0")
            }
            if let e = epsilon, !(e.isFinite && e > 0) { throw ValidationError("--epsilon must be above 0") }
            guard (1...100_000).contains(rounds) else { throw ValidationError("--rounds must be 1 to 100000") }
            guard delta > 0, delta < 1 else { throw ValidationError("--delta must be above 0 and below 1") }
        }

        /// What it prints with `--json`.
        struct Result: Encodable {
            var noiseMultiplier: Double
            var rounds: Int
            var delta: Double
            var epsilon: Double
            var order: Double
        }

        func run() throws {
            var z = noiseMultiplier ?? 0
            if let epsilon {
                guard let needed = PrivacyAccountant.noiseMultiplier(epsilon: epsilon, delta: delta, rounds: rounds)
                else { throw CLIError("no noise multiplier up to 10^6 keeps \(rounds) rounds within ε = \(epsilon)") }
                z = needed
            }
            let spent = PrivacyAccountant.epsilon(of: .gaussian(noiseMultiplier: z), rounds: rounds, delta: delta)
            if json {
                print(
                    try encodeJSON(
                        Result(
                            noiseMultiplier: z,
                            rounds: rounds,
                            delta: delta,
                            epsilon: spent.epsilon,
                            order: spent.order
                        )
                    )
                )
            } else if let epsilon {
                print(
                    "noise multiplier \(z) keeps \(rounds) rounds within ε = \(epsilon) at δ = \(delta) (they spend ε = \(rounded(spent.epsilon)))"
                )
            } else {
                print(
                    "\(rounds) rounds at noise multiplier \(z): ε = \(rounded(spent.epsilon)) at δ = \(delta) (Rényi order \(rounded(spent.order)))"
                )
            }
        }
    }
}
