import CairnCrypto
import CairnWire
import Foundation
import Testing

@testable import CairnAudit

@Suite("Signed notes and checkpoints (C2SP)")
struct SignedNoteTests {
    /// The Go sumdb `note` package's test key and note (golang.org/x/mod/sumdb/note).
    let neumannSeed = Array(Data(base64Encoded: "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")!.dropFirst())
    let neumannText =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"

    func neumann() throws -> NoteSigner {
        try NoteSigner(name: "PeterNeumann", key: Ed25519.PrivateKey(seed: SecretBytes(copying: neumannSeed)))
    }

    @Test("Known answer: the sumdb test key's verifier string and signature, byte for byte")
    func knownAnswer() throws {
        let signer = try neumann()
        #expect(signer.verifier.encoded == "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        #expect(signer.verifier.keyID == 0xc74f_20a3)
        let note = try SignedNote.sign(neumannText, by: signer)
        #expect(
            note == neumannText
                + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        )
        let verifier = try NoteVerifier(encoded: "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        #expect(try SignedNote.open(note, verifier: verifier) == neumannText)
        // "N" differs from "M" only in the two bits base64 leaves unused here: same bytes, second spelling.
        let respelled = note.replacingOccurrences(of: "JnAM=", with: "JnAN=")
        let blob = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnA"
        #expect(Data(base64Encoded: blob + "M=") == Data(base64Encoded: blob + "N="))
        #expect(throws: AuditError(.badSignature, "")) { try SignedNote.open(respelled, verifier: verifier) }
    }

    @Test("Checkpoints: text layout, parsing, signing and opening")
    func checkpoints() throws {
        var tree = MerkleTree()
        for i in 0..<5 { tree.append(RFC6962.leafHash([UInt8(i)])) }
        let checkpoint = try Checkpoint(origin: "cairn.example/federation-7", size: 5, root: tree.root())
        #expect(
            checkpoint.text == "cairn.example/federation-7\n5\n\(Data(try tree.root().bytes).base64EncodedString())\n"
        )
        #expect(try Checkpoint(text: checkpoint.text) == checkpoint)
        let signer = try NoteSigner(name: "cairn.example/federation-7", key: Ed25519.PrivateKey())
        let note = try SignedNote.sign(checkpoint.text, by: signer)
        #expect(try Checkpoint(text: SignedNote.open(note, verifier: signer.verifier)) == checkpoint)
        for bad in [
            "x\n5\n", "x\n05\nAAAA\n", "x\n-1\n\(Data(try tree.root().bytes).base64EncodedString())\n", "x\n5\nAAAA\n",
            "\n5\nAAAA\n", "x\n5\nAAAA",
        ] {
            #expect(throws: AuditError(.malformed, "")) { try Checkpoint(text: bad) }
        }
    }

    @Test("Altered text, a foreign key, a bad signature line or no signature: refused")
    func refusals() throws {
        let signer = try neumann()
        let other = try NoteSigner(name: "PeterNeumann", key: Ed25519.PrivateKey())
        let note = try SignedNote.sign(neumannText, by: signer)
        let altered = note.replacingFirst("cryptography", "cryptograph!")
        #expect(throws: AuditError(.badSignature, "")) { try SignedNote.open(altered, verifier: signer.verifier) }
        // A note signed only by another key with the same name: ignored, so nothing verifies.
        #expect(throws: AuditError(.badSignature, "")) {
            try SignedNote.open(SignedNote.sign(neumannText, by: other), verifier: signer.verifier)
        }
        // Several signatures: the known one is found among them.
        let both = note + "— \(other.name) \(note.split(separator: " ").last!)"
        #expect(try SignedNote.open(both, verifier: signer.verifier) == neumannText)
        for bad in [
            neumannText, note.replacingFirst("— ", "- "), note.replacingFirst("x08go", "!!!!!"), note + "\u{1}\n",
            "\n\n",
            neumannText + "\n",
        ] {
            #expect(throws: AuditError(.badSignature, "")) { try SignedNote.open(bad, verifier: signer.verifier) }
        }
        #expect(throws: AuditError(.malformed, "")) { try SignedNote.sign("no newline", by: signer) }
        #expect(throws: AuditError(.malformed, "")) { try NoteSigner(name: "a b", key: Ed25519.PrivateKey()) }
        #expect(throws: AuditError(.malformed, "")) { try NoteSigner(name: "a+b", key: Ed25519.PrivateKey()) }
        #expect(throws: AuditError(.malformed, "")) {
            try NoteVerifier(encoded: "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
    }
}

extension String {
    func replacingFirst(_ a: String, _ b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
