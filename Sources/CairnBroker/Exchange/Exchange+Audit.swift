public import CairnAudit
import CairnCrypto
public import CairnExchange
import CairnWire
import Foundation
import Glibc

/// The audit log read remotely: a member enrolled as `auditor` (or the operator) exports a
/// verifiable bundle and reads the compliance report, each answer sealed to its key.
extension Exchange {
    /// `GET /v1/audit/bundle`: appends the `audit.export` entry (carrying the signed request),
    /// signs a checkpoint over it and answers the bundle's files, exactly as `cairn-audit export`
    /// writes them. The whole log is broker-wide: an auditor reads every federation's entries.
    public func auditBundle(_ caller: Caller, filter: AuditBundle.Filter) throws -> AuditBundleFiles {
        try requireAuditor(caller)
        let directory = folder + "/export-" + Hex.encode(SecureRandom.bytes(8))
        defer { Self.removeFolder(directory) }
        do {
            try AuditBundle.export(
                log: log,
                origin: origin,
                signer: keys.checkpoint,
                filter: filter,
                actor: caller.name,
                request: caller.request,
                to: directory
            )
        } catch let error as AuditError where error.code == .malformed {
            throw ExchangeError(.malformed, error.message)
        }
        return AuditBundleFiles(
            files: try DurableFile.entries(in: directory).sorted().map { name in
                let bytes = try DurableFile.read(directory + "/" + name, maximum: AuditBundle.maximumFileBytes)
                return .init(name: name, data: Data(bytes).base64EncodedString())
            }
        )
    }

    /// `GET /v1/audit/report`: the compliance report (`cairn-audit report`) in `format`, over the
    /// log and `broker.json` as they are now.
    public func complianceReport(_ caller: Caller, format: ComplianceReport.Format) throws -> String {
        try requireAuditor(caller)
        let report = try ComplianceReport(
            log: log,
            config: try BrokerHome(path: folder).config,
            checkpointKey: keys.checkpoint.verifier,
            generated: AuditEntry.now()
        )
        return report.render(format)
    }

    /// Only the operator and members enrolled as auditors read the audit log.
    /// The operator, or a key holding the auditor role in standing in at least one federation:
    /// an auditor membership that is suspended does not open the log.
    private func requireAuditor(_ caller: Caller) throws {
        if caller.isOperator { return }
        let audits = caller.memberships.filter { $0.role == .auditor }
        guard !audits.isEmpty else {
            throw ExchangeError(
                .forbidden,
                "only an auditor or the operator reads the audit log; \(caller.name) may not"
            )
        }
        if let usable = audits.first(where: { $0.status != "suspended" }) {
            _ = try standing(caller, usable)
        } else {
            _ = try standing(caller, audits[0])
        }
    }

    /// Removes a bundle folder written for an answer (its files, then the folder).
    private static func removeFolder(_ path: String) {
        for name in (try? DurableFile.entries(in: path)) ?? [] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
