import CairnWire
import Foundation
import Testing

@testable import CairnModels

@Suite("Model files (safetensors)")
struct ModelFileTests {
    func sample() throws -> ModelFile {
        let schema = DataSchema(
            task: .multiclass,
            label: .init(name: "y", classes: ["a", "b", "c"]),
            features: [.init(name: "x0", type: .float), .init(name: "x1", type: .float)]
        )
        var model = Model(architecture: try ModelArchitecture(kind: .mlp, inputs: 2, classes: 3, hidden: 4), seed: 3)
        model.parameters[12] = -0.0
        return try ModelFile(
            model: model,
            schema: schema,
            standardisation: Standardisation(mean: [1, -2], scale: [0.5, 4])
        )
    }

    @Test("Encoding then decoding gives back every bit, and the layout is the documented one")
    func roundTrip() throws {
        let file = try sample()
        let bytes = try file.encoded()
        let back = try ModelFile.decode(bytes)
        #expect(back.model == file.model)
        #expect(back.model.parameters.map(\.bitPattern) == file.model.parameters.map(\.bitPattern))
        #expect(back.schema == file.schema && back.standardisation == file.standardisation)
        let n = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16
        #expect(n % 8 == 0 && bytes[8] == UInt8(ascii: "{"))
        #expect(bytes.count == 8 + n + 4 * (file.model.parameters.count + 4))
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        #expect(header.contains("\"hidden.weight\":{\"data_offsets\":[0,32],\"dtype\":\"F32\",\"shape\":[4,2]}"))
        #expect(header.contains("\"format\":\"cairn-model/v1\""))
    }

    @Test("Probabilities that are not finite are refused with the row, never returned")
    func nonFiniteProbabilities() throws {
        let file = try sample()
        let rows = Dataset(schema: file.schema, features: [0, 1, 3e38, -3e38, 2, 2], labels: [0, 1, 2])
        let refusal = #expect(throws: DataError.self) { try file.probabilities(rows) }
        #expect(refusal?.code == .invalidData)
        #expect(refusal?.message.hasPrefix("row 3: the model's probabilities for it are not finite numbers") == true)
        let fine = try file.probabilities(Dataset(schema: file.schema, features: [0, 1, 2, 2], labels: [0, 2]))
        #expect(fine.count == 6 && fine.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 })
    }

    @Test("Truncated, padded and altered files are refused with invalidModelFile")
    func refusals() throws {
        let bytes = try sample().encoded()
        let n = Int(bytes[0]) | Int(bytes[1]) << 8
        var cases: [[UInt8]] = [
            [], Array(bytes.prefix(7)), Array(bytes.prefix(8 + n)), Array(bytes.dropLast()), bytes + [0],
        ]
        var huge = bytes
        huge[7] = 0x01
        cases.append(huge)
        for (from, to) in [("F32", "F16"), ("cairn-model/v1", "cairn-model/v9"), ("[0,32]", "[0,36]"), ("mlp", "xyz")] {
            let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self).replacingFirst(from, to)
            cases.append(Array(bytes[0..<8]) + Array(header.utf8) + Array(bytes[(8 + n)...]))
        }
        for (i, c) in cases.enumerated() {
            #expect(throws: DataError(.invalidModelFile, ""), "case \(i)") { try ModelFile.decode(c) }
        }
    }

    @Test("Every truncation of a model file is refused")
    func everyTruncation() throws {
        let bytes = try sample().encoded()
        for length in 0..<bytes.count {
            #expect(throws: DataError(.invalidModelFile, "")) { try ModelFile.decode(Array(bytes.prefix(length))) }
        }
    }
}

extension String {
    func replacingFirst(_ a: String, _ b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
