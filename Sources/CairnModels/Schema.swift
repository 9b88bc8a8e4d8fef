import CairnWire
import FoundationEssentials

/// A federation's data schema: the features every participant's CSV must have, their types and
/// allowed values, and the label column with its classes.
///
/// Stored as JSON (`Protocol/README.md`, "Data schema"). Column order in a CSV file is free;
/// the schema's feature order is the order of the model's inputs.
public struct DataSchema: Codable, Sendable, Hashable {
    /// The learning task.
    public enum Task: String, Codable, Sendable {
        /// Two classes.
        case binary
        /// Two or more classes, one per sample.
        case multiclass
    }

    /// The type of a feature column.
    public enum FeatureType: String, Codable, Sendable {
        /// A decimal number (finite).
        case float
        /// A whole number written without a decimal point.
        case integer
        /// One of a fixed list of names; one-hot encoded as model inputs.
        case category
    }

    /// One feature column.
    public struct Feature: Codable, Sendable, Hashable {
        /// The column name in the CSV header.
        public var name: String
        /// The column type.
        public var type: FeatureType
        /// The smallest allowed value (numbers only; optional).
        public var min: Double?
        /// The largest allowed value (numbers only; optional).
        public var max: Double?
        /// The allowed names (categories only).
        public var categories: [String]?

        /// A feature.
        public init(
            name: String,
            type: FeatureType,
            min: Double? = nil,
            max: Double? = nil,
            categories: [String]? = nil
        ) {
            self.name = name
            self.type = type
            self.min = min
            self.max = max
            self.categories = categories
        }
    }

    /// The label column.
    public struct Label: Codable, Sendable, Hashable {
        /// The column name in the CSV header.
        public var name: String
        /// The class names, in class-index order.
        public var classes: [String]

        /// A label column.
        public init(name: String, classes: [String]) {
            self.name = name
            self.classes = classes
        }
    }

    /// The format tag, `cairn-schema/v1`.
    public var format: String
    /// The learning task.
    public var task: Task
    /// The label column.
    public var label: Label
    /// The feature columns, in model-input order.
    public var features: [Feature]

    /// The format tag this version reads and writes.
    public static let formatTag = "cairn-schema/v1"

    /// A schema; call ``validate()`` before use (``load(from:)`` does).
    public init(task: Task, label: Label, features: [Feature]) {
        format = Self.formatTag
        self.task = task
        self.label = label
        self.features = features
    }

    /// The number of model inputs: one per number, one per category of each category feature.
    public var inputCount: Int {
        features.reduce(0) { $0 + ($1.type == .category ? ($1.categories?.count ?? 0) : 1) }
    }

    /// Reads and checks a schema file (at most 1 MiB of JSON).
    public static func load(from path: String) throws -> DataSchema {
        let bytes = try readFile(path, maximum: 1 << 20)
        let schema: DataSchema
        do {
            schema = try JSONDecoder().decode(DataSchema.self, from: Data(bytes))
        } catch {
            throw DataError(.invalidSchema, "\(path) is not a valid schema: \(describe(error))")
        }
        try schema.validate()
        return schema
    }

    /// Checks that the schema is usable: known format, unique non-empty names, at least one
    /// feature, 2 classes for a binary task and at least 2 for multiclass, sane ranges and
    /// category lists.
    public func validate() throws {
        func fail(_ message: String) -> DataError { DataError(.invalidSchema, message) }
        guard format == Self.formatTag else {
            throw fail("unknown schema format '\(format)'; expected \(Self.formatTag)")
        }
        guard !features.isEmpty else { throw fail("the schema has no features") }
        var names = Set<String>()
        for name in features.map(\.name) + [label.name] {
            guard !name.isEmpty else { throw fail("a column name is empty") }
            guard names.insert(name).inserted else { throw fail("column '\(name)' appears twice") }
        }
        switch task {
        case .binary: guard label.classes.count == 2 else { throw fail("a binary task has exactly 2 classes") }
        case .multiclass: guard label.classes.count >= 2 else { throw fail("a multiclass task has at least 2 classes") }
        }
        guard Set(label.classes).count == label.classes.count, !label.classes.contains("") else {
            throw fail("class names must be distinct and non-empty")
        }
        for f in features {
            if f.type == .category {
                guard let c = f.categories, !c.isEmpty, Set(c).count == c.count, !c.contains("") else {
                    throw fail("feature '\(f.name)' needs a list of distinct, non-empty categories")
                }
                guard f.min == nil, f.max == nil else {
                    throw fail("category feature '\(f.name)' cannot have min or max")
                }
            } else {
                guard f.categories == nil else { throw fail("numeric feature '\(f.name)' cannot have categories") }
                if let lo = f.min, let hi = f.max, !(lo <= hi) { throw fail("feature '\(f.name)' has min above max") }
                for bound in [f.min, f.max] {
                    if let b = bound, !b.isFinite { throw fail("feature '\(f.name)' has a non-finite bound") }
                }
            }
        }
    }
}

/// The whole of a small file, or a ``DataError`` naming it.
func readFile(_ path: String, maximum: Int) throws -> [UInt8] {
    do {
        return try DurableFile.read(path, maximum: maximum)
    } catch {
        throw DataError(.io, error.message)
    }
}

/// A decoding error in one line, for a person.
func describe(_ error: any Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "missing field '\(path(context.codingPath + [key]))'"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "wrong type at '\(path(context.codingPath))'"
    case DecodingError.dataCorrupted(let context):
        return context.codingPath.isEmpty ? "not JSON" : "bad value at '\(path(context.codingPath))'"
    default:
        return "\(error)"
    }
}

private func path(_ keys: [any CodingKey]) -> String {
    keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
}
