import CairnWire
import Testing

/// Rules of the package layout that the compiler does not enforce.
@Suite struct ArchitectureTests {
    private let root = String(#filePath.split(separator: "/Tests/").first!)

    /// libsodium is wrapped once: only CairnCrypto imports CSodium, so no C type leaks elsewhere.
    @Test func onlyTheCryptoModuleImportsLibsodium() throws {
        var importers: Set<String> = []
        for folder in ["Sources", "Tests", "FuzzTesting"] {
            for file in try swiftFiles(under: root + "/" + folder) {
                let text = String(decoding: try DurableFile.read(file, maximum: 1 << 20), as: UTF8.self)
                if text.split(separator: "\n").contains(where: { $0.hasSuffix("import CSodium") }) {
                    importers.insert(
                        String(file.dropFirst(root.count + 1).split(separator: "/").prefix(2).joined(separator: "/"))
                    )
                }
            }
        }
        #expect(importers == ["Sources/CairnCrypto"])
    }

    private func swiftFiles(under folder: String) throws -> [String] {
        var out: [String] = []
        for name in try DurableFile.entries(in: folder) where !name.hasPrefix(".") {
            let path = folder + "/" + name
            if DurableFile.isDirectory(path) {
                out += try swiftFiles(under: path)
            } else if name.hasSuffix(".swift") {
                out.append(path)
            }
        }
        return out
    }
}
