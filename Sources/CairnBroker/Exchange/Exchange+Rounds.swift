import CairnAudit
public import CairnCrypto
public import CairnExchange
import CairnModels
import CairnSecAgg
import CairnWire
import CoreMetrics
import Foundation
import GRDB
import Logging

/// The phases of a round as the HTTP API names them.
public enum ExchangePhase: String, Sendable, CaseIterable {
    /// AdvertiseKeys.
    case advertise
    /// ShareKeys.
    case share
    /// MaskedInput.
    case mask
    /// ConsistencyCheck.
    case check
    /// Unmasking.
    case unmask
    /// The round produced a model.
    case finished
    /// The round stopped without a model.
    case aborted

    /// The five phases participants answer.
    static let answering: [Self] = [.advertise, .share, .mask, .check, .unmask]

    func deadline(_ d: PhaseDeadlines) -> Int {
        switch self {
        case .advertise: d.advertise
        case .share: d.share
        case .mask: d.mask
        case .check: d.check
        case .unmask: d.unmask
        case .finished, .aborted: 0
        }
    }

    var next: Self {
        switch self {
        case .advertise: .share
        case .share: .mask
        case .mask: .check
        case .check: .unmask
        case .unmask, .finished: .finished
        case .aborted: .aborted
        }
    }
}

/// A round in progress.
struct OpenRound: Sendable {
    let federation: String
    let number: Int
    let spec: FederationSpec
    let config: RoundConfig
    /// The configuration as the round view sends it (encoded once, not on every poll).
    let configHex: String
    var server: SecAggServer
    var phase: ExchangePhase
    var deadline: Int64
    /// Who should answer the open phase.
    var expected: Set<UInt16>
    /// Who has.
    var answered: Set<UInt16> = []
    /// Whether it is the federation's statistics round (``FeatureStatistics``), not a training round.
    let statistics: Bool

    init(
        federation: String,
        number: Int,
        spec: FederationSpec,
        config: RoundConfig,
        server: SecAggServer,
        phase: ExchangePhase,
        deadline: Int64,
        expected: Set<UInt16>,
        statistics: Bool
    ) {
        self.statistics = statistics
        self.federation = federation
        self.number = number
        self.spec = spec
        self.config = config
        configHex = Hex.encode(config.encoded)
        self.server = server
        self.phase = phase
        self.deadline = deadline
        self.expected = expected
    }
}

/// Where a masked-input upload goes, handed to the HTTP layer while it streams.
public struct UploadTicket: Sendable {
    let federation: String
    let round: Int
    let index: UInt16
    /// The body's layout.
    public let layout: MaskedUpload
    /// The key it is encrypted under.
    public let key: SymmetricKey
    /// Where it is decrypted to; the upload slot's.
    public let buffer: UploadBuffer

    /// The participant's upload, by federation and roster index (one at a time each).
    var slotName: String { "\(federation)/\(index)" }
}

extension Exchange {
    // MARK: The clock

    /// Opens rounds where a federation is training and has enough participants, and closes phases
    /// that everyone answered or whose deadline passed. The broker's round service calls it.
    public func tick() {
        flushRefusals()
        let now = settings.now()
        for federation in Array(open.keys) where open[federation]!.deadline <= now {
            advance(federation, dueToDeadline: true)
        }
        do {
            let training = try store.read { db in
                try String.fetchAll(db, sql: "SELECT id FROM federations WHERE state = 'training' AND rounds_left > 0")
            }
            for federation in training where open[federation] == nil { try openRound(federation, now: now) }
        } catch {
            logger.error("opening a round failed", metadata: ["error": "\(error)"])
        }
    }

    /// Stops a federation's training (`training.stop` by the broker, with the reason) when its
    /// policy's ``RoundPolicy/patience`` is spent: checked before each round opens, on the scores
    /// reported by then for the rounds since training was last started. Called only when a round
    /// is about to open (enough participants), so a federation waiting for them reads nothing.
    private func stopOnPlateau(_ federation: String) throws -> Bool {
        let spec = try federationSpec(federation)
        guard let patience = spec.policy.patience, patience > 0 else { return false }
        let scores = try store.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT round, log_loss FROM evaluations
                    WHERE federation = ? AND round > (SELECT trained_from FROM federations WHERE id = ?)
                    ORDER BY round
                    """,
                arguments: [federation, federation]
            )
        }
        // Each round's median score, from rounds scored by enough participants.
        let losses = Dictionary(grouping: scores) { $0["round"] as Int }
            .filter { $0.value.count >= EvaluationReport.minimumEvaluators }
            .map { (round: $0.key, loss: FederatedModel.median($0.value.map { $0["log_loss"] as Double })!) }
            .sorted { $0.round < $1.round }
        guard let best = FederatedModel.plateau(losses, patience: patience) else { return false }
        // The reason names the best round, never its loss: with an odd number of scores the
        // median is one participant's own score.
        let reason =
            "early stop: the median log loss has not improved for \(patience) scored rounds since its best, round \(best.round)"
        try audit(
            actor: brokerActor,
            action: "training.stop",
            objectType: "federation",
            objectID: federation,
            reason: reason
        )
        try store.write { db in
            try db.execute(
                sql: "UPDATE federations SET state = 'stopped', rounds_left = 0, stopped_because = ? WHERE id = ?",
                arguments: [reason, federation]
            )
        }
        logger.info("training stopped", metadata: ["federation": "\(federation)", "reason": "\(reason)"])
        return true
    }

    private func openRound(_ federation: String, now: Int64) throws {
        let spec = try federationSpec(federation)
        let policy = spec.policy
        let roster = try store.read { db in
            try Data.fetchAll(
                db,
                sql:
                    "SELECT key FROM members WHERE federation = ? AND role = 'participant' AND status = 'active' ORDER BY key",
                arguments: [federation]
            ).map { try Ed25519.PublicKey(rawRepresentation: Array($0)) }
        }
        guard roster.count >= policy.minimumParticipants else { return }
        if try stopOnPlateau(federation) { return }
        let (number, base) = try store.read { db in
            let last =
                try Int.fetchOne(db, sql: "SELECT max(round) FROM rounds WHERE federation = ?", arguments: [federation])
                ?? 0
            return (last + 1, try Self.modelRecord(db, of: federation))
        }
        let parameters: RoundParameters
        do {
            parameters = try RoundParameters.choose(
                participants: roster.count,
                dropoutFraction: policy.dropoutFraction,
                corruptFraction: policy.corruptFraction
            )
        } catch {
            // Small groups: full SecAgg with the least safe thresholds and no dropout tolerance.
            let n = roster.count
            parameters = RoundParameters(neighbours: n - 1, threshold: (n - 1) / 2 + 1, signatureThreshold: n / 2 + 1)
        }
        // A federation that pools statistics sums them before it trains (once they are stored,
        // every later round trains).
        let statistics = policy.poolsStatistics && !base.pooled
        let config = try RoundConfig(
            federation: federation,
            round: UInt64(number),
            baseModelDigest: statistics ? try FeatureStatistics.roundDigest(base: base.digest) : base.digest,
            dimension: statistics
                ? FeatureStatistics.dimension(inputs: spec.schema.inputCount)
                : try FederatedModel.dimension(of: spec),
            quantisation: try FederatedModel.quantisation(policy),
            maximumSampleCount: policy.maximumSampleCount,
            roster: roster,
            parameters: parameters
        )
        let server = SecAggServer(config: config)
        let deadline = now + Int64(policy.deadlines.advertise)
        // The log first: a crash before the insert opens the same round again (same configuration).
        try audit(
            actor: brokerActor,
            action: "round.open",
            objectType: "round",
            objectID: "\(federation)/\(number)",
            reason: "\(roster.count) participants, \(parameters)\(statistics ? ", feature statistics" : "")",
            digests: [.init(name: "config", bytes: config.digest), .init(name: "model", bytes: base.digest)]
        )
        try store.write { db in
            try db.execute(
                sql:
                    "INSERT INTO rounds (federation, round, phase, deadline, config, server, statistics) VALUES (?, ?, 'advertise', ?, ?, ?, ?)",
                arguments: [
                    federation, number, deadline, Data(config.encoded),
                    Data(server.savedState(includingSum: false).copiedBytes), statistics,
                ]
            )
        }
        open[federation] = OpenRound(
            federation: federation,
            number: number,
            spec: spec,
            config: config,
            server: server,
            phase: .advertise,
            deadline: deadline,
            expected: Set(0..<UInt16(roster.count)),
            statistics: statistics
        )
        metrics.rounds.increment()
        logger.info(
            "round opened",
            metadata: [
                "federation": "\(federation)", "round": "\(number)", "participants": "\(roster.count)",
                "parameters": "\(parameters)",
            ]
        )
    }

    /// Closes the open phase of `federation`'s round and opens the next, or finishes or aborts it.
    func advance(_ federation: String, dueToDeadline: Bool) {
        guard var round = open[federation] else { return }
        let closing = round.phase
        // The round's only copy from here (its running sum is not duplicated when it changes);
        // it goes back into `open` unless it finishes or aborts (`finish` and `abort` leave it out).
        open[federation] = nil
        do {
            var outbox: [(recipient: Int, message: [UInt8])] = []
            var expected: Set<UInt16> = []
            switch closing {
            case .advertise:
                let list = try round.server.closeAdvertising()
                outbox = [(-1, list.encoded)]
                expected = Set(list.entries.map(\.index))
            case .share:
                let deliveries = try round.server.closeSharing()
                outbox = deliveries.map { (Int($0.recipient), $0.encoded) }
                expected = Set(deliveries.map(\.recipient))
            case .mask:
                spareBuffers.removeAll()
                let request = try round.server.closeMasking()
                outbox = [(-1, request.encoded)]
                expected = Set(request.survivors)
            case .check:
                let request = try round.server.closeChecking()
                outbox = [(-1, request.encoded)]
                expected = Set(request.survivors)
            case .unmask:
                try finish(&round)
                return
            case .finished, .aborted:
                open[federation] = round
                return
            }
            round.phase = closing.next
            round.deadline = settings.now() + Int64(round.phase.deadline(round.spec.policy.deadlines))
            round.expected = expected
            round.answered = []
            let saved = round.server.savedState(includingSum: false)
            let (number, phase, deadline) = (round.number, round.phase.rawValue, round.deadline)
            try audit(
                actor: brokerActor,
                action: "round.phase",
                objectType: "round",
                objectID: "\(federation)/\(round.number)",
                reason: "\(closing.rawValue) closed \(dueToDeadline ? "at its deadline" : "with every answer in") "
                    + "(\(round.expected.count) to answer \(round.phase.rawValue))"
            )
            try store.write { db in
                for item in outbox {
                    try db.execute(
                        sql:
                            "INSERT OR REPLACE INTO outbox (federation, round, phase, recipient, message) VALUES (?, ?, ?, ?, ?)",
                        arguments: [federation, number, phase, item.recipient, Data(item.message)]
                    )
                }
                try db.execute(
                    sql: "UPDATE rounds SET phase = ?, deadline = ?, server = ? WHERE federation = ? AND round = ?",
                    arguments: [phase, deadline, Data(saved.copiedBytes), federation, number]
                )
                // The running sum changes only while masking: stored once, in place, as it closes.
                if closing == .mask {
                    try round.server.withRunningSum { sum in
                        try db.execute(
                            sql:
                                "INSERT OR REPLACE INTO round_sums (federation, round, sum) VALUES (?, ?, zeroblob(?))",
                            arguments: [federation, number, 4 * sum.count]
                        )
                        try db.writeBlob(
                            "round_sums",
                            "sum",
                            row: db.lastInsertedRowID,
                            from: UnsafeRawBufferPointer(sum)
                        )
                    }
                }
            }
            open[federation] = round
        } catch {
            abort(federation, round, reason: "\(error)")
        }
    }

    /// Unmasks and stores the new model; `advance` has taken the round out of `open`.
    private func finish(_ round: inout OpenRound) throws {
        let (model, survivors, samples, sumDigest) = try unmask(&round)
        let digest = try FederatedModel.digest(
            model.model,
            standardisation: model.standardisation,
            control: model.control,
            of: round.spec
        )
        let (federation, number) = (round.federation, round.number)
        // The log first: a crash before the write below resumes the round in unmasking, which
        // finishes it again with the same sum and model (the entries repeat; none is missing).
        try audit(
            actor: brokerActor,
            action: "round.aggregate",
            objectType: "round",
            objectID: "\(federation)/\(number)",
            reason: "\(survivors) inputs, \(samples) samples\(round.statistics ? ", feature statistics" : "")",
            digests: [.init(name: "sum", bytes: sumDigest)]
        )
        try audit(
            actor: brokerActor,
            action: "model.update",
            objectType: "model",
            objectID: "\(federation)/\(number)",
            digests: [.init(name: "base", bytes: round.config.baseModelDigest), .init(name: "model", bytes: digest)]
        )
        try store.write { db in
            try Self.storeModel(
                db,
                federation: federation,
                round: number,
                digest: digest,
                parameters: model.model.parameters,
                contributors: survivors,
                standardisation: round.spec.policy.poolsStatistics ? model.standardisation : nil
            )
            if let state = model.optimiserState {
                try db.execute(
                    sql:
                        "DELETE FROM optimiser_state WHERE federation = ?; INSERT INTO optimiser_state (federation, round, state) VALUES (?, ?, ?)",
                    arguments: [federation, federation, number, Self.blob(state)]
                )
            }
            try db.execute(
                sql:
                    "UPDATE rounds SET phase = 'finished', deadline = 0, server = x'', included = ?, model_digest = ? WHERE federation = ? AND round = ?",
                arguments: [survivors, Data(digest), federation, number]
            )
            // The statistics round is not one of the training rounds the operator asked for.
            if !round.statistics {
                try db.execute(
                    sql: "UPDATE federations SET rounds_left = max(rounds_left - 1, 0) WHERE id = ?",
                    arguments: [federation]
                )
            }
            try db.execute(
                sql:
                    "DELETE FROM outbox WHERE federation = ? AND round = ?; DELETE FROM round_sums WHERE federation = ? AND round = ?",
                arguments: [federation, number, federation, number]
            )
        }
        recordAttendance(round)
        metrics.finished.increment()
        logger.info(
            "round finished",
            metadata: ["federation": "\(federation)", "round": "\(number)", "included": "\(survivors)"]
        )
        // The checkpoint the federation's nodes witness after this round (the same one for all).
        if let size = checkpoint() {
            try? store.write { db in
                try db.execute(
                    sql: "UPDATE models SET checkpoint = ? WHERE federation = ? AND round = ?",
                    arguments: [size, federation, number]
                )
            }
        }
    }

    // MARK: Witnesses

    /// `GET /v1/federations/{federation}/checkpoint?from=M`: the checkpoint the participant's
    /// node witnesses (the one signed when the federation's latest round finished, else the
    /// latest), with a consistency proof from the size `from` it saw last. When `from` is beyond
    /// that checkpoint, the latest checkpoint is served instead.
    public func witnessView(_ caller: Caller, federation: String, from: Int) throws -> WitnessView {
        _ = try requireMember(caller, of: federation)
        let roundCheckpoint = try store.read { db in
            try Int.fetchOne(
                db,
                sql:
                    "SELECT checkpoint FROM models WHERE federation = ? AND checkpoint IS NOT NULL ORDER BY round DESC LIMIT 1",
                arguments: [federation]
            )
        }
        var note = try roundCheckpoint.flatMap { try log.checkpoint(size: $0) }
        var size = roundCheckpoint ?? 0
        if note == nil || from > size {
            guard let latest = try log.latestCheckpoint() else {
                throw ExchangeError(.notFound, "the audit log has no signed checkpoint yet")
            }
            note = latest
            size = try Checkpoint(text: SignedNote.open(latest, verifier: keys.checkpoint.verifier)).size
        }
        guard from >= 0, from <= size else {
            throw ExchangeError(.conflict, "no checkpoint of at least \(from) entries has been signed")
        }
        return WitnessView(
            checkpoint: note!,
            from: from,
            proof: try log.consistencyProof(from: from, to: size).map { Hex.encode($0.bytes) }
        )
    }

    /// `POST /v1/federations/{federation}/cosignatures`: stores the participant's cosignature of
    /// a checkpoint after checking it against the stored checkpoint and the caller's key.
    public func cosign(_ caller: Caller, federation: String, _ report: CosignatureReport) throws -> CosignatureReceipt {
        _ = try requireMember(caller, of: federation)
        guard report.size >= 0, report.time >= 0, report.signature.utf8.count == 128,
            let signature = try? Hex.decode(report.signature)
        else {
            throw ExchangeError(.malformed, "a cosignature needs a size and a time ≥ 0 and a 64-byte signature in hex")
        }
        let cosignature = Cosignature(key: caller.key, time: report.time, signature: signature)
        do {
            try log.addCosignature(cosignature, size: report.size)
        } catch let error as AuditError where error.code == .outOfRange {
            throw ExchangeError(.notFound, error.message)
        } catch let error as AuditError where error.code == .badSignature {
            throw ExchangeError(.malformed, error.message)
        }
        return CosignatureReceipt(size: report.size, witnesses: try log.cosignatureCount(size: report.size))
    }

    /// Removes the masks and adds the mean update to the base model, which is read here rather
    /// than held through the round and changed in place. The sum is dropped on return, before the
    /// new model is stored: the new model's parameters, survivor and sample counts, sum digest.
    private func unmask(_ round: inout OpenRound) throws -> (NextModel, Int, UInt32, [UInt8]) {
        let result = try round.server.finish()
        let spec = round.spec
        let hash = try BLAKE2b(domain: .aggregate)
        result.sum.withUnsafeBytes { hash.update($0) }
        let (base, state) = try store.read { db in
            (
                try Self.model(db, of: spec, before: round.number),
                try Self.optimiserState(db, of: spec, before: round.number)
            )
        }
        var next = NextModel(
            model: base.model,
            standardisation: base.standardisation,
            control: base.control,
            optimiserState: nil
        )
        if round.statistics {
            next.standardisation = try FeatureStatistics.standardisation(
                sum: result.sum,
                rows: result.sampleCount,
                contributors: result.survivors.count,
                maximumRows: spec.policy.maximumSampleCount,
                inputs: spec.schema.inputCount
            )
        } else {
            try FederatedModel.checkBounds(
                sum: result.sum,
                sampleCount: result.sampleCount,
                contributors: result.survivors.count,
                policy: spec.policy
            )
            var moments = state
            try FederatedModel.apply(
                sum: result.sum,
                sampleCount: result.sampleCount,
                to: &next.model,
                state: &moments,
                policy: spec.policy,
                fraction: Float(result.survivors.count) / Float(round.config.participantCount)
            )
            try FederatedModel.checkStorable(next.model)
            if !moments.isEmpty { next.optimiserState = moments }
            if next.control != nil { next.control = moments }
        }
        return (next, result.survivors.count, result.sampleCount, try hash.finalize())
    }

    /// What a round makes: the next model, its standardisation, SCAFFOLD's server control
    /// variate (in a SCAFFOLD federation) and the server optimiser's state (nil when the rule
    /// keeps none or the round trained nothing).
    struct NextModel {
        var model: Model
        var standardisation: Standardisation
        var control: [Float]?
        var optimiserState: [Float]?
    }

    /// The server optimiser's state after the federation's latest round before `round`, or its
    /// initial state.
    static func optimiserState(_ db: Database, of spec: FederationSpec, before round: Int) throws -> [Float] {
        let optimiser = spec.policy.serverOptimiser ?? ServerOptimiser(.fedavg)
        let count = try FederatedModel.architecture(of: spec).parameterCount
        guard
            let data = try Data.fetchOne(
                db,
                sql: "SELECT state FROM optimiser_state WHERE federation = ? AND round < ? ORDER BY round DESC LIMIT 1",
                arguments: [spec.id, round]
            )
        else { return optimiser.initialState(parameters: count) }
        let state = floats(data)
        guard state.count == optimiser.stateCount(parameters: count) else {
            throw ExchangeError(
                .internal,
                "the stored server optimiser state of federation \(spec.id) has the wrong size"
            )
        }
        return state
    }

    /// Floats as a little-endian float32 blob, and back.
    static func blob(_ values: [Float]) -> Data {
        var w = ByteWriter(capacity: 4 * values.count)
        for x in values { w.u32(x.bitPattern) }
        return Data(w.bytes)
    }

    static func floats(_ data: Data) -> [Float] {
        var reader = ByteReader(Array(data))
        return ((try? reader.u32Words(data.count / 4, "floats")) ?? []).map(Float.init(bitPattern:))
    }

    /// Records an abort; `advance` has taken the round out of `open`.
    private func abort(_ federation: String, _ round: OpenRound, reason: String) {
        metrics.aborted.increment()
        logger.notice(
            "round aborted",
            metadata: ["federation": "\(federation)", "round": "\(round.number)", "reason": "\(reason)"]
        )
        do {
            try audit(
                actor: brokerActor,
                action: "round.abort",
                objectType: "round",
                objectID: "\(federation)/\(round.number)",
                outcome: .failed,
                reason: reason
            )
            try store.write { db in
                try db.execute(
                    sql:
                        "UPDATE rounds SET phase = 'aborted', deadline = 0, server = x'', reason = ? WHERE federation = ? AND round = ?",
                    arguments: [reason, federation, round.number]
                )
                try db.execute(
                    sql:
                        "DELETE FROM outbox WHERE federation = ? AND round = ?; DELETE FROM round_sums WHERE federation = ? AND round = ?",
                    arguments: [federation, round.number, federation, round.number]
                )
            }
        } catch {
            logger.error("recording an abort failed", metadata: ["error": "\(error)"])
        }
        recordAttendance(round)
        checkpoint()
    }

    /// Counts, for each participant on an ended round's roster, the rounds in a row it answered
    /// nothing; one that reaches the policy's ``RoundPolicy/inactiveAfter`` is marked inactive
    /// (audited first) and left out of later rosters until its node calls again
    /// (``admit(_:)``). One answer resets its count.
    func recordAttendance(_ round: OpenRound) {
        let limit = round.spec.policy.inactiveAfter ?? RoundPolicy.defaultInactiveAfter
        do {
            let answered = try store.read { db in
                Set(
                    try Int.fetchAll(
                        db,
                        sql: "SELECT DISTINCT participant FROM answers WHERE federation = ? AND round = ?",
                        arguments: [round.federation, round.number]
                    )
                )
            }
            for (index, key) in round.config.roster.enumerated() {
                let raw = Data(key.rawRepresentation)
                if answered.contains(index) {
                    try store.write { db in
                        try db.execute(
                            sql: "UPDATE members SET missed = 0 WHERE key = ? AND federation = ?",
                            arguments: [raw, round.federation]
                        )
                    }
                    continue
                }
                let missed = try store.read { db in
                    try Int.fetchOne(
                        db,
                        sql: "SELECT missed FROM members WHERE key = ? AND federation = ? AND status = 'active'",
                        arguments: [raw, round.federation]
                    )
                }
                guard let missed else { continue }
                if missed + 1 >= limit {
                    try audit(
                        actor: brokerActor,
                        action: "member.inactive",
                        objectType: "member",
                        objectID: key.fingerprint,
                        reason:
                            "answered nothing in \(missed + 1) rounds in a row of federation \(round.federation); left out of its rosters until it calls again"
                    )
                }
                try store.write { db in
                    try db.execute(
                        sql: """
                            UPDATE members SET missed = missed + 1,
                                status = CASE WHEN missed + 1 >= ? THEN 'inactive' ELSE status END
                            WHERE key = ? AND federation = ? AND status = 'active'
                            """,
                        arguments: [limit, raw, round.federation]
                    )
                }
            }
        } catch {
            logger.error("recording who answered failed", metadata: ["error": "\(error)"])
        }
    }

    /// Every round left open by a previous run resumes in the phase it was in, from the state
    /// saved when that phase opened; answers given since are asked for again (the node sees
    /// `answered: false`), and each open phase gets its full deadline again. A round that cannot
    /// be restored is aborted.
    static func restore(store: BrokerStore, log: AuditLog, actor: String, now: Int64) throws -> [String: OpenRound] {
        let rows = try store.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT r.federation, r.round, r.phase, r.config, r.server, r.statistics, s.rowid AS sum_row,
                        length(s.sum) AS sum_size
                    FROM rounds r LEFT JOIN round_sums s USING (federation, round)
                    WHERE r.phase NOT IN ('finished', 'aborted')
                    """
            )
        }
        var open: [String: OpenRound] = [:]
        for row in rows {
            let federation: String = row["federation"]
            let number: Int = row["round"]
            do {
                guard let phase = ExchangePhase(rawValue: row["phase"]) else {
                    throw ExchangeError(.internal, "unknown phase")
                }
                let specJSON = try store.read { db in
                    try String.fetchOne(db, sql: "SELECT spec FROM federations WHERE id = ?", arguments: [federation])!
                }
                let spec = try JSONDecoder().decode(FederationSpec.self, from: Data(specJSON.utf8))
                let config = try RoundConfig(decoding: Array(row["config"] as Data))
                var sum: [UInt32]? = nil
                if let size = row["sum_size"] as Int? {
                    let rowID: Int64 = row["sum_row"]
                    sum = try store.read { db in
                        try [UInt32](unsafeUninitializedCapacity: size / 4) { buffer, count in
                            try db.readBlob(
                                "round_sums",
                                "sum",
                                row: rowID,
                                into: UnsafeMutableRawBufferPointer(buffer)
                            )
                            count = buffer.count
                        }
                    }
                }
                let server = try SecAggServer(
                    restoring: SecretBytes(copying: Array(row["server"] as Data)),
                    sum: sum
                )
                let messages = try store.write { db -> [Row] in
                    try db.execute(
                        sql: "DELETE FROM answers WHERE federation = ? AND round = ? AND phase = ?",
                        arguments: [federation, number, phase.rawValue]
                    )
                    _ = try Self.modelRecord(db, of: federation, before: number)  // refuse to resume without it
                    return try Row.fetchAll(
                        db,
                        sql: "SELECT recipient, message FROM outbox WHERE federation = ? AND round = ? AND phase = ?",
                        arguments: [federation, number, phase.rawValue]
                    )
                }
                let expected: Set<UInt16>
                switch phase {
                case .advertise:
                    expected = Set(0..<UInt16(config.participantCount))
                case .share:
                    expected = Set(try KeyList(decoding: Array(messages[0]["message"] as Data)).entries.map(\.index))
                case .mask:
                    expected = Set(messages.map { UInt16($0["recipient"] as Int) })
                case .check:
                    expected = Set(try ConsistencyRequest(decoding: Array(messages[0]["message"] as Data)).survivors)
                case .unmask:
                    expected = Set(try UnmaskRequest(decoding: Array(messages[0]["message"] as Data)).survivors)
                case .finished, .aborted:
                    continue
                }
                let deadline = now + Int64(phase.deadline(spec.policy.deadlines))
                try store.write { db in
                    try db.execute(
                        sql: "UPDATE rounds SET deadline = ? WHERE federation = ? AND round = ?",
                        arguments: [deadline, federation, number]
                    )
                }
                open[federation] = OpenRound(
                    federation: federation,
                    number: number,
                    spec: spec,
                    config: config,
                    server: server,
                    phase: phase,
                    deadline: deadline,
                    expected: expected,
                    statistics: row["statistics"]
                )
                _ = try log.append {
                    AuditEntry(
                        sequence: $0,
                        time: AuditEntry.now(),
                        actor: actor,
                        action: "round.resume",
                        objectType: "round",
                        objectID: "\(federation)/\(number)",
                        outcome: .succeeded,
                        reason: "resumed in \(phase.rawValue) after a restart"
                    )
                }
            } catch {
                try store.write { db in
                    try db.execute(
                        sql:
                            "UPDATE rounds SET phase = 'aborted', deadline = 0, server = x'', reason = ? WHERE federation = ? AND round = ?",
                        arguments: ["could not resume after a restart: \(error)", federation, number]
                    )
                }
                _ = try log.append {
                    AuditEntry(
                        sequence: $0,
                        time: AuditEntry.now(),
                        actor: actor,
                        action: "round.abort",
                        objectType: "round",
                        objectID: "\(federation)/\(number)",
                        outcome: .failed,
                        reason: "could not resume after a restart"
                    )
                }
            }
        }
        return open
    }

    // MARK: Participants

    /// `GET /v1/federations/{federation}`.
    public func federationInfo(_ caller: Caller, federation: String) throws -> FederationInfo {
        _ = try requireMember(caller, of: federation)
        let spec = try federationSpec(federation)
        let (digest, round) = try store.read { db -> ([UInt8], Int) in
            let row = try Row.fetchOne(
                db,
                sql: "SELECT round, digest FROM models WHERE federation = ? ORDER BY round DESC LIMIT 1",
                arguments: [federation]
            )!
            return (Array(row["digest"] as Data), row["round"])
        }
        return FederationInfo(spec: spec, modelDigest: Hex.encode(digest), modelRound: round)
    }

    /// `GET /v1/federations/{federation}/model`: the current global model as a model file
    /// (safetensors with the schema and the federation's standardisation), and its round.
    public func model(_ caller: Caller, federation: String) throws -> (file: [UInt8], round: Int, digest: [UInt8]) {
        _ = try requireMember(caller, of: federation)
        let spec = try federationSpec(federation)
        let current = try store.read { db in try Self.model(db, of: spec) }
        let file = try ModelFile(
            model: current.model,
            schema: spec.schema,
            standardisation: current.standardisation,
            control: current.control
        )
        return (try file.encoded(), current.round, current.digest)
    }

    /// The federation's newest stored model from a round before `round`: its rowid, round and
    /// digest, without its parameters.
    static func modelRecord(
        _ db: Database,
        of federation: String,
        before round: Int = .max
    ) throws
        -> (row: Int64, round: Int, digest: [UInt8], pooled: Bool)
    {
        guard
            let row = try Row.fetchOne(
                db,
                sql:
                    "SELECT rowid, round, digest, standardisation IS NOT NULL AS pooled FROM models WHERE federation = ? AND round < ? ORDER BY round DESC LIMIT 1",
                arguments: [federation, round]
            )
        else { throw ExchangeError(.internal, "federation \(federation) has no model before round \(round)") }
        return (row["rowid"], row["round"], Array(row["digest"] as Data), row["pooled"])
    }

    /// The federation's newest model from a round before `round`, with its round, digest and (in
    /// a SCAFFOLD federation) the server control variate that goes with it; the parameters are
    /// read straight from the database into the model's array.
    static func model(
        _ db: Database,
        of spec: FederationSpec,
        before round: Int = .max
    ) throws
        -> (round: Int, digest: [UInt8], model: Model, standardisation: Standardisation, control: [Float]?)
    {
        let record = try modelRecord(db, of: spec.id, before: round)
        let architecture = try FederatedModel.architecture(of: spec)
        let parameters = try [Float](unsafeUninitializedCapacity: architecture.parameterCount) { buffer, count in
            try db.readBlob("models", "parameters", row: record.row, into: UnsafeMutableRawBufferPointer(buffer))
            count = buffer.count
        }
        var pooled: Standardisation?
        if record.pooled,
            let blob = try Data.fetchOne(
                db,
                sql: "SELECT standardisation FROM models WHERE rowid = ?",
                arguments: [record.row]
            )
        {
            let values = floats(blob)
            let d = spec.schema.inputCount
            guard values.count == 2 * d else {
                throw ExchangeError(.internal, "the stored standardisation of federation \(spec.id) has the wrong size")
            }
            pooled = Standardisation(mean: Array(values[..<d]), scale: Array(values[d...]))
        }
        return (
            record.round, record.digest, try Model(architecture: architecture, parameters: parameters),
            FederatedModel.standardisation(of: spec, pooled: pooled),
            FederatedModel.usesControlVariates(spec) ? try optimiserState(db, of: spec, before: round) : nil
        )
    }

    /// Stores a model version, its parameters written in place (never copied whole).
    static func storeModel(
        _ db: Database,
        federation: String,
        round: Int,
        digest: [UInt8],
        parameters: [Float],
        contributors: Int,
        standardisation: Standardisation? = nil
    ) throws {
        try db.execute(
            sql:
                "INSERT INTO models (federation, round, digest, parameters, contributors, standardisation) VALUES (?, ?, ?, zeroblob(?), ?, ?)",
            arguments: [
                federation, round, Data(digest), 4 * parameters.count, contributors,
                standardisation.map { blob($0.mean + $0.scale) },
            ]
        )
        let row = db.lastInsertedRowID
        try parameters.withUnsafeBytes { try db.writeBlob("models", "parameters", row: row, from: $0) }
    }

    /// `GET /v1/federations/{federation}/round`.
    public func roundView(_ caller: Caller, federation: String) throws -> RoundView {
        _ = try requireMember(caller, of: federation)
        _ = try federationSpec(federation)
        let (modelRound, training) = try store.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT max(round) FROM models WHERE federation = ?", arguments: [federation])
                    ?? 0,
                try Bool.fetchOne(
                    db,
                    sql: "SELECT state = 'training' AND rounds_left > 0 FROM federations WHERE id = ?",
                    arguments: [federation]
                ) ?? false
            )
        }
        guard let round = open[federation] else {
            let last = try store.read { db in
                try Row.fetchOne(
                    db,
                    sql: "SELECT round, phase, reason FROM rounds WHERE federation = ? ORDER BY round DESC LIMIT 1",
                    arguments: [federation]
                )
            }
            let phase: String = last?["phase"] ?? "none"
            return RoundView(
                round: last?["round"] ?? 0,
                phase: phase,
                deadline: 0,
                index: -1,
                config: "",
                message: "",
                answered: false,
                modelRound: modelRound,
                reason: phase == "aborted" ? last?["reason"] ?? "" : "",
                training: training
            )
        }
        let waiting = round.expected.subtracting(round.answered).count
        guard let index = round.config.roster.firstIndex(of: caller.key) else {
            return RoundView(
                round: round.number,
                phase: round.phase.rawValue,
                deadline: round.deadline,
                index: -1,
                config: "",
                message: "",
                answered: false,
                modelRound: modelRound,
                waiting: waiting,
                training: true
            )
        }
        // A participant that answered this phase only waits for the next: its view leaves out
        // the configuration and the message (most polls during a round are such waits).
        let answered = round.answered.contains(UInt16(index))
        let message: [UInt8] =
            round.phase == .advertise || answered
            ? []
            : try store.read { db in
                try Data.fetchOne(
                    db,
                    sql:
                        "SELECT message FROM outbox WHERE federation = ? AND round = ? AND phase = ? AND recipient IN (-1, ?)",
                    arguments: [federation, round.number, round.phase.rawValue, index]
                ).map { Array($0) } ?? []
            }
        return RoundView(
            round: round.number,
            phase: round.phase.rawValue,
            deadline: round.deadline,
            index: index,
            config: answered ? "" : round.configHex,
            message: Hex.encode(message),
            answered: answered,
            modelRound: modelRound,
            waiting: waiting,
            training: true
        )
    }

    /// Checks that the caller can answer `phase` of round `number` now and returns its roster
    /// index, or nil when it already did with the same digest (a retry: accepted again).
    private func answering(
        _ caller: Caller,
        federation: String,
        number: Int,
        phase: ExchangePhase,
        digest: [UInt8]?
    ) throws -> UInt16? {
        _ = try requireMember(caller, of: federation)
        _ = try federationSpec(federation)
        guard let round = open[federation], round.number == number else {
            throw ExchangeError(.conflict, "round \(number) of \(federation) is not open")
        }
        guard let position = round.config.roster.firstIndex(of: caller.key) else {
            throw ExchangeError(.forbidden, "\(caller.name) is not on the roster of round \(number)")
        }
        let index = UInt16(position)
        guard round.phase == phase else {
            throw ExchangeError(.conflict, "round \(number) is in phase \(round.phase.rawValue), not \(phase.rawValue)")
        }
        if round.answered.contains(index) {
            let stored = try store.read { db in
                try Data.fetchOne(
                    db,
                    sql:
                        "SELECT digest FROM answers WHERE federation = ? AND round = ? AND phase = ? AND participant = ?",
                    arguments: [federation, number, phase.rawValue, position]
                )
            }
            if let digest, let stored, ConstantTime.equals(Array(stored), digest) { return nil }
            throw ExchangeError(.conflict, "this participant already answered \(phase.rawValue) in round \(number)")
        }
        guard round.expected.contains(index) else {
            throw ExchangeError(
                .conflict,
                "this participant dropped out of round \(number) before \(phase.rawValue) and cannot answer it"
            )
        }
        return index
    }

    /// `POST …/rounds/{round}/{advertise|share|check|unmask}`: one SecAgg+ message.
    public func submit(
        _ caller: Caller,
        federation: String,
        round number: Int,
        phase: ExchangePhase,
        body: [UInt8]
    ) throws {
        let digest = try BLAKE2b.hash(body, domain: .submission)
        guard let index = try answering(caller, federation: federation, number: number, phase: phase, digest: digest)
        else { return }
        do {
            // A copy, stored back only if the message is accepted; it ends with this block, so
            // no second reference to the round's running sum outlives it.
            var round = open[federation]!
            let sender: UInt16
            switch phase {
            case .advertise:
                let m = try AdvertiseKeys(decoding: body)
                sender = m.entry.index
                try checkSender(sender, index)
                try round.server.receive(m)
            case .share:
                let m = try ShareKeys(decoding: body)
                sender = m.sender
                try checkSender(sender, index)
                try round.server.receive(m)
            case .check:
                let m = try ConsistencySignature(decoding: body)
                sender = m.sender
                try checkSender(sender, index)
                try round.server.receive(m)
            case .unmask:
                let m = try UnmaskResponse(decoding: body)
                sender = m.sender
                try checkSender(sender, index)
                try round.server.receive(m)
            case .mask, .finished, .aborted:
                throw ExchangeError(.malformed, "masked inputs go to the input endpoint")
            }
            open[federation] = round
        } catch let error as SecAggError {
            throw Self.refusal(error)
        }
        try accept(caller, federation: federation, phase: phase, index: index, digest: digest)
    }

    private func checkSender(_ sender: UInt16, _ index: UInt16) throws {
        guard sender == index else {
            throw ExchangeError(.forbidden, "the message is signed for participant \(sender); the caller is \(index)")
        }
    }

    static func refusal(_ error: SecAggError) -> ExchangeError {
        switch error.code {
        case .wrongPhase: ExchangeError(.conflict, error.message)
        default: ExchangeError(.malformed, error.message)
        }
    }

    private func accept(
        _ caller: Caller,
        federation: String,
        phase: ExchangePhase,
        index: UInt16,
        digest: [UInt8]
    ) throws {
        // No copy of the round is held past here: `advance` takes it out of `open`, and a copy
        // alive across that call would make the running sum copy itself when finishing.
        let number = open[federation]!.number
        try audit(
            actor: caller.name,
            request: caller.request,
            action: "round." + phase.rawValue,
            objectType: "round",
            objectID: "\(federation)/\(number)",
            digests: [.init(name: "submission", bytes: digest)]
        )
        try store.write { db in
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO answers (federation, round, phase, participant, digest) VALUES (?, ?, ?, ?, ?)",
                arguments: [federation, number, phase.rawValue, Int(index), Data(digest)]
            )
        }
        open[federation]!.answered.insert(index)
        let complete = open[federation].map { $0.expected.isSubset(of: $0.answered) } ?? false
        if complete { advance(federation, dueToDeadline: false) }
    }

    /// Starts a masked-input upload: checks the caller may send one now and returns the layout
    /// and key to decrypt it with. The caller then holds an upload slot and its buffer until
    /// ``releaseUpload(_:)``. Nil when this participant's accepted upload had this commitment:
    /// the same upload again, whose acknowledgement was lost, is accepted without a second read.
    public func beginUpload(
        _ caller: Caller,
        federation: String,
        round number: Int,
        commitment: [UInt8]
    ) async throws -> UploadTicket? {
        guard
            let index = try answering(caller, federation: federation, number: number, phase: .mask, digest: commitment)
        else { return nil }
        let round = open[federation]!
        let list = try store.read { db in
            try Data.fetchOne(
                db,
                sql:
                    "SELECT message FROM outbox WHERE federation = ? AND round = ? AND phase = 'share' AND recipient = -1",
                arguments: [federation, number]
            )
        }
        guard let list, let entry = try KeyList(decoding: Array(list)).entries.first(where: { $0.index == index }),
            let session = round.server.sessionID
        else { throw ExchangeError(.internal, "round \(number) has no key list") }
        let layout = MaskedUpload(wordCount: round.config.wordCount, session: session, sender: index)
        let key = try UploadKey.broker(keys.transport, session: session, entry: entry)
        let slot = "\(federation)/\(index)"
        guard !uploading.contains(slot) else {
            throw ExchangeError(
                .conflict,
                "an upload of this participant is already in progress; one at a time (it ends with the mask phase)"
            )
        }
        uploading.insert(slot)
        return UploadTicket(
            federation: federation,
            round: number,
            index: index,
            layout: layout,
            key: key,
            buffer: await acquireUpload(byteCount: layout.plaintextByteCount)
        )
    }

    /// Adds a fully received and decrypted masked input to the round's sum. The caller has
    /// checked the body against the digest its request signature covers, and releases the upload
    /// slot after, either way.
    public func commitUpload(
        _ caller: Caller,
        ticket: UploadTicket,
        bodyDigest: [UInt8]
    ) throws {
        let words = ticket.buffer.words
        guard
            let index = try answering(
                caller,
                federation: ticket.federation,
                number: ticket.round,
                phase: .mask,
                digest: bodyDigest
            )
        else { return }
        do {
            // In place: a copy of the round here would copy its running sum (4·D bytes) per upload.
            try open[ticket.federation]!.server.receiveMaskedInput(
                session: ticket.layout.session,
                sender: index,
                words: words
            )
        } catch let error as SecAggError {
            throw Self.refusal(error)
        }
        metrics.maskedBytes.increment(by: Int64(ticket.layout.bodyByteCount))
        try accept(caller, federation: ticket.federation, phase: .mask, index: index, digest: bodyDigest)
    }
}

extension Domain {
    /// Digests of participants' round messages in the audit log.
    static let submission = Domain("cairn/submission/v1")
    /// Digests of round sums in the audit log.
    static let aggregate = Domain("cairn/aggregate/v1")
}
