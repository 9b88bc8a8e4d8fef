import CairnWire
import FoundationEssentials

/// A trained model on disk: a safetensors file (the Hugging Face format) with Cairn's metadata.
///
/// Layout (`Protocol/README.md`, "Model files"): 8 bytes little-endian header length `N`, `N`
/// bytes of JSON header (padded with spaces to a multiple of 8), then the tensors' bytes,
/// little-endian `F32`, back to back in header order. The header maps each tensor name to
/// `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` and `__metadata__` to string
/// pairs: `format` = `cairn-model/v1`, `architecture` and `schema` (JSON). Tensors: the model's
/// (``ModelArchitecture/tensors``), then `standardisation.mean` and `standardisation.scale`, then
/// in a SCAFFOLD federation's round model (never in a licensed file) `scaffold.control`.
/// Python reads it with `safetensors.numpy.load_file`.
public struct ModelFile: Sendable {
    /// The model.
    public var model: Model
    /// The schema of the data it was trained on (feature names and order, classes).
    public var schema: DataSchema
    /// The standardisation applied to inputs before the model.
    public var standardisation: Standardisation
    /// SCAFFOLD's server control variate `c`, one value per parameter: only in the model a
    /// SCAFFOLD federation's broker serves its participants for a round.
    public var control: [Float]?

    /// The format tag in the metadata.
    public static let formatTag = "cairn-model/v1"
    /// The largest header accepted when reading: 16 MiB.
    public static let maximumHeaderBytes = 16 << 20

    /// A model file's contents; the schema and standardisation must match the model's inputs,
    /// and `control` (when given) its parameters.
    public init(model: Model, schema: DataSchema, standardisation: Standardisation, control: [Float]? = nil) throws {
        let inputs = model.architecture.inputs
        guard schema.inputCount == inputs, standardisation.mean.count == inputs, standardisation.scale.count == inputs
        else {
            throw DataError(
                .invalidModelFile,
                "the schema and standardisation do not match the model's \(inputs) inputs"
            )
        }
        guard schema.label.classes.count == model.architecture.classes else {
            throw DataError(.invalidModelFile, "the schema's classes do not match the model's")
        }
        guard control.map({ $0.count == model.parameters.count }) ?? true else {
            throw DataError(.invalidModelFile, "the control variate does not match the model's parameters")
        }
        self.control = control
        self.model = model
        self.schema = schema
        self.standardisation = standardisation
    }

    private var tensors: [(name: String, shape: [Int], values: ArraySlice<Float>)] {
        let p = model.parameters
        return model.architecture.tensors.map { t in
            (t.name, t.shape, p[t.offset..<(t.offset + t.shape.reduce(1, *))])
        } + [
            ("standardisation.mean", [standardisation.mean.count], standardisation.mean[...]),
            ("standardisation.scale", [standardisation.scale.count], standardisation.scale[...]),
        ] + (control.map { [("scaffold.control", [$0.count], $0[...])] } ?? [])
    }

    /// The file's bytes.
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func json(_ value: some Encodable) throws -> String {
            String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        let metadata = [
            "format": Self.formatTag,
            "architecture": try json(model.architecture),
            "schema": try json(schema),
        ]
        var header = "{\"__metadata__\":" + (try json(metadata))
        var offset = 0
        var data: [UInt8] = []
        for t in tensors {
            let end = offset + t.values.count * 4
            header +=
                ",\(try json(t.name)):"
                + (try json(TensorEntry(dtype: "F32", shape: t.shape, data_offsets: [offset, end])))
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            offset = end
        }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out += Array(header.utf8)
        return out + data
    }

    /// Writes the file atomically and durably (mode 0644); an existing file is replaced only when
    /// `replace` is true.
    public func write(to path: String, replace: Bool) throws {
        do {
            try DurableFile.write(try encoded(), to: path, mode: DurableFile.shared, replace: replace)
        } catch let error as WireError {
            throw DataError(.io, error.message)
        }
    }

    /// Reads and checks a model file (at most 1 GiB).
    public static func read(from path: String) throws -> ModelFile {
        try decode(try readFile(path, maximum: 1 << 30), name: path)
    }

    /// Decodes a model file's bytes, checking everything: the header length and JSON, the format
    /// tag, each tensor's dtype, shape and offsets (in bounds, back to back, covering the data
    /// exactly), that the tensors are exactly the ones the architecture names, and that every
    /// value is finite (and every scale non-zero).
    public static func decode(_ bytes: [UInt8], name: String = "model file") throws -> ModelFile {
        func fail(_ why: String) -> DataError { DataError(.invalidModelFile, "\(name): \(why)") }
        guard bytes.count >= 8 else { throw fail("shorter than its 8-byte header length") }
        let n = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n >= 2, n <= UInt64(maximumHeaderBytes), n <= UInt64(bytes.count - 8) else {
            throw fail("header length \(n) is out of range")
        }
        let headerEnd = 8 + Int(n)
        let object: [String: AnyEntry]
        do {
            object = try JSONDecoder().decode([String: AnyEntry].self, from: Data(bytes[8..<headerEnd]))
        } catch {
            throw fail("the header is not valid: \(describe(error))")
        }
        guard case .metadata(let metadata)? = object["__metadata__"] else { throw fail("no __metadata__") }
        guard metadata["format"] == formatTag else { throw fail("not a \(formatTag) file") }
        let architecture: ModelArchitecture
        let schema: DataSchema
        do {
            architecture = try JSONDecoder().decode(
                ModelArchitecture.self,
                from: Data((metadata["architecture"] ?? "").utf8)
            )
            schema = try JSONDecoder().decode(DataSchema.self, from: Data((metadata["schema"] ?? "").utf8))
        } catch {
            throw fail("bad architecture or schema metadata: \(describe(error))")
        }
        _ = try ModelArchitecture(
            kind: architecture.kind,
            inputs: architecture.inputs,
            classes: architecture.classes,
            hidden: architecture.hidden
        )
        try schema.validate()
        let dataCount = bytes.count - headerEnd
        var values: [String: [Float]] = [:]
        var spans: [(Int, Int)] = []
        for (key, value) in object where key != "__metadata__" {
            guard case .tensor(let e) = value else { throw fail("tensor \(key) is malformed") }
            guard e.dtype == "F32" else { throw fail("tensor \(key) has dtype \(e.dtype); only F32 is read") }
            guard e.data_offsets.count == 2, e.shape.allSatisfy({ $0 >= 0 && $0 <= 1 << 26 }) else {
                throw fail("tensor \(key) has a bad shape or offsets")
            }
            let (begin, end) = (e.data_offsets[0], e.data_offsets[1])
            let elements = e.shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            guard begin >= 0, begin <= end, end <= dataCount, elements < Int.max / 4, end - begin == elements * 4 else {
                throw fail("tensor \(key) has offsets that do not fit its shape or the file")
            }
            spans.append((begin, end))
            values[key] = stride(from: headerEnd + begin, to: headerEnd + end, by: 4).map { i in
                var bits = UInt32(bytes[i])
                bits |= UInt32(bytes[i + 1]) << 8
                bits |= UInt32(bytes[i + 2]) << 16
                bits |= UInt32(bytes[i + 3]) << 24
                return Float(bitPattern: bits)
            }
        }
        spans.sort { $0.0 < $1.0 }
        var covered = 0
        for (begin, end) in spans {
            guard begin == covered else { throw fail("tensor data overlaps or leaves a gap at byte \(covered)") }
            covered = end
        }
        guard covered == dataCount else { throw fail("\(dataCount - covered) bytes after the last tensor") }
        let expected = architecture.tensors.map(\.name) + ["standardisation.mean", "standardisation.scale"]
        guard Set(values.keys).subtracting(["scaffold.control"]) == Set(expected) else {
            throw fail("tensors \(values.keys.sorted()) do not match the architecture's \(expected)")
        }
        var parameters: [Float] = []
        for t in architecture.tensors {
            guard let v = values[t.name], v.count == t.shape.reduce(1, *) else {
                throw fail("tensor \(t.name) has the wrong shape")
            }
            parameters += v
        }
        let file = try ModelFile(
            model: Model(architecture: architecture, parameters: parameters),
            schema: schema,
            standardisation: Standardisation(
                mean: values["standardisation.mean"]!,
                scale: values["standardisation.scale"]!
            ),
            control: values["scaffold.control"]
        )
        guard file.standardisation.scale.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw fail("a standardisation scale is 0 or not finite")
        }
        guard parameters.allSatisfy(\.isFinite), file.standardisation.mean.allSatisfy(\.isFinite),
            file.control?.allSatisfy(\.isFinite) ?? true
        else {
            throw fail("a parameter, mean or control value is NaN or infinite")
        }
        return file
    }

    /// Probabilities (`rows × classes`) for raw (unstandardised) encoded inputs. Refuses
    /// (``DataError/Code/invalidData``) a row whose probabilities are not finite, naming it (row
    /// 2 is the first data row of its CSV file): nothing downstream may read a NaN as a score.
    public func probabilities(_ data: Dataset) throws -> [Float] {
        let p = model.probabilities(standardisation.apply(to: data).features)
        if let bad = p.firstIndex(where: { !$0.isFinite }) {
            let classes = model.architecture.classes
            throw DataError(
                .invalidData,
                "row \(bad / classes + 2): the model's probabilities for it are not finite numbers (its values, standardised, are beyond what the model's 32-bit arithmetic holds); nothing was written"
            )
        }
        return p
    }
}

/// One value of a safetensors header: the metadata map or a tensor entry.
private enum AnyEntry: Decodable {
    case metadata([String: String])
    case tensor(TensorEntry)

    init(from decoder: any Decoder) throws {
        if let e = try? TensorEntry(from: decoder) {
            self = .tensor(e)
        } else {
            self = .metadata(try [String: String](from: decoder))
        }
    }
}

/// A tensor's entry in a safetensors header.
private struct TensorEntry: Codable {
    var dtype: String
    var shape: [Int]
    var data_offsets: [Int]
}
