public import CairnAudit
import CairnWire

/// The human-readable compliance report `cairn-audit report` prints, in Markdown or HTML.
///
/// It is read from the audit log (entries are pseudonymous; display names come from the erasable
/// personal-data table, so an erased person appears by pseudonym only) and the broker's
/// configuration (the GDPR Art. 30 record). Sections: integrity (what was checked before
/// reporting), summary, activity by action, participation per round, model lineage, licences and
/// deliveries, refused requests, personal data held, record of processing.
public struct ComplianceReport: Sendable {
    /// One section: a title, paragraphs and an optional table.
    struct Section: Sendable {
        var title: String
        var paragraphs: [String] = []
        var headers: [String] = []
        var rows: [[String]] = []
    }

    /// The output format.
    public enum Format: String, Sendable, CaseIterable {
        /// GitHub-flavoured Markdown.
        case markdown
        /// A standalone HTML page.
        case html
    }

    /// The most rows listed in the refused-requests table (the count is always complete).
    public static let maximumListedRefusals = 1000

    let title: String
    let sections: [Section]

    /// Builds the report from `log` and `config`; `generated` is the canonical time printed.
    /// The log was checked entry by entry when it opened; here every stored checkpoint is also
    /// checked against `checkpointKey` (throwing when one fails), and the report opens by saying so.
    public init(log: AuditLog, config: BrokerConfig, checkpointKey: NoteVerifier, generated: String) throws {
        let checkpointSizes = try log.checkStoredCheckpoints(verifier: checkpointKey)
        var names: [String: String] = [:]
        let people = try log.people()
        for person in people { names[person.id] = person.displayName }
        /// One identifier format: the key's fingerprint first, then the role the actor acted in,
        /// then the display name while one is held (recorded under the fingerprint or the actor).
        func who(_ actor: String) -> String {
            let key = AuditEntry.keyActor(actor)
            let shown = key.map { "\($0.fingerprint) (\($0.role))" } ?? actor
            return (key.flatMap { names[$0.fingerprint] } ?? names[actor]).map { "\(shown), \($0)" } ?? shown
        }

        var activity: [String: [Int]] = [:]
        var rounds: [String: (outcome: String, accepted: Set<String>, refused: Int)] = [:]
        var roundOrder: [String] = []
        func round(_ id: String) {
            if rounds[id] == nil {
                roundOrder.append(id)
                rounds[id] = ("open", [], 0)
            }
        }
        var updates: [[UInt8]: (round: String, trained: Int)] = [:]
        var trainedRounds: [String: Int] = [:]
        var published: [[String]] = []
        var licensing: [[String]] = []
        var refusals: [[String]] = []
        var refusalCount = 0
        var first: String?
        var last: String?
        try log.forEachEntry(in: 0..<log.size) { _, bytes, _ in
            let e = try AuditEntry(decoding: bytes)
            first = first ?? e.time
            last = e.time
            activity[e.action, default: [0, 0, 0]][Int(e.outcome.rawValue)] += 1
            switch e.action {
            case "round.open":
                round(e.objectID)
            case "round.mask":
                round(e.objectID)
                if e.outcome == .succeeded {
                    rounds[e.objectID]!.accepted.insert(e.actor)
                } else if e.outcome == .refused {
                    rounds[e.objectID]!.refused += 1
                }
            case "round.aggregate" where e.outcome == .succeeded:
                round(e.objectID)
                rounds[e.objectID]!.outcome = "aggregated"
            case "round.abort":
                round(e.objectID)
                rounds[e.objectID]!.outcome = "aborted: " + e.reason
            case "model.update" where e.outcome == .succeeded:
                // objectID federation/round; the new model's digest is named "model".
                guard let digest = e.digests.first(where: { $0.name == "model" })?.bytes else { break }
                let federation = String(e.objectID.prefix { $0 != "/" })
                if updates[digest] == nil {
                    trainedRounds[federation, default: 0] += 1
                    updates[digest] = (e.objectID, trainedRounds[federation]!)
                }
            case "model.publish" where e.outcome == .succeeded:
                let parameters = e.digests.first { $0.name == "model.parameters" }?.bytes
                let update = parameters.flatMap { updates[$0] }
                published.append([
                    e.objectID, e.time, update?.round ?? "none (the initial, untrained model)",
                    "\(update?.trained ?? 0)", update.map { "\(rounds[$0.round]?.accepted.count ?? 0)" } ?? "—",
                    parameters.map { Hex.encode($0.prefix(8)) + "…" } ?? "—",
                ])
            case _ where e.action.hasPrefix("licence.") || e.action == "model.deliver":
                licensing.append([e.time, e.action, e.objectID, who(e.actor), e.outcome.name])
            default: break
            }
            if e.outcome == .refused {
                refusalCount += 1
                if refusals.count < Self.maximumListedRefusals {
                    refusals.append([e.time, who(e.actor), e.action, "\(e.objectType) \(e.objectID)", e.reason])
                }
            }
        }

        let checkpoint = try log.latestCheckpoint().flatMap { note in
            note.split(separator: "\n", omittingEmptySubsequences: false).prefix(3).map(String.init)
        }
        let witnessed = try log.cosignatures()
        var integrity = Section(title: "Integrity")
        let newer = log.size - (checkpointSizes.last ?? 0)
        integrity.paragraphs = [
            "Checked when this report was made: all \(log.size) entries were decoded and each one's leaf hash recomputed; "
                + "the stored tree head matches them; and \(checkpointSizes.count) signed checkpoints verify with the broker's "
                + "checkpoint key \(checkpointKey.encoded) and match the log"
                + (checkpointSizes.last.map {
                    ", the latest covering \($0) entries (\(newer) newer entries are not yet in a checkpoint)."
                }
                    ?? "; none has been signed yet.")
                + " Check it independently with `cairn-audit export` and `cairn-audit verify`.",
            witnessed.last.map { last in
                "Members' nodes witnessed the log: \(Set(witnessed.map(\.size)).count) checkpoints carry their cosignatures; the latest cosigned covers \(last.size) entries, cosigned by \(witnessed.filter { $0.size == last.size }.count) witnesses."
            } ?? "No member's node has cosigned a checkpoint yet.",
        ]
        var summary = Section(title: "Summary")
        summary.headers = ["Item", "Value"]
        summary.rows = [
            ["Log origin", config.origin], ["Generated", generated], ["Entries", "\(log.size)"],
            ["Period", first.map { "\($0) to \(last!)" } ?? "no entries"],
            ["Latest signed checkpoint", checkpoint.map { "\($0[1]) entries, root \($0[2])" } ?? "none yet"],
        ]
        summary.paragraphs = [
            "Entries name people by key fingerprint only (with the role they acted in); display names come from the erasable personal-data table."
        ]

        var byAction = Section(title: "Activity by action", headers: ["Action", "Succeeded", "Refused", "Failed"])
        byAction.rows = activity.keys.sorted().map { [$0] + activity[$0]!.map(String.init) }

        var participation = Section(
            title: "Participation per round",
            headers: ["Round", "Outcome", "Contributors", "Refused inputs", "Participants"]
        )
        participation.rows = roundOrder.map { id in
            let r = rounds[id]!
            return [
                id, r.outcome, "\(r.accepted.count)", "\(r.refused)",
                r.accepted.sorted().map(who).joined(separator: "; "),
            ]
        }
        participation.paragraphs = [
            participation.rows.isEmpty
                ? "No rounds are recorded."
                : "Contributors are the participants whose masked input the broker accepted (`round.mask`)."
        ]

        var lineage = Section(
            title: "Model lineage",
            headers: ["Model version", "Published", "From round", "Rounds trained", "Contributors", "Parameter digest"]
        )
        lineage.rows = published
        lineage.paragraphs = [
            published.isEmpty
                ? "No model versions are recorded."
                : "A version comes from the round whose `model.update` has the same parameter digest; rounds trained counts that federation's model updates up to it; contributors are that round's."
        ]

        var licences = Section(
            title: "Licences and deliveries",
            headers: ["Time", "Action", "Licence or delivery", "Actor", "Outcome"]
        )
        licences.rows = licensing
        if licensing.isEmpty { licences.paragraphs = ["No licences or deliveries are recorded."] }

        var refused = Section(title: "Refused requests", headers: ["Time", "Actor", "Action", "Object", "Reason"])
        refused.rows = refusals
        refused.paragraphs = [
            refusalCount > refusals.count
                ? "\(refusalCount) requests were refused; the first \(refusals.count) are listed."
                : "\(refusalCount) requests were refused."
        ]

        var held = Section(title: "Personal data held", headers: ["Pseudonymous id", "Display name"])
        held.rows = people.map { [$0.id, $0.displayName] }
        held.paragraphs = [
            "Held apart from the log and erasable (`cairn-audit people erase`); contact addresses are not printed. \(people.count) records."
        ]

        let p = config.processing
        var article30 = Section(
            title: "Record of processing activities (GDPR Art. 30(1))",
            headers: ["Item", "Record"]
        )
        article30.rows = [
            ["(a) Controller", "\(p.controller), \(p.controllerContact)"],
            ["(a) Data protection officer", p.dataProtectionOfficer],
            ["(b) Purposes", p.purposes.joined(separator: "; ")],
            ["(c) Categories of data subjects", p.dataSubjects.joined(separator: "; ")],
            ["(c) Categories of personal data", p.personalData.joined(separator: "; ")],
            ["(d) Categories of recipients", p.recipients.joined(separator: "; ")],
            ["(e) Transfers to third countries", p.transfers], ["(f) Time limits for erasure", p.retention],
            ["(g) Security measures", p.securityMeasures.joined(separator: "; ")],
            ["Personal-data records held now", "\(names.count)"],
        ]
        title = "Cairn compliance report: \(config.origin)"
        sections = [integrity, summary, byAction, participation, lineage, licences, refused, held, article30]
    }

    /// The report in `format`.
    public func render(_ format: Format) -> String {
        switch format {
        case .markdown: markdown
        case .html: html
        }
    }

    var markdown: String {
        func cell(_ s: String) -> String {
            var out = ""
            for c in s {
                if "\\|*_`<>[]".contains(c) { out.append("\\") }
                out.append(c)
            }
            return out
        }
        var out = "# \(cell(title))\n"
        for s in sections {
            out += "\n## \(s.title)\n"
            for p in s.paragraphs { out += "\n" + p + "\n" }
            guard !s.rows.isEmpty else { continue }
            out += "\n| " + s.headers.map(cell).joined(separator: " | ") + " |\n"
            out += "|" + String(repeating: "---|", count: s.headers.count) + "\n"
            for row in s.rows { out += "| " + row.map(cell).joined(separator: " | ") + " |\n" }
        }
        return out
    }

    var html: String {
        let escape = XMLText.escape
        func inline(_ s: String) -> String {
            // Backticks in the fixed paragraphs become <code>; all text is escaped first.
            let parts = escape(s).split(separator: "`", omittingEmptySubsequences: false)
            return parts.enumerated().map { $0.offset % 2 == 1 ? "<code>\($0.element)</code>" : String($0.element) }
                .joined()
        }
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}\
            table{table-layout:fixed;width:100%}td,th{border:1px solid #999;padding:.2em .5em;text-align:left;\
            vertical-align:top;overflow-wrap:anywhere}</style></head><body>
            <h1>\(escape(title))</h1>

            """
        for s in sections {
            out += "<h2>\(escape(s.title))</h2>\n"
            for p in s.paragraphs { out += "<p>\(inline(p))</p>\n" }
            guard !s.rows.isEmpty else { continue }
            out += "<table>\n<tr>" + s.headers.map { "<th>\(escape($0))</th>" }.joined() + "</tr>\n"
            for row in s.rows { out += "<tr>" + row.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n" }
            out += "</table>\n"
        }
        return out + "</body></html>\n"
    }
}
