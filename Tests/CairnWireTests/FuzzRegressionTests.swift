import CairnFuzzing
import CairnWire
import Testing

/// Inputs that once crashed a decoder under libFuzzer, replayed on every test run, plus one
/// hand-written input per decoder so the replay path itself is exercised.
@Suite struct FuzzRegressionTests {
    @Test func savedInputsNoLongerCrash() throws {
        let folder = String(#filePath.split(separator: "/Tests/").first!) + "/FuzzTesting/regressions"
        let saved = try DurableFile.entries(in: folder).filter { !$0.hasPrefix(".") }
        for name in saved {
            FuzzEntry.run(try DurableFile.read(folder + "/" + name, maximum: 1 << 20))
        }
        // Each decoder with an input that is just past a boundary.
        for selector: UInt8 in 0..<5 {
            for length in [0, 1, 23, 24, 25, 68, 69] {
                FuzzEntry.run([selector] + [UInt8](repeating: 0xff, count: length))
            }
        }
        #expect(saved.contains("keystore-payload-zero-keys"))
    }
}
