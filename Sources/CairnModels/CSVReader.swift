import CairnWire
internal import Glibc

/// Reads an RFC 4180 CSV file record by record in bounded memory (a 64 KiB read buffer plus
/// the current record), so a file of any size can be checked.
///
/// Fields are separated by `,`; a field may be quoted with `"`, with `""` for a quote inside;
/// records end with `\n`, `\r\n` or a lone `\r` (a newline inside quotes belongs to the
/// field). Every field must be UTF-8. A UTF-8 byte order mark before the header is skipped, and
/// so are blank lines (no bytes at all: never a record of a file with two or more columns),
/// which still count in row numbers. A record longer than ``maximumRecordBytes`` is refused.
final class CSVReader {
    /// The longest record accepted: 1 MiB.
    static let maximumRecordBytes = 1 << 20

    private let fd: Int32
    private let path: String
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)
    private var start = 0
    private var end = 0
    private var finished = false
    /// The number of the record last returned (1 = the header).
    private(set) var record = 0

    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DataError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        self.path = path
    }

    /// A reader over bytes in memory (for the fuzzer and tests), named `name` in errors.
    init(bytes: [UInt8], name: String) {
        fd = -1
        path = name
        buffer = bytes
        end = bytes.count
        finished = true
    }

    deinit { if fd >= 0 { close(fd) } }

    private func fill() throws -> Bool {
        if finished { return false }
        if start > 0 {
            buffer.withUnsafeMutableBytes { b in
                let base = b.baseAddress!
                memmove(base, base + start, end - start)
            }
            end -= start
            start = 0
        }
        let n = buffer.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + end, b.count - end) }
        guard n >= 0 else { throw DataError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { finished = true }
        end += n
        return n > 0
    }

    private func next() throws -> UInt8? {
        if start == end, try !fill() { return nil }
        defer { start += 1 }
        return buffer[start]
    }

    private func peek() throws -> UInt8? {
        if start == end, try !fill() { return nil }
        return buffer[start]
    }

    /// The next record's fields, or nil at the end of the file.
    func nextRecord() throws -> [String]? {
        // A byte order mark (as spreadsheet programs write UTF-8) is not part of the header. The
        // first read holds the file's first bytes whole (up to the buffer's 64 KiB).
        if record == 0, try peek() != nil, end - start >= 3,
            buffer[start..<start + 3].elementsEqual([0xEF, 0xBB, 0xBF])
        {
            start += 3
        }
        while let fields = try nextLine() {
            if fields != [""] { return fields }
        }
        return nil
    }

    private func nextLine() throws -> [String]? {
        var fields: [String] = []
        var field: [UInt8] = []
        var bytes = 0
        var quoted = false
        var afterQuote = false
        var sawAnything = false
        let row = record + 1
        func finishField() throws {
            guard let s = String(validating: field, as: UTF8.self) else {
                throw DataError(.malformedCSV, "\(path): row \(row), field \(fields.count + 1) is not UTF-8")
            }
            fields.append(s)
            field.removeAll(keepingCapacity: true)
            afterQuote = false
        }
        while let byte = try next() {
            sawAnything = true
            bytes += 1
            guard bytes <= Self.maximumRecordBytes else {
                throw DataError(.malformedCSV, "\(path): row \(row) is longer than 1 MiB")
            }
            if quoted {
                if byte == UInt8(ascii: "\"") {
                    if try peek() == UInt8(ascii: "\"") {
                        _ = try next()
                        field.append(byte)
                    } else {
                        quoted = false
                        afterQuote = true
                    }
                } else {
                    field.append(byte)
                }
                continue
            }
            if afterQuote, byte != UInt8(ascii: ","), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") {
                throw DataError(
                    .malformedCSV,
                    "\(path): row \(row), field \(fields.count + 1) has text after its closing quote"
                )
            }
            switch byte {
            case UInt8(ascii: ","):
                try finishField()
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                if byte == UInt8(ascii: "\r"), try peek() == UInt8(ascii: "\n") { _ = try next() }
                try finishField()
                record = row
                return fields
            case UInt8(ascii: "\""):
                guard field.isEmpty else {
                    throw DataError(
                        .malformedCSV,
                        "\(path): row \(row), field \(fields.count + 1) has a quote inside an unquoted value"
                    )
                }
                quoted = true
            default:
                field.append(byte)
            }
        }
        guard !quoted else { throw DataError(.malformedCSV, "\(path): row \(row) ends inside a quoted field") }
        guard sawAnything else { return nil }
        try finishField()
        record = row
        return fields
    }
}
