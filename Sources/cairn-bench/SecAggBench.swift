import CairnCrypto
import CairnSIMD
import CairnSecAgg

/// `cairn-bench secagg`: whole SecAgg+ rounds in one process, n = 100 participants, D = 10^6,
/// parameters by the rule for 10% dropouts and 5% corrupt, 10% of participants dropping after
/// ShareKeys. Each participant and the server run on one core (a participant is one machine).
///
/// - round-cpu: the whole round's CPU seconds, phase by phase (participants one after another,
///   then the broker), against the round's keystream expansions at libsodium's raw rate.
/// - client-mask: the median participant's masking (`k_u + 1` keystream expansions of `4·(D + 1)`
///   bytes, added into its vector) as GB/s of keystream; floor = libsodium's raw ChaCha20
///   keystream rate, the median of measurements between the participants' maskings.
/// - server-unmask: rebuilding every secret and removing every mask, as GB/s of keystream over the
///   server's expansions; same floor.
/// - upload: the bytes of one participant's MaskedInput against `4·D`; the key and share
///   messages are listed beside it.
///
/// The round's result is checked against the plain sum of the survivors' inputs; a wrong sum
/// fails the benchmark.
struct SecAggBench {
    let quick: Bool
    /// `n`, `D`, `k` and `t` when chosen on the command line (`k` and `t` otherwise by the rule).
    var participants: Int?
    var dimension: Int?
    var neighbours: Int?
    var threshold: Int?
    /// The fraction of participants that drop out, and the phase in which they stop answering.
    var dropoutFraction = 0.1
    var dropPhase = RoundPhase.maskedInput

    func run() throws -> BenchReport {
        var report = BenchReport(area: "secagg")
        let n = participants ?? (quick ? 20 : 100)
        let d = dimension ?? (quick ? 100_000 : 1_000_000)
        var parameters = try RoundParameters.choose(
            participants: n,
            dropoutFraction: dropoutFraction,
            corruptFraction: 0.05
        )
        if let neighbours, let threshold {
            parameters = RoundParameters(
                neighbours: neighbours,
                threshold: threshold,
                signatureThreshold: parameters.signatureThreshold
            )
        }
        let keys = try (0..<n).map { _ in try Ed25519.PrivateKey() }
        let config = try RoundConfig(
            federation: "bench",
            round: 1,
            baseModelDigest: [UInt8](repeating: 0, count: 32),
            dimension: d,
            quantisation: QuantisationParameters(scale: 65_536, clipBound: 1),
            maximumSampleCount: 1_000_000,
            roster: keys.map(\.publicKey),
            parameters: parameters
        )
        // Spread evenly over the roster: every ⌈1/fraction⌉-th participant, up to ⌈fraction·n⌉ of them.
        let dropCount = Int((dropoutFraction * Double(n) - 1e-9).rounded(.up))
        let droppers = Set((0..<dropCount).map { $0 * n / max(dropCount, 1) + min(3, n / max(dropCount, 1) - 1) })
        func sends(_ i: Int, _ phase: RoundPhase) -> Bool { !droppers.contains(i) || phase < dropPhase }
        let counted = (0..<n).filter { sends($0, .maskedInput) }
        let inputs = try (0..<n).map { i in try randomWords(d, seed: UInt8(i % 251)) }
        var server = SecAggServer(config: config)
        server.parallelism = .serial
        var clients = try keys.map { try SecAggClient(config: config, identity: $0) }

        // The floor of one keystream expansion: libsodium's raw ChaCha20 over one masked vector,
        // measured between the participants' maskings (the same statistic, the median, of both).
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * config.wordCount, alignment: 64)
        defer { raw.deallocate() }
        let rawKey = [UInt8](repeating: 7, count: 32)
        var rawSeconds: [Double] = []

        // Each phase: the participants' steps one after another, then the broker's, on one core each.
        var phases: [(name: String, clients: Times, server: Times)] = []
        var keyBytes = 0
        var shareBytes = 0
        var list: KeyList?
        var advertisements: [AdvertiseKeys] = []
        let advertise = try Times.measure {
            for i in 0..<n where sends(i, .advertiseKeys) {
                let message = try clients[i].advertise()
                keyBytes = message.encoded.count
                advertisements.append(message)
            }
        }
        let advertiseServer = try Times.measure {
            for message in advertisements { try server.receive(message) }
            list = try server.closeAdvertising()
        }
        phases.append(("advertise", advertise, advertiseServer))
        var shareMessages: [ShareKeys] = []
        let share = try Times.measure {
            for i in 0..<n where sends(i, .shareKeys) {
                let message = try clients[i].shareKeys(list!)
                shareBytes = max(shareBytes, message.encoded.count)
                shareMessages.append(message)
            }
        }
        var deliveries: [Int: ShareDelivery] = [:]
        let shareServer = try Times.measure {
            for message in shareMessages { try server.receive(message) }
            for delivery in try server.closeSharing() { deliveries[Int(delivery.recipient)] = delivery }
        }
        phases.append(("share", share, shareServer))

        var clientSeconds: [Double] = []
        var clientExpansions: [Int] = []
        var maskedBytes = 0
        var maskedInputs: [MaskedInput] = []
        let mask = try Times.measure {
            for i in counted {
                guard let delivery = deliveries[i] else { continue }
                rawSeconds.append(seconds { rawKeystreamPieces(raw, rawKey, .serial) })
                var masked: MaskedInput?
                let elapsed = try seconds {
                    masked = try clients[i].maskInput(delivery, input: inputs[i], sampleCount: 10, parallelism: .serial)
                }
                clientSeconds.append(elapsed)
                clientExpansions.append(delivery.shares.count + 1)
                maskedBytes = masked!.encoded.count
                maskedInputs.append(masked!)
            }
        }
        var request: ConsistencyRequest?
        let maskServer = try Times.measure {
            for masked in maskedInputs { try server.receive(masked) }
            request = try server.closeMasking()
        }
        maskedInputs = []
        phases.append(("mask", mask.minus(seconds: rawSeconds.reduce(0, +)), maskServer))
        var consistencyBytes = 0
        var signatures: [ConsistencySignature] = []
        let check = try Times.measure {
            for i in counted where sends(i, .consistencyCheck) {
                let signature = try clients[i].signSurvivors(request!)
                consistencyBytes = signature.encoded.count
                signatures.append(signature)
            }
        }
        var unmask: UnmaskRequest?
        let checkServer = try Times.measure {
            for signature in signatures { try server.receive(signature) }
            unmask = try server.closeChecking()
        }
        phases.append(("check", check, checkServer))
        var unmaskBytes = 0
        var responses: [UnmaskResponse] = []
        let reveal = try Times.measure {
            for i in counted where sends(i, .consistencyCheck) && sends(i, .unmasking) {
                let response = try clients[i].unmask(unmask!)
                unmaskBytes = max(unmaskBytes, response.encoded.count)
                responses.append(response)
            }
        }
        var result: AggregateResult?
        var serverSeconds = 0.0
        let revealServer = try Times.measure {
            for response in responses { try server.receive(response) }
            serverSeconds = try seconds { result = try server.finish() }
        }
        phases.append(("unmask", reveal, revealServer))
        let expansions = server.unmaskingExpansions
        rawSeconds.sort()
        let rawMedian = rawSeconds.isEmpty ? Double.nan : rawSeconds[rawSeconds.count / 2]
        let rawRate = Double(4 * config.wordCount) / rawMedian / 1e9

        var expected = [UInt32](repeating: 0, count: d)
        for i in counted {
            for j in 0..<d { expected[j] &+= inputs[i][j] }
        }
        guard result?.sum == expected, result?.sampleCount == UInt32(10 * counted.count) else {
            throw BenchError("the unmasked sum differs from the plain sum of the survivors' inputs")
        }

        // The median participant's masking against the median raw expansion, per expansion.
        let perExpansion = zip(clientSeconds, clientExpansions).map { $0 / Double($1) }.sorted()
        let medianExpansions = clientExpansions.sorted()[clientExpansions.count / 2]
        let gbPerExpansion = Double(4 * config.wordCount) / 1e9
        let base = [("n", "\(n)"), ("D", "\(d)"), ("k", "\(parameters.neighbours)"), ("t", "\(parameters.threshold)")]
        let participantsCPU = phases.reduce(0) { $0 + $1.clients.cpu }
        let roundCPU = participantsCPU + phases.reduce(0) { $0 + $1.server.cpu }
        let roundWall = phases.reduce(0) { $0 + $1.clients.wall + $1.server.wall }
        let keystreamFloor = Double(clientExpansions.reduce(0, +) + expansions) * rawMedian
        var phaseParams: [(String, String)] = []
        for phase in phases {
            phaseParams.append(("\(phase.name)-participants-cpu", format(phase.clients.cpu)))
            phaseParams.append(("\(phase.name)-broker-cpu", format(phase.server.cpu)))
        }
        report.cases.append(
            BenchCase(
                name: "round-cpu",
                params: base + [
                    ("T", "\(parameters.signatureThreshold)"), ("dropped", "\(droppers.count)"),
                    ("drop-at", "\(dropPhase)"), ("wall-seconds", format(roundWall)),
                    ("per-participant-cpu", format(participantsCPU / Double(n))),
                ] + phaseParams,
                value: roundCPU,
                unit: "s",
                floor: keystreamFloor
            )
        )
        report.cases.append(
            BenchCase(
                name: "client-mask",
                params: base + [
                    ("dropped", "\(droppers.count)"), ("drop-at", "\(dropPhase)"),
                    ("expansions", "\(medianExpansions)"),
                    ("seconds", format(perExpansion[perExpansion.count / 2] * Double(medianExpansions))),
                    ("floor-seconds", format(rawMedian * Double(medianExpansions))),
                ],
                value: gbPerExpansion / perExpansion[perExpansion.count / 2],
                unit: "GB/s",
                floor: rawRate
            )
        )
        report.cases.append(
            BenchCase(
                name: "server-unmask",
                params: base + [
                    ("expansions", "\(expansions)"), ("seconds", format(serverSeconds)),
                    ("floor-seconds", format(Double(expansions) * gbPerExpansion / rawRate)),
                ],
                value: Double(expansions) * gbPerExpansion / serverSeconds,
                unit: "GB/s",
                floor: rawRate
            )
        )
        report.cases.append(
            BenchCase(
                name: "upload-masked-input",
                params: [
                    ("D", "\(d)"), ("advertise-bytes", "\(keyBytes)"), ("share-keys-bytes", "\(shareBytes)"),
                    ("signature-bytes", "\(consistencyBytes)"), ("unmask-bytes", "\(unmaskBytes)"),
                    ("overhead-percent", format(Double(maskedBytes - 4 * d) / Double(4 * d) * 100)),
                ],
                value: Double(maskedBytes),
                unit: "bytes",
                floor: Double(4 * d)
            )
        )
        return report
    }

    /// Wall and process CPU seconds of one step.
    struct Times {
        var wall: Double
        var cpu: Double

        static func measure(_ body: () throws -> Void) rethrows -> Times {
            let cpuStart = processCPUSeconds()
            let wall = try seconds(body)
            return Times(wall: wall, cpu: processCPUSeconds() - cpuStart)
        }

        /// Without `seconds` of floor measurements made inside the step (single-threaded, so CPU too).
        func minus(seconds: Double) -> Times { Times(wall: wall - seconds, cpu: cpu - seconds) }
    }

    private func format(_ x: Double) -> String { "\((x * 10000).rounded() / 10000)" }

    /// Pseudorandom words from the project's PRG (fast; the values do not matter, only their sum).
    private func randomWords(_ count: Int, seed: UInt8) throws -> [UInt32] {
        var out = [UInt32](repeating: 0, count: count)
        let stream = try ChaCha20Keystream(seed: SecretBytes(copying: [UInt8](repeating: seed, count: 32)))
        try out.withUnsafeMutableBufferPointer { try MaskExpansion.add(stream, to: $0, parallelism: .allCores) }
        return out
    }
}
