import CairnWire

/// What ``DataValidator`` found in one CSV file: counts of every kind of problem, the first
/// problems with their row and column, the class balance and the row count.
///
/// Rows are numbered from 1, the header being row 1; columns from 1, as a spreadsheet shows them.
/// Problems say where and what is wrong, never the cell's value: data may be personal, and a
/// report or error can end up in a log.
public struct ValidationReport: Sendable, Codable, Hashable {
    /// A kind of problem.
    public enum Kind: String, Sendable, Codable, Hashable, CaseIterable {
        /// The file has no header row.
        case emptyFile
        /// The file has a header and no data rows.
        case noRows
        /// A schema column is not in the header.
        case missingColumn
        /// A header column is not in the schema.
        case unknownColumn
        /// A header column appears twice.
        case duplicateColumn
        /// A row has more or fewer fields than the header.
        case wrongFieldCount
        /// A cell is empty.
        case missingValue
        /// A cell does not parse as its column's type.
        case wrongType
        /// A number lies outside its column's range.
        case outOfRange
        /// A category cell is not one of the column's categories.
        case unknownCategory
        /// A label cell is not one of the schema's classes.
        case unknownClass
        /// A row repeats an earlier row exactly (a warning: it does not fail validation).
        case duplicateRow

        /// Whether this kind fails validation.
        public var isError: Bool { self != .duplicateRow }
    }

    /// One problem, where it is.
    public struct Problem: Sendable, Codable, Hashable {
        /// The kind of problem.
        public var kind: Kind
        /// The row (1 = header); 0 when the problem is the whole file.
        public var row: Int
        /// The column (from 1); 0 when the problem is a whole row or file.
        public var column: Int
        /// The column's name, or "" when none applies.
        public var columnName: String
        /// What is wrong, for a person.
        public var detail: String
    }

    /// The most problems listed one by one; every problem is still counted.
    public static let listedProblemLimit = 100

    /// The file checked.
    public var path: String
    /// Data rows (the header not counted).
    public var rows = 0
    /// Problems per kind (in JSON, an object with every kind, by name).
    public var counts: [Kind: Int] = [:]
    /// The first ``listedProblemLimit`` problems, in file order.
    public var problems: [Problem] = []
    /// Rows per class, in the schema's class order.
    public var classCounts: [Int] = []
    /// The class names, in the schema's order.
    public var classNames: [String] = []
    /// Whether the file had more distinct rows than duplicate detection tracks
    /// (``DataValidator/duplicateTrackingLimit``): later rows are checked only against those.
    public var duplicateCheckLimited = false

    /// Whether the file may be trained on: no problem of an error kind.
    public var passed: Bool { counts.allSatisfy { !$0.key.isError || $0.value == 0 } }

    /// The number of problems of error kinds.
    public var errorCount: Int { counts.filter { $0.key.isError }.values.reduce(0, +) }

    mutating func add(_ kind: Kind, row: Int, column: Int = 0, name: String = "", _ detail: String) {
        counts[kind, default: 0] += 1
        if problems.count < Self.listedProblemLimit {
            problems.append(Problem(kind: kind, row: row, column: column, columnName: name, detail: detail))
        }
    }

    /// The report for a person, one fact per line.
    public var text: String {
        var lines = ["\(path): " + (passed ? "passed" : "FAILED, \(errorCount) problem\(errorCount == 1 ? "" : "s")")]
        lines.append("rows: \(rows)")
        if !classNames.isEmpty, rows > 0 {
            let parts = zip(classNames, classCounts).map { name, n in
                "\(name) \(n) (\(Double(n * 1000 / max(rows, 1)) / 10)%)"
            }
            lines.append("class balance: " + parts.joined(separator: ", "))
        }
        for kind in Kind.allCases {
            lines.append("\(kind.label): \(counts[kind] ?? 0)")
        }
        if duplicateCheckLimited {
            lines.append(
                "(duplicate rows were looked for among the first \(DataValidator.duplicateTrackingLimit) distinct rows)"
            )
        }
        if !problems.isEmpty {
            let total = counts.values.reduce(0, +)
            lines.append(total > problems.count ? "problems (first \(problems.count) of \(total)):" : "problems:")
            for p in problems {
                var place = p.row > 0 ? "row \(p.row)" : "file"
                if p.column > 0 { place += ", column \(p.column) (\(p.columnName))" }
                lines.append("  \(place): \(p.kind.label): \(p.detail)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension ValidationReport {
    private enum CodingKeys: String, CodingKey {
        case path, rows, counts, problems, classCounts, classNames, duplicateCheckLimited, passed
    }

    /// Encodes `counts` as an object naming every kind (0 when none), and `passed`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encode(rows, forKey: .rows)
        try c.encode(
            Dictionary(uniqueKeysWithValues: Kind.allCases.map { ($0.rawValue, counts[$0] ?? 0) }),
            forKey: .counts
        )
        try c.encode(problems, forKey: .problems)
        try c.encode(classCounts, forKey: .classCounts)
        try c.encode(classNames, forKey: .classNames)
        try c.encode(duplicateCheckLimited, forKey: .duplicateCheckLimited)
        try c.encode(passed, forKey: .passed)
    }

    /// Decodes what ``encode(to:)`` writes (an unknown kind is refused).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        rows = try c.decode(Int.self, forKey: .rows)
        for (name, count) in try c.decode([String: Int].self, forKey: .counts) where count != 0 {
            guard let kind = Kind(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .counts, in: c, debugDescription: "unknown kind \(name)")
            }
            counts[kind] = count
        }
        problems = try c.decode([Problem].self, forKey: .problems)
        classCounts = try c.decode([Int].self, forKey: .classCounts)
        classNames = try c.decode([String].self, forKey: .classNames)
        duplicateCheckLimited = try c.decode(Bool.self, forKey: .duplicateCheckLimited)
    }
}

extension ValidationReport.Kind {
    var label: String {
        switch self {
        case .emptyFile: "empty file"
        case .noRows: "no data rows"
        case .missingColumn: "missing columns"
        case .unknownColumn: "columns not in the schema"
        case .duplicateColumn: "duplicate columns"
        case .wrongFieldCount: "rows with a wrong number of fields"
        case .missingValue: "missing values"
        case .wrongType: "wrong types"
        case .outOfRange: "values out of range"
        case .unknownCategory: "unknown categories"
        case .unknownClass: "unknown classes"
        case .duplicateRow: "duplicate rows (warning)"
        }
    }
}

/// Checks a CSV file against a ``DataSchema`` and, when it passes and is asked to, loads it.
///
/// The file is read once, record by record, and never modified. Memory is bounded whatever the
/// file size: the read buffer, one record, and at most ``duplicateTrackingLimit`` row digests for
/// duplicate detection (plus the loaded data when loading).
public enum DataValidator {
    /// Distinct rows remembered for duplicate detection: 2^19 (about 16 MiB at most).
    public static let duplicateTrackingLimit = 1 << 19

    /// Validates `path` against `schema`.
    public static func check(_ path: String, schema: DataSchema) throws -> ValidationReport {
        try run(path, schema, load: false).report
    }

    /// Validates `path` and, if it passes, returns its rows encoded as model inputs.
    ///
    /// Throws ``DataError/Code/invalidData`` with the report's summary when validation fails:
    /// nothing is trained on data that fails its schema.
    public static func load(_ path: String, schema: DataSchema) throws -> (Dataset, ValidationReport) {
        let (dataset, report, _) = try load(path, schema: schema, labelOptional: false)
        return (dataset, report)
    }

    /// Validates `path` for prediction and returns its rows: as ``load(_:schema:)``, except that
    /// the label column may be absent (new rows, whose class is what is asked). Then `labelled`
    /// is false and every row's label is 0, to be ignored.
    public static func loadForPrediction(
        _ path: String,
        schema: DataSchema
    ) throws -> (
        data: Dataset, labelled: Bool
    ) {
        let (dataset, _, labelled) = try load(path, schema: schema, labelOptional: true)
        return (dataset, labelled)
    }

    private static func load(
        _ path: String,
        schema: DataSchema,
        labelOptional: Bool
    ) throws -> (Dataset, ValidationReport, labelled: Bool) {
        let (report, dataset, labelled) = try run(try CSVReader(path: path), path, schema, load: true, labelOptional)
        guard report.passed, let dataset else {
            let first = report.problems.first { $0.kind.isError }.map { p in
                "; first: " + (p.row > 0 ? "row \(p.row)" : "file")
                    + (p.column > 0 ? ", column \(p.column) (\(p.columnName))" : "")
                    + ": \(p.detail)"
            }
            let count = report.errorCount == 1 ? "1 problem" : "\(report.errorCount) problems"
            throw DataError(.invalidData, "\(path) fails its schema (\(count)\(first ?? ""))")
        }
        return (dataset, report, labelled)
    }

    /// Validates CSV bytes held in memory (for the fuzzer and tests).
    static func check(bytes: [UInt8], schema: DataSchema) throws -> ValidationReport {
        try run(CSVReader(bytes: bytes, name: "input"), "input", schema, load: false).report
    }

    private static func run(
        _ path: String,
        _ schema: DataSchema,
        load: Bool
    ) throws -> (report: ValidationReport, dataset: Dataset?) {
        let (report, dataset, _) = try run(try CSVReader(path: path), path, schema, load: load)
        return (report, dataset)
    }

    /// `labelOptional`: a header without the label column is accepted (`labelled` is then false).
    private static func run(
        _ reader: CSVReader,
        _ path: String,
        _ schema: DataSchema,
        load: Bool,
        _ labelOptional: Bool = false
    ) throws -> (report: ValidationReport, dataset: Dataset?, labelled: Bool) {
        try schema.validate()
        var report = ValidationReport(path: path)
        report.classNames = schema.label.classes
        report.classCounts = [Int](repeating: 0, count: schema.label.classes.count)
        guard let rawHeader = try reader.nextRecord() else {
            report.add(.emptyFile, row: 0, "the file is empty; expected a header row")
            return (report, nil, false)
        }
        // Map schema columns to header positions.
        // Header names without padding (`a, b` names columns a and b).
        let header = rawHeader.map { String($0.trimmed) }
        var position: [String: Int] = [:]
        for (i, name) in header.enumerated() {
            if position[name] != nil {
                report.add(.duplicateColumn, row: 1, column: i + 1, name: name, "column '\(name)' appears twice")
            } else {
                position[name] = i
            }
        }
        let wanted = Set(schema.features.map(\.name) + [schema.label.name])
        for (i, name) in header.enumerated() where !wanted.contains(name) {
            report.add(.unknownColumn, row: 1, column: i + 1, name: name, "column '\(name)' is not in the schema")
        }
        let labelled = !labelOptional || position[schema.label.name] != nil
        for name in schema.features.map(\.name) + (labelled ? [schema.label.name] : []) where position[name] == nil {
            report.add(.missingColumn, row: 1, name: name, "the schema's column '\(name)' is not in the header")
        }
        guard report.passed else { return (report, nil, labelled) }

        let featureColumns = schema.features.map { position[$0.name]! }
        let labelColumn = position[schema.label.name]
        let classIndex = Dictionary(uniqueKeysWithValues: schema.label.classes.enumerated().map { ($1, $0) })
        let categoryIndex = schema.features.map { f in
            f.categories.map { Dictionary(uniqueKeysWithValues: $0.enumerated().map { ($1, $0) }) }
        }
        var seen: [Int: Int32] = [:]
        var values: [Float] = []
        var labels: [Int32] = []
        var encoded = [Float](repeating: 0, count: schema.inputCount)
        while let fields = try reader.nextRecord() {
            let row = reader.record
            report.rows += 1
            guard fields.count == header.count else {
                report.add(.wrongFieldCount, row: row, "\(fields.count) fields; the header has \(header.count)")
                continue
            }
            var rowOK = true
            var slot = 0
            for (k, feature) in schema.features.enumerated() {
                let column = featureColumns[k]
                let cell = fields[column].trimmed
                func problem(_ kind: ValidationReport.Kind, _ detail: String) {
                    report.add(kind, row: row, column: column + 1, name: feature.name, detail)
                    rowOK = false
                }
                if feature.type == .category {
                    let count = feature.categories!.count
                    if cell.isEmpty {
                        problem(.missingValue, "empty cell")
                    } else if let index = categoryIndex[k]![String(cell)] {
                        for j in 0..<count { encoded[slot + j] = j == index ? 1 : 0 }
                    } else {
                        problem(
                            .unknownCategory,
                            "not one of the \(feature.categories!.count) categories"
                        )
                    }
                    slot += count
                    continue
                }
                defer { slot += 1 }
                if cell.isEmpty {
                    problem(.missingValue, "empty cell")
                    continue
                }
                guard let value = parse(cell, integer: feature.type == .integer) else {
                    problem(
                        .wrongType,
                        "not \(feature.type == .integer ? "a whole number" : "a finite number")"
                    )
                    continue
                }
                if abs(value) > Double(Float.greatestFiniteMagnitude) {
                    // Whatever the schema says: the models compute in binary32.
                    problem(.outOfRange, "beyond the range of a 32-bit float (±3.4e38)")
                } else if let lo = feature.min, value < lo {
                    problem(.outOfRange, "below the minimum \(lo)")
                } else if let hi = feature.max, value > hi {
                    problem(.outOfRange, "above the maximum \(hi)")
                }
                encoded[slot] = Float(value)
            }
            var label = 0
            if let labelColumn {
                let labelCell = fields[labelColumn].trimmed
                if labelCell.isEmpty {
                    report.add(.missingValue, row: row, column: labelColumn + 1, name: schema.label.name, "empty label")
                    rowOK = false
                } else if let index = classIndex[String(labelCell)] {
                    label = index
                    report.classCounts[index] += 1
                } else {
                    report.add(
                        .unknownClass,
                        row: row,
                        column: labelColumn + 1,
                        name: schema.label.name,
                        "not one of the schema's \(schema.label.classes.count) classes"
                    )
                    rowOK = false
                }
            }
            var hasher = Hasher()
            hasher.combine(fields)
            let digest = hasher.finalize()
            if let first = seen[digest] {
                report.add(.duplicateRow, row: row, "repeats row \(first)")
            } else if seen.count < duplicateTrackingLimit {
                seen[digest] = Int32(clamping: row)
            } else {
                report.duplicateCheckLimited = true
            }
            if load, rowOK, report.passed {
                values.append(contentsOf: encoded)
                labels.append(Int32(label))
            }
        }
        if report.rows == 0 { report.add(.noRows, row: 0, "the file has a header and no data rows") }
        guard load, report.passed else { return (report, nil, labelled) }
        return (report, Dataset(schema: schema, features: values, labels: labels), labelled)
    }

    /// A decimal number (or, for integers, a whole number with no point or exponent), finite.
    static func parse(_ s: Substring, integer: Bool) -> Double? {
        func allowed(_ c: UInt8) -> Bool {
            let digit = c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")
            let sign = c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
            let decimal = c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
            return digit || sign || (!integer && decimal)
        }
        guard s.utf8.allSatisfy(allowed), let value = Double(s), value.isFinite else { return nil }
        return value
    }
}

extension String {
    /// The cell without leading or trailing spaces and tabs.
    fileprivate var trimmed: Substring {
        var s = self[...]
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
