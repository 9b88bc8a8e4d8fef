import Glibc
import Testing

@testable import CairnWire

@Suite struct WireTests {
    @Test func canonicalEncodingIsExact() throws {
        var w = ByteWriter()
        w.u8(0xab)
        w.u16(0x0102)
        w.u32(0x0304_0506)
        w.u64(0x0708_090a_0b0c_0d0e)
        w.bool(true)
        w.raw([0xee, 0xff])
        w.lengthPrefixed([9, 8, 7])
        w.string("é")
        w.label("cairn/x/v1")
        #expect(
            w.bytes == [
                0xab, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07, 1, 0xee, 0xff,
            ]
                + [3, 0, 0, 0, 9, 8, 7] + [2, 0, 0, 0, 0xc3, 0xa9] + [10] + Array("cairn/x/v1".utf8)
        )
        var r = ByteReader(w.bytes)
        #expect(try r.u8("a") == 0xab)
        #expect(try r.u16("b") == 0x0102)
        #expect(try r.u32("c") == 0x0304_0506)
        #expect(try r.u64("d") == 0x0708_090a_0b0c_0d0e)
        #expect(try r.bool("e") == true)
        #expect(try r.fixed(2, "f") == [0xee, 0xff])
        #expect(try r.lengthPrefixed("g", maximum: 3) == [9, 8, 7])
        #expect(try r.string("h", maximum: 16) == "é")
        #expect(try r.label("i") == "cairn/x/v1")
        try r.finish()
    }

    @Test func malformedInputIsRefusedWithTheRightCode() throws {
        var short = ByteReader([1, 2, 3])
        #expect(throws: WireError(.truncated, "")) { try short.u32("x") }
        var tooLong = ByteReader([5, 0, 0, 0, 1, 2, 3, 4, 5])
        #expect(throws: WireError(.tooLarge, "")) { try tooLong.lengthPrefixed("x", maximum: 4) }
        var lying = ByteReader([0xff, 0xff, 0xff, 0xff, 1])
        #expect(throws: WireError(.truncated, "")) { try lying.lengthPrefixed("x", maximum: Int(UInt32.max)) }
        var notBool = ByteReader([2])
        #expect(throws: WireError(.invalidValue, "")) { try notBool.bool("x") }
        var badUTF8 = ByteReader([2, 0, 0, 0, 0xc3, 0x28])
        #expect(throws: WireError(.invalidValue, "")) { try badUTF8.string("x", maximum: 10) }
        var trailing = ByteReader([1, 2])
        _ = try trailing.u8("x")
        #expect(throws: WireError(.trailingBytes, "")) { try trailing.finish() }
        // An error names the field and the offset.
        var named = ByteReader([1])
        do {
            _ = try named.u16("round number")
        } catch {
            #expect(error.message == "round number: needs 2 bytes at offset 0, only 1 left")
        }
    }

    @Test func hexRoundTripsAndRefusesGarbage() throws {
        let bytes: [UInt8] = [0x00, 0x7f, 0x80, 0xff, 0x12]
        #expect(Hex.encode(bytes) == "007f80ff12")
        #expect(try Hex.decode("007F80fF12") == bytes)
        #expect(throws: WireError(.invalidValue, "")) { try Hex.decode("abc") }
        #expect(throws: WireError(.invalidValue, "")) { try Hex.decode("zz") }
    }

    @Test func durableFilesAreAtomicPrivateAndBounded() throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-wire-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        let path = folder + "/sub/dir/file"
        try DurableFile.makeDirectory(folder + "/sub/dir")
        try DurableFile.write([1, 2, 3], to: path, replace: false)
        #expect(try DurableFile.read(path, maximum: 3) == [1, 2, 3])
        #expect(throws: WireError(.tooLarge, "")) { try DurableFile.read(path, maximum: 2) }
        #expect(throws: WireError(.io, "")) { try DurableFile.write([9], to: path, replace: false) }
        #expect(try DurableFile.read(path, maximum: 3) == [1, 2, 3])
        try DurableFile.write([4, 5], to: path, replace: true)
        #expect(try DurableFile.read(path, maximum: 3) == [4, 5])
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(throws: WireError(.io, "")) { try DurableFile.read(folder, maximum: 10) }
        // No temporary file is left behind.
        #expect(try DurableFile.entries(in: folder + "/sub/dir") == ["file"])
        #expect(DurableFile.isDirectory(folder + "/sub") && !DurableFile.isDirectory(path))
    }
}

@Suite("Error types")
struct ErrorTypeTests {
    @Test("Errors compare and hash by code only, describe themselves by message, and record where they were raised")
    func codeEquality() {
        let a = WireError(.io, "cannot read a")
        let b = WireError(.io, "cannot read b")
        #expect(a == b && a.hashValue == b.hashValue)
        #expect(a != WireError(.truncated, "cannot read a"))
        #expect(a.description == "cannot read a")
        #expect(a.location.hasPrefix("CairnWireTests/WireTests.swift:"))
        #expect(WireError.Code.io.description == "io")
    }
}
