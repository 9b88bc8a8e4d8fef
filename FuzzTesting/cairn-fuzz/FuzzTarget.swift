import CairnFuzzing
import Glibc

/// `ONLY=N FuzzTesting/run` fuzzes one decoder: the selector byte is fixed, not fuzzed.
private let only: UInt8? = getenv("CAIRN_FUZZ_ONLY").flatMap { UInt8(String(cString: $0)) }

/// libFuzzer's entry point; built only by `FuzzTesting/run` (CAIRN_FUZZ=1, `--sanitize fuzzer`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    FuzzEntry.run(only.map { [$0] + input } ?? input)
    return 0
}
