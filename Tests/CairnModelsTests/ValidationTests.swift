import CairnWire
import Foundation
import Testing

@testable import CairnModels

/// A fresh temporary folder for one test.
func temporaryFolder() -> String {
    let path = NSTemporaryDirectory() + "cairn-models-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Writes `text` to a new file in a temporary folder and returns its path.
func csvFile(_ text: String) -> String {
    let path = temporaryFolder() + "/data.csv"
    try! DurableFile.write(Array(text.utf8), to: path, replace: false)
    return path
}

/// The repository's `Datasets/` folder.
let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Datasets").path

/// Two float features `a` (0…10) and `b`, a category `colour`, label `y` in {no, yes}.
let smallSchema = DataSchema(
    task: .binary,
    label: .init(name: "y", classes: ["no", "yes"]),
    features: [
        .init(name: "a", type: .float, min: 0, max: 10),
        .init(name: "b", type: .integer),
        .init(name: "colour", type: .category, categories: ["red", "green"]),
    ]
)

@Suite("Data validation")
struct ValidationTests {
    @Test("The shipped datasets pass their schemas with the published row counts and class balance")
    func shippedDatasets() throws {
        let cancer = try DataSchema.load(from: datasets + "/breast-cancer/schema.json")
        let (data, report) = try DataValidator.load(datasets + "/breast-cancer/data.csv", schema: cancer)
        #expect(report.passed && report.rows == 569 && report.classCounts == [212, 357])
        #expect(data.count == 569 && data.inputCount == 30)
        #expect(data.features[0] == 17.99 && data.labels[0] == 0)
        let digits = try DataSchema.load(from: datasets + "/digits/schema.json")
        let d = try DataValidator.check(datasets + "/digits/data.csv", schema: digits)
        #expect(d.passed && d.rows == 1797 && d.classCounts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
        #expect(d.counts[.duplicateRow, default: 0] == 0)
    }

    @Test("A good file with quotes, spaces and CRLF passes and loads one-hot categories")
    func goodFile() throws {
        let path = csvFile("y,colour,b,a\r\nyes,red,3,1.5\r\n\"no\",  green ,-2,0\r\nyes,\"red\",7,\"1e1\"")
        let (data, report) = try DataValidator.load(path, schema: smallSchema)
        #expect(report.passed && report.rows == 3 && report.classCounts == [1, 2])
        #expect(data.features == [1.5, 3, 1, 0, 0, -2, 0, 1, 10, 7, 1, 0])
        #expect(data.labels == [1, 0, 1])
    }

    @Test("New rows for prediction need no label column; with one, its labels are checked and kept")
    func predictionRows() throws {
        let unlabelled = csvFile("colour,b,a\nred,3,1.5\ngreen,-2,0\n")
        let (new, labelled) = try DataValidator.loadForPrediction(unlabelled, schema: smallSchema)
        #expect(!labelled && new.count == 2 && new.features == [1.5, 3, 1, 0, 0, -2, 0, 1])
        // Training data must have its labels.
        #expect(throws: DataError.self) { try DataValidator.load(unlabelled, schema: smallSchema) }
        let withLabels = csvFile("y,colour,b,a\nyes,red,3,1.5\nno,green,-2,0\n")
        let (old, hasLabels) = try DataValidator.loadForPrediction(withLabels, schema: smallSchema)
        #expect(hasLabels && old.features == new.features && old.labels == [1, 0])
        // A feature is still required, and a label present is still checked.
        let noFeature = csvFile("colour,a\nred,1.5\n")
        let missing = #expect(throws: DataError.self) {
            try DataValidator.loadForPrediction(noFeature, schema: smallSchema)
        }
        #expect(missing?.message.contains("the schema's column 'b' is not in the header") == true)
        let badLabel = csvFile("y,colour,b,a\nmaybe,red,3,1.5\n")
        #expect(throws: DataError.self) { try DataValidator.loadForPrediction(badLabel, schema: smallSchema) }
    }

    @Test("Each kind of bad cell is reported at its row and column, and training is refused")
    func badCells() throws {
        let path = csvFile(
            """
            a,b,colour,y
            1,2,red,yes
            x,2,red,yes
            11,2,red,no
            1,2.5,red,no
            1,2,blue,no
            1,2,red,maybe
            ,2,red,no
            1,2,red
            1,2,red,yes
            """
        )
        let report = try DataValidator.check(path, schema: smallSchema)
        #expect(!report.passed)
        #expect(report.rows == 9)
        let found = report.problems.map { "\($0.kind) \($0.row):\($0.column) \($0.columnName)" }
        #expect(
            found == [
                "wrongType 3:1 a", "outOfRange 4:1 a", "wrongType 5:2 b", "unknownCategory 6:3 colour",
                "unknownClass 7:4 y", "missingValue 8:1 a", "wrongFieldCount 9:0 ", "duplicateRow 10:0 ",
            ]
        )
        #expect(report.problems[0].detail == "not a finite number")
        #expect(report.problems[7].detail == "repeats row 2")
        #expect(report.errorCount == 7)
        #expect(report.text.contains("row 3, column 1 (a): wrong types: not a finite number"))
        do {
            _ = try DataValidator.load(path, schema: smallSchema)
            Issue.record("trained on bad data")
        } catch let error as DataError {
            #expect(error.code == .invalidData)
            #expect(
                error.message.hasSuffix(
                    "fails its schema (7 problems; first: row 3, column 1 (a): not a finite number)"
                )
            )
        }
    }

    @Test("Reports and errors never repeat a cell's value")
    func noValuesInReports() throws {
        let path = csvFile("a,b,colour,y\nalice@example.org,2,Smith,no\n1,2,red,Jones\n")
        let report = try DataValidator.check(path, schema: smallSchema)
        #expect(report.errorCount == 3)
        let text = report.text + (try encodeForTest(report))
        for secret in ["alice@example.org", "Smith", "Jones"] { #expect(!text.contains(secret)) }
        do {
            _ = try DataValidator.load(path, schema: smallSchema)
        } catch {
            #expect(!"\(error)".contains("alice"))
        }
    }

    @Test("Header problems: missing, unknown and duplicate columns")
    func header() throws {
        let report = try DataValidator.check(csvFile("a,a,colour,y,extra\n1,1,red,no,1\n"), schema: smallSchema)
        let found = report.problems.map { "\($0.kind) \($0.row):\($0.column) \($0.columnName)" }
        #expect(found == ["duplicateColumn 1:2 a", "unknownColumn 1:5 extra", "missingColumn 1:0 b"])
        #expect(!report.passed)
    }

    @Test(
        "Awkward but valid files load as the clean one: a byte order mark, padded header names, blank lines, CR endings"
    )
    func awkwardFiles() throws {
        let clean = try DataValidator.load(csvFile("a,b,colour,y\n1.5,3,red,yes\n0,-2,green,no\n"), schema: smallSchema)
        let bom = Array("a,b,colour,y\n1.5,3,red,yes\n0,-2,green,no\n".utf8)
        let path = temporaryFolder() + "/bom.csv"
        try DurableFile.write([0xEF, 0xBB, 0xBF] + bom, to: path, replace: false)
        for awkward in [
            path,
            csvFile(" a , b,colour\t,y \n1.5,3,red,yes\n0,-2,green,no\n"),
            csvFile("a,b,colour,y\n1.5,3,red,yes\n0,-2,green,no\n\n\r\n"),
            csvFile("a,b,colour,y\r1.5,3,red,yes\r0,-2,green,no\r"),
            csvFile("a,b,colour,y\r1.5,3,red,yes\r\n0,-2,green,no"),
        ] {
            let (data, report) = try DataValidator.load(awkward, schema: smallSchema)
            #expect(report.passed && report.rows == 2, "\(awkward): \(report.text)")
            #expect(data.features == clean.0.features && data.labels == clean.0.labels)
        }
        // A blank line inside counts in row numbers: the bad cell after it is row 4.
        let gap = try DataValidator.check(csvFile("a,b,colour,y\n1.5,3,red,yes\n\n0,x,green,no\n"), schema: smallSchema)
        #expect(gap.rows == 2 && gap.problems.map { "\($0.kind) \($0.row):\($0.column)" } == ["wrongType 4:2"])
    }

    @Test("A value beyond binary32 fails whatever the schema says; in range, the largest float passes")
    func binary32() throws {
        let schema = DataSchema(
            task: .binary,
            label: .init(name: "y", classes: ["no", "yes"]),
            features: [.init(name: "a", type: .float), .init(name: "b", type: .integer)]
        )
        let report = try DataValidator.check(
            csvFile("a,b,y\n1e39,1,no\n-3.5e38,1,yes\n3.4e38,-1e39,no\n"),
            schema: schema
        )
        #expect(
            report.problems.map { "\($0.kind) \($0.row):\($0.column) \($0.detail)" } == [
                "outOfRange 2:1 beyond the range of a 32-bit float (±3.4e38)",
                "outOfRange 3:1 beyond the range of a 32-bit float (±3.4e38)",
                "wrongType 4:2 not a whole number",
            ]
        )
        let edge = try DataValidator.check(csvFile("a,b,y\n3.4e38,1,no\n"), schema: schema)
        #expect(edge.passed)
    }

    @Test("The report's JSON names every kind's count in an object, the same on every run, and decodes")
    func reportJSON() throws {
        let report = try DataValidator.check(csvFile("a,b,colour,y\n1,x,red,no\n1,x,red,no\n"), schema: smallSchema)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(report), as: UTF8.self)
        #expect(
            json.contains(
                #""counts":{"duplicateColumn":0,"duplicateRow":1,"emptyFile":0,"missingColumn":0,"missingValue":0,"noRows":0,"outOfRange":0,"unknownCategory":0,"unknownClass":0,"unknownColumn":0,"wrongFieldCount":0,"wrongType":2}"#
            ),
            "\(json)"
        )
        #expect(json.contains(#""passed":false"#))
        #expect(try JSONDecoder().decode(ValidationReport.self, from: Data(json.utf8)) == report)
    }

    @Test("An empty file and a header-only file fail")
    func emptyFiles() throws {
        let empty = try DataValidator.check(csvFile(""), schema: smallSchema)
        #expect(empty.problems.map(\.kind) == [.emptyFile] && !empty.passed)
        let headerOnly = try DataValidator.check(csvFile("a,b,colour,y\n"), schema: smallSchema)
        #expect(headerOnly.problems.map(\.kind) == [.noRows] && !headerOnly.passed && headerOnly.rows == 0)
    }

    @Test("Malformed CSV is refused with the row: unterminated quote, text after a quote, bad UTF-8")
    func malformed() {
        for (text, row) in [("a,b,colour,y\n1,2,\"red,no\n", 2), ("a,b,colour,y\n1,2,\"red\"x,no\n", 2)] {
            #expect(throws: DataError(.malformedCSV, "")) {
                try DataValidator.check(csvFile(text), schema: smallSchema)
            }
            do {
                _ = try DataValidator.check(csvFile(text), schema: smallSchema)
            } catch {
                #expect("\(error)".contains("row \(row)"))
            }
        }
        let path = temporaryFolder() + "/bad.csv"
        try! DurableFile.write(
            Array("a,b,colour,y\n1,2,re".utf8) + [0xFF] + Array("d,no\n".utf8),
            to: path,
            replace: false
        )
        #expect(throws: DataError(.malformedCSV, "")) { try DataValidator.check(path, schema: smallSchema) }
        #expect(throws: DataError(.io, "")) { try DataValidator.check("/nonexistent/file.csv", schema: smallSchema) }
    }

    @Test("A 100 MB file with one bad row at the end: found, in bounded memory, the file untouched")
    func largeFile() throws {
        let path = temporaryFolder() + "/large.csv"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        var chunk = "a,b,colour,y\n"
        var rows = 0
        var written = 0
        while written < 100_000_000 {
            for _ in 0..<10_000 {
                chunk +=
                    "\(Double(rows % 1000) / 100),\(rows),\(rows % 3 == 0 ? "red" : "green"),\(rows % 2 == 0 ? "no" : "yes")\n"
                rows += 1
            }
            written += chunk.utf8.count
            handle.write(Data(chunk.utf8))
            chunk = ""
        }
        handle.write(Data("5,5,purple,no\n".utf8))
        try handle.close()
        let before = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        // Checked by the real CLI in a child process, so that its peak memory is its own and not
        // that of the tests running alongside.
        let schemaPath = temporaryFolder() + "/schema.json"
        try JSONEncoder().encode(smallSchema).write(to: URL(fileURLWithPath: schemaPath))
        let node = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/cairn-node").path
        try #require(FileManager.default.isExecutableFile(atPath: node), "build the package first (scripts/test does)")
        let outputPath = temporaryFolder() + "/report.json"
        let (status, peak) = try runMeasured(
            node,
            ["data", "check", path, "--schema", schemaPath, "--json"],
            output: outputPath
        )
        let output = try Data(contentsOf: URL(fileURLWithPath: outputPath))
        #expect(status == 1)
        let report = try JSONDecoder().decode(ValidationReport.self, from: output)
        #expect(report.rows == rows + 1)
        #expect(report.errorCount == 1)
        #expect(report.duplicateCheckLimited)
        let p = try #require(report.problems.first)
        #expect(p.kind == .unknownCategory && p.row == rows + 2 && p.column == 3)
        // What the check holds, over what the process holds to start (a debug binary maps tens
        // of MiB of its own, which grows with the code): the digests of 2^19 rows (16 MiB at most)
        // and a read buffer, whatever the file's size.
        let idle = try startingMemory(node, ["data", "check", "/dev/stdin", "--schema", schemaPath, "--json"])
        #expect(
            peak - idle > 1 << 20 && peak - idle < 32 << 20,
            "checking a \(written >> 20) MiB file took \((peak - idle) >> 20) MiB over the \(idle >> 20) MiB of starting"
        )
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date == before)
        try FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `program` with `arguments` and standard output to `output`, and returns its exit status
/// and its peak resident memory: the last `VmHWM` (a high-water mark, so it only grows) read from
/// `/proc/<pid>/status` after the program started, polled until it exits. (`ru_maxrss` would
/// count this test process's memory too: a spawned child starts in its parent's memory.)
func runMeasured(_ program: String, _ arguments: [String], output: String) throws -> (status: Int32, peakBytes: Int) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var pid: pid_t = 0
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    guard posix_spawn(&pid, program, &actions, nil, argv, environ) == 0 else {
        throw DataError(.io, "cannot start \(program)")
    }
    let name = String(program.split(separator: "/").last!.prefix(15))
    var peak = 0
    var status: Int32 = 0
    while true {
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
        if comm == name, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        {
            peak = max(peak, kib * 1024)
        }
        let done = waitpid(pid, &status, WNOHANG)
        if done == pid { break }
        usleep(20_000)
    }
    return ((status >> 8) & 0xFF, peak)
}

/// The resident memory `program` holds once started, up to its first read of its input: it runs
/// with standard input on a pipe that stays empty, its `VmHWM` is read once it waits in `read`
/// (one of its threads sleeping in system call 0), then the pipe is closed and it exits. (Sampling a program that
/// exits at once, such as `--version`, can read it before it has finished loading.)
func startingMemory(_ program: String, _ arguments: [String]) throws -> Int {
    var pipe: [Int32] = [0, 0]
    guard Glibc.pipe(&pipe) == 0 else { throw DataError(.io, "cannot make a pipe") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipe[0], 0)
    posix_spawn_file_actions_addclose(&actions, pipe[1])
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var pid: pid_t = 0
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    guard posix_spawn(&pid, program, &actions, nil, argv, environ) == 0 else {
        throw DataError(.io, "cannot start \(program)")
    }
    close(pipe[0])
    var held = 0
    while held == 0 {
        // Some thread of it (an async command reads on a pool thread) sleeps in read.
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let reading = threads.contains { thread in
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/stat", encoding: .utf8)) ?? ""
            let call = (try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/syscall", encoding: .utf8)) ?? ""
            return stat.split(separator: ")").last?.split(separator: " ").first == "S" && call.hasPrefix("0 ")
        }
        if reading,
            let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        {
            held = kib * 1024
        } else {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == 0 else { throw DataError(.io, "\(program) exited before reading") }
            usleep(5_000)
        }
    }
    close(pipe[1])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return held
}

@Suite("Training refuses bad data")
struct TrainingRefusalTests {
    @Test(
        "No training starts on a file that fails its schema",
        arguments: [
            ("a,colour,y\n1,red,no\n", "the schema's column 'b' is not in the header"),
            ("a,b,colour,y\n1,2,red,no\n1,x,red,yes\n", "row 3, column 2 (b): not a whole number"),
            ("a,b,colour,y\n1,2,red,no\n11,2,red,yes\n", "row 3, column 1 (a): above the maximum 10.0"),
            ("", "the file is empty; expected a header row"),
            ("a,b,colour,y\n", "the file has a header and no data rows"),
        ]
    )
    func refused(text: String, expected: String) throws {
        let path = csvFile(text)
        do {
            _ = try LocalTraining.run(
                csv: path,
                schema: smallSchema,
                kind: .logistic,
                hidden: 0,
                settings: TrainingSettings(),
                testFraction: 0.25
            )
            Issue.record("training started")
        } catch let error as DataError {
            #expect(error.code == .invalidData)
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }
}

@Suite("Training says what weakens its result")
struct TrainingWarningTests {
    /// Trains softmax on `text` (schema: `a`, label `y` in a, b, c) and returns the warnings.
    func warnings(_ text: String, testFraction: Double) throws -> [String] {
        let schema = DataSchema(
            task: .multiclass,
            label: .init(name: "y", classes: ["a", "b", "c"]),
            features: [.init(name: "x", type: .float)]
        )
        var settings = TrainingSettings()
        settings.epochs = 2
        return try LocalTraining.run(
            csv: csvFile(text),
            schema: schema,
            kind: .softmax,
            hidden: 0,
            settings: settings,
            testFraction: testFraction
        ).warnings
    }

    @Test("A class without rows, no held-out rows, held-out rows repeating training rows; none for clean data")
    func warned() throws {
        let distinct = (0..<20).map { "\($0),\(["a", "b", "c"][$0 % 3])" }
        #expect(try warnings("x,y\n" + distinct.joined(separator: "\n"), testFraction: 0.25) == [])
        let twoClasses = (0..<20).map { "\($0),\(["a", "b"][$0 % 2])" }
        #expect(
            try warnings("x,y\n" + twoClasses.joined(separator: "\n"), testFraction: 0.25) == [
                "class c has no rows, so the model cannot learn to predict it"
            ]
        )
        #expect(
            try warnings("x,y\n" + distinct.joined(separator: "\n"), testFraction: 0.01) == [
                "no rows were held out (20 rows × 0.01 rounds to none per class): there is no held-out score"
            ]
        )
        // Every row twice: each held-out row has its twin in the training part (or both are held out).
        let twice = try warnings("x,y\n" + (distinct + distinct).joined(separator: "\n"), testFraction: 0.25)
        #expect(
            twice.count == 1
                && twice[0].hasSuffix(
                    "held-out rows repeat a training row exactly, so the held-out score overstates how the model does on new rows"
                ),
            "\(twice)"
        )
        // --test-fraction 0 asked for no held-out rows: nothing to say.
        #expect(try warnings("x,y\n" + distinct.joined(separator: "\n"), testFraction: 0) == [])
    }
}

func encodeForTest(_ report: ValidationReport) throws -> String {
    String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
}
