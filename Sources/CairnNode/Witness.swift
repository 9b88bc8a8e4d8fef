public import CairnAudit
public import CairnCrypto
public import CairnExchange
import CairnWire
import Foundation

/// A member's node as a witness of the broker's audit log (`Protocol/README.md`, "Witnessed
/// checkpoints"). It keeps the last checkpoint it accepted in `witness.checkpoint` in its enrolment's folder (`home` here); each
/// new one must carry the broker's checkpoint signature and be proved consistent with it (same
/// root at the same size, or a verified RFC 6962 consistency proof to a larger size). Then the
/// node cosigns it (C2SP tlog-cosignature/v1, with its identity key) and the broker stores the
/// cosignature. A checkpoint that fails (a smaller tree, another root, a proof that does not
/// verify: a rewritten log or a split view) stops the node: both signed checkpoints and the proof
/// are kept in `witness-evidence-<time>/` there and the error names that folder.
public struct Witness: Sendable {
    /// The file holding the last checkpoint accepted (its signed note).
    public static let stateFileName = "witness.checkpoint"

    let home: String
    let checkpointKey: NoteVerifier
    let identity: Ed25519.PrivateKey

    /// A witness for the node in `home`, checking checkpoints with the broker's `checkpointKey`
    /// and cosigning with `identity`.
    public init(home: String, checkpointKey: NoteVerifier, identity: Ed25519.PrivateKey) {
        self.home = home
        self.checkpointKey = checkpointKey
        self.identity = identity
    }

    /// The last checkpoint accepted, as its note and parsed, or nil before the first.
    public func last() throws -> (note: String, checkpoint: Checkpoint)? {
        let path = home + "/" + Self.stateFileName
        guard DurableFile.exists(path) else { return nil }
        let note = String(decoding: try DurableFile.read(path, maximum: 1 << 16), as: UTF8.self)
        return (note, try Checkpoint(text: SignedNote.open(note, verifier: checkpointKey)))
    }

    /// The size the next view's proof must start from: the last checkpoint's, or 0.
    public func size() throws -> Int { try last()?.checkpoint.size ?? 0 }

    /// Checks `view` against the last checkpoint accepted and, when it holds, stores the new
    /// checkpoint and returns it with this node's cosignature made at `time`. Throws
    /// ``AuditError`` `inconsistent` (after keeping the evidence) when it does not.
    public func observe(_ view: WitnessView, time: Int64) throws -> (checkpoint: Checkpoint, cosignature: Cosignature) {
        let checkpoint: Checkpoint
        do {
            checkpoint = try Checkpoint(text: SignedNote.open(view.checkpoint, verifier: checkpointKey))
        } catch let error as AuditError {
            throw AuditError(
                .badSignature,
                "the broker's checkpoint is not signed by its checkpoint key: \(error.message)"
            )
        }
        guard checkpoint.origin == checkpointKey.name else {
            throw AuditError(
                .malformed,
                "the checkpoint is for the log \(checkpoint.origin), not \(checkpointKey.name)"
            )
        }
        if let (note, earlier) = try last() {
            let proof = view.proof.compactMap { (try? Hex.decode($0)).flatMap(MerkleHash.init) }
            let consistent =
                view.from == earlier.size && proof.count == view.proof.count
                && RFC6962.verifyConsistency(
                    oldSize: earlier.size,
                    newSize: checkpoint.size,
                    oldRoot: earlier.root,
                    newRoot: checkpoint.root,
                    proof: proof
                )
            guard consistent else {
                let evidence = home + "/witness-evidence-\(time)"
                try DurableFile.makeDirectory(evidence)
                try DurableFile.write(Array(note.utf8), to: evidence + "/earlier.checkpoint", replace: false)
                try DurableFile.write(Array(view.checkpoint.utf8), to: evidence + "/later.checkpoint", replace: false)
                try DurableFile.write(
                    Array((["from \(view.from)"] + view.proof).joined(separator: "\n").utf8 + [0x0A]),
                    to: evidence + "/proof.txt",
                    replace: false
                )
                throw AuditError(
                    .inconsistent,
                    "THE BROKER'S AUDIT LOG IS NOT CONSISTENT WITH WHAT THIS NODE SAW BEFORE: it signed a checkpoint of \(earlier.size) entries and now one of \(checkpoint.size) entries that "
                        + (checkpoint.size < earlier.size
                            ? "is smaller"
                            : checkpoint.size == earlier.size ? "has another root" : "no consistency proof joins")
                        + " (a rewritten log, or different logs shown to different members). This node stops. Both signed checkpoints are kept in \(evidence): give them to the federation's other members and an auditor."
                )
            }
        }
        try DurableFile.write(Array(view.checkpoint.utf8), to: home + "/" + Self.stateFileName, replace: true)
        return (checkpoint, try Cosignature.sign(checkpoint, identity: identity, time: time))
    }
}
