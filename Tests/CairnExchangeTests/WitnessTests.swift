import CairnAudit
import CairnCrypto
import CairnExchange
import CairnNode
import CairnWire
import Foundation
import GRDB
import Testing

/// Members' nodes as witnesses of the broker's audit log.
@Suite struct WitnessTests {
    let signer = try! NoteSigner(name: "cairn.test/witness", key: .init())

    func entry(_ sequence: UInt64, _ action: String = "round.open") -> AuditEntry {
        AuditEntry(
            sequence: sequence,
            time: AuditEntry.time(secondsSinceEpoch: 1_795_000_000 + Int(sequence)),
            actor: "broker",
            action: action,
            objectType: "round",
            objectID: "f/\(sequence)",
            outcome: .succeeded
        )
    }

    func folder() -> String { String(cString: mkdtemp(strdup("/tmp/cairn-witness-XXXXXX"))) }

    /// What the broker serves a node that last saw `from` entries.
    func view(_ log: AuditLog, note: String, from: Int) throws -> WitnessView {
        let size = try Checkpoint(text: SignedNote.open(note, verifier: signer.verifier)).size
        return WitnessView(
            checkpoint: note,
            from: from,
            proof: try log.consistencyProof(from: from, to: size).map { Hex.encode($0.bytes) }
        )
    }

    @Test(
        "Three nodes witness a growing log and cosign each checkpoint; a rewritten log is caught by every one of them, with both checkpoints kept"
    )
    func rewrittenLogIsCaughtByEveryWitness() throws {
        let base = folder()
        defer { _ = system("rm -rf '\(base)'") }
        let log = try AuditLog(path: base + "/audit.sqlite")
        let nodes = try (0..<3).map { i -> Witness in
            let home = base + "/node\(i)"
            try DurableFile.makeDirectory(home)
            return Witness(home: home, checkpointKey: signer.verifier, identity: try Ed25519.PrivateKey())
        }
        var notes: [String] = []
        for step in 0..<2 {
            for _ in 0..<5 { try log.append { entry($0) } }
            let note = try log.signCheckpoint(origin: signer.name, signer: signer)
            notes.append(note)
            for node in nodes {
                let (checkpoint, cosignature) = try node.observe(
                    try view(log, note: note, from: try node.size()),
                    time: 1_795_000_100 + Int64(step)
                )
                #expect(checkpoint.size == 5 * (step + 1))
                #expect(try log.addCosignature(cosignature, size: checkpoint.size))
                #expect(try !log.addCosignature(cosignature, size: checkpoint.size))  // kept once
            }
        }
        #expect(try log.cosignatures().map(\.size) == [5, 5, 5, 10, 10, 10])

        // A cosignature that does not verify, or of a checkpoint never signed, is refused.
        var forged = try log.cosignatures()[0].cosignature
        forged.signature[0] ^= 1
        #expect(throws: AuditError(.badSignature, "")) { try log.addCosignature(forged, size: 5) }
        #expect(throws: AuditError(.outOfRange, "")) {
            try log.addCosignature(try log.cosignatures()[0].cosignature, size: 7)
        }

        // The operator rewrites entry 7 and re-signs a longer log with the same key.
        let rewritten = try AuditLog(path: base + "/rewritten.sqlite")
        for s in 0..<12 { try rewritten.append { entry($0, s == 7 ? "round.abort" : "round.open") } }
        let forgedNote = try rewritten.signCheckpoint(origin: signer.name, signer: signer)
        for (i, node) in nodes.enumerated() {
            let refusal = #expect(throws: AuditError.self) {
                try node.observe(try view(rewritten, note: forgedNote, from: 10), time: 1_795_000_200 + Int64(i))
            }
            #expect(refusal?.code == .inconsistent)
            let evidence = base + "/node\(i)/witness-evidence-\(1_795_000_200 + i)"
            #expect(refusal?.message.contains("kept in \(evidence)") == true)
            #expect(
                String(
                    decoding: try DurableFile.read(evidence + "/earlier.checkpoint", maximum: 1 << 16),
                    as: UTF8.self
                ) == notes[1]
            )
            #expect(
                String(decoding: try DurableFile.read(evidence + "/later.checkpoint", maximum: 1 << 16), as: UTF8.self)
                    == forgedNote
            )
            #expect(try node.last()?.note == notes[1])  // the accepted checkpoint is unchanged
        }
        // A rollback to an older checkpoint (a smaller tree) is caught the same way.
        #expect(throws: AuditError.self) {
            try nodes[0].observe(WitnessView(checkpoint: notes[0], from: 10, proof: []), time: 1_795_000_300)
        }

        // The bundle carries the cosignatures and verify names the witnesses of each checkpoint.
        let bundle = base + "/bundle"
        try AuditBundle.export(log: log, origin: signer.name, signer: signer, actor: "operator", to: bundle)
        let summary = try AuditBundle.verify(directory: bundle, verifier: signer.verifier)
        let names = try log.cosignatures().map(\.cosignature.name)
        #expect(summary.witnesses[5]?.sorted() == Array(names.prefix(3)).sorted())
        #expect(summary.witnesses[10]?.sorted() == Array(names.suffix(3)).sorted())
        // A changed cosignature line is refused, naming the line.
        var text = try DurableFile.read(bundle + "/cosignatures.jsonl", maximum: 1 << 20)
        text[text.count - 5] = text[text.count - 5] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        try DurableFile.write(text, to: bundle + "/cosignatures.jsonl", replace: true)
        let refusal = #expect(throws: AuditError.self) {
            try AuditBundle.verify(directory: bundle, verifier: signer.verifier)
        }
        #expect(refusal?.message.hasPrefix("cosignatures.jsonl line 6: the cosignature by ed25519:") == true)
    }
}
