import CairnFuzzing

/// libFuzzer's entry point; built only by `FuzzTesting/run` (CAIRN_FUZZ=1, `--sanitize fuzzer`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    FuzzEntry.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
