import CairnCrypto
import CairnWire
import Foundation
import Testing

@testable import CairnAudit

@Suite("Audit entries")
struct AuditEntryTests {
    let entry = AuditEntry(
        sequence: 7,
        time: "2026-11-24T03:25:00Z",
        actor: "ed25519:289dbd898ab20f0733e034fac9f595cb",
        action: "round.unmask",
        objectType: "round",
        objectID: "fed-1/round-3",
        outcome: .refused,
        reason: "late",
        requestID: "r-42",
        digests: [.init(name: "model.parameters", bytes: [UInt8](repeating: 0xAB, count: 32))]
    )

    @Test("Canonical bytes, field by field, and the round trip")
    func canonical() throws {
        let bytes = try entry.encoded()
        var expected = ByteWriter()
        expected.u16(1)
        expected.u64(7)
        expected.string("2026-11-24T03:25:00Z")
        expected.string("ed25519:289dbd898ab20f0733e034fac9f595cb")
        expected.label("round.unmask")
        expected.label("round")
        expected.string("fed-1/round-3")
        expected.u8(1)
        expected.string("late")
        expected.string("r-42")
        expected.u32(1)
        expected.label("model.parameters")
        expected.raw([UInt8](repeating: 0xAB, count: 32))
        #expect(bytes == expected.bytes)
        #expect(Array(bytes.prefix(10)) == [1, 0, 7, 0, 0, 0, 0, 0, 0, 0])
        #expect(try AuditEntry(decoding: bytes) == entry)
        #expect(RFC6962.leafHash(bytes).bytes == SHA256.hash([0x00], bytes))
    }

    @Test("Every truncation, a trailing byte, a bad version or outcome: refused")
    func decodingRefusals() throws {
        let bytes = try entry.encoded()
        for n in 0..<bytes.count {
            #expect(throws: AuditError(.malformed, "")) { try AuditEntry(decoding: Array(bytes.prefix(n))) }
        }
        #expect(throws: AuditError(.malformed, "")) { try AuditEntry(decoding: bytes + [0]) }
        var version = bytes
        version[0] = 2
        #expect(throws: AuditError(.malformed, "")) { try AuditEntry(decoding: version) }
        let outcomeOffset = 2 + 8 + (4 + 20) + (4 + 40) + (1 + 12) + (1 + 5) + (4 + 13)
        #expect(bytes[outcomeOffset] == 1)
        var outcome = bytes
        outcome[outcomeOffset] = 3
        #expect(throws: AuditError(.malformed, "")) { try AuditEntry(decoding: outcome) }
    }

    @Test("Times are RFC 3339 UTC in whole seconds with a real date")
    func times() {
        for good in ["2026-11-24T03:25:00Z", "2024-02-29T23:59:59Z", "2000-02-29T00:00:00Z"] {
            #expect(AuditEntry.isCanonicalTime(good), "\(good)")
        }
        for bad in [
            "2026-11-24T03:25:00", "2026-11-24 03:25:00Z", "2026-11-24T03:25:00.1Z", "2026-11-24T03:25:00+00:00",
            "2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z",
            "2026-11-24T24:00:00Z", "2026-11-24T23:60:00Z", "2026-11-24T23:59:60Z", "2026-1a-24T03:25:00Z", "",
        ] {
            #expect(!AuditEntry.isCanonicalTime(bad), "\(bad)")
        }
    }

    @Test("Bad fields are refused on encoding")
    func encodingRefusals() {
        var cases: [AuditEntry] = []
        for change in 0..<7 {
            var e = entry
            switch change {
            case 0: e.time = "yesterday"
            case 1: e.action = "Round.Unmask"
            case 2: e.actor = ""
            case 3: e.reason = "line\nbreak"
            case 4: e.digests = [.init(name: "short", bytes: [1, 2, 3])]
            case 5: e.objectType = ""
            default: e.requestID = String(repeating: "x", count: 1025)
            }
            cases.append(e)
        }
        for e in cases {
            #expect(throws: AuditError(.malformed, "")) { try e.encoded() }
        }
    }

    @Test("The list of actions is the Protocol's table of audit actions, in its order")
    func actionsAreTheProtocolTable() throws {
        let file = #filePath
        let root = String(file[..<file.range(of: "/Tests/")!.lowerBound])
        let text = String(decoding: try DurableFile.read(root + "/Protocol/README.md", maximum: 1 << 22), as: UTF8.self)
        let section = text.components(separatedBy: "## Audit actions")[1].components(separatedBy: "\n## ")[0]
        var listed: [String] = []
        for line in section.split(separator: "\n") where line.hasPrefix("| `") {
            let cell = line.split(separator: "|")[0]
            for name in cell.split(separator: "`").enumerated().filter({ $0.offset % 2 == 1 }).map({
                String($0.element)
            })
            where !listed.contains(name) {
                listed.append(name)
            }
        }
        #expect(listed == AuditEntry.actions)
    }
}
