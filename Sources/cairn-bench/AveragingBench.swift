import CairnCrypto
import CairnSIMD
import Dispatch
import Foundation

/// `cairn-bench averaging`: the SIMD core against plain loops, libsodium and numpy in the same run.
///
/// Every rate is gigabytes of input per second: `n · D · 4` bytes for sums and averages of `n`
/// vectors of `D` coordinates, `D · 4` bytes for one mask. Floors:
/// - sums and averages: a plain read-and-reduce loop over the same bytes (the memory's read rate),
///   on one core against the serial kernel and on every core against the parallel kernel;
/// - mask expansion and quantisation: libsodium's raw ChaCha20 keystream (`crypto_stream_chacha20_ietf`)
///   for the same number of bytes, on as many cores as the kernel;
/// - numpy: `np.average(X, axis=0, weights=w)` against the serial kernel (numpy runs it on one
///   core) and `w @ X` (BLAS, every core) against the parallel kernel; null when python3 or
///   numpy is missing.
struct AveragingBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "averaging")
        let dimensions = quick ? [100_000, 1_000_000] : [1_000_000, 10_000_000]
        let counts = [10, 100]
        // The inputs (n · D floats), then numpy's copy and its temporary of the same size.
        let needed = 3 * counts.max()! * dimensions.max()! * 4
        let physical = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        guard physical >= needed else {
            throw BenchError(
                "the averaging benchmark needs about \(needed >> 30) GiB of memory and this machine has "
                    + "\(physical >> 30) GiB; run it with --quick"
            )
        }
        let cores = Parallelism.allCores
        let reps = quick ? 2 : 5
        let python = NumpyPeer()
        for d in dimensions {
            let maxN = counts.max()!
            let storage = UnsafeMutableBufferPointer<Float>.allocate(capacity: maxN * d)
            defer { storage.deallocate() }
            try fillUniform(storage)
            let words = UnsafeMutableRawBufferPointer(storage).bindMemory(to: UInt32.self)
            defer { _ = UnsafeMutableRawBufferPointer(words).bindMemory(to: Float.self) }
            var sum = [UInt32](repeating: 0, count: d)
            var average = [Float](repeating: 0, count: d)
            for n in counts {
                let floats = (0..<n).map { UnsafeBufferPointer(rebasing: storage[($0 * d)..<($0 * d + d)]) }
                let ints = (0..<n).map { UnsafeBufferPointer(rebasing: words[($0 * d)..<($0 * d + d)]) }
                let weights = (0..<n).map { Float(100 + 37 * $0 % 900) }
                let gb = Double(n * d * 4) / 1e9
                for threads in [Parallelism.serial, cores] {
                    let params = [("n", "\(n)"), ("D", "\(d)"), ("threads", "\(threads.threads)")]
                    let modular = try sum.withUnsafeMutableBufferPointer { s in
                        try bestOfInterleaved(
                            repetitions: reps,
                            subject: { try ModularSum.add(ints, into: s, parallelism: threads) },
                            reference: { blackHole(readReduce(ints, threads)) }
                        )
                    }
                    report.cases.append(rate("modular-sum", params, gb, modular))
                    let weighted = try average.withUnsafeMutableBufferPointer { a in
                        try bestOfInterleaved(
                            repetitions: reps,
                            subject: {
                                try WeightedAverage.average(floats, weights: weights, into: a, parallelism: threads)
                            },
                            reference: { blackHole(readReduce(floats, threads)) }
                        )
                    }
                    report.cases.append(rate("weighted-average", params, gb, weighted))
                    if threads == .serial {
                        // A broker fed one vector at a time: the sum is read and written per input.
                        let streaming = try sum.withUnsafeMutableBufferPointer { s in
                            try bestOfInterleaved(
                                repetitions: reps,
                                subject: { for x in ints { try ModularSum.add(x, into: s, parallelism: threads) } },
                                reference: { blackHole(readReduce(ints, threads)) }
                            )
                        }
                        report.cases.append(rate("modular-sum-one-at-a-time", params, gb, streaming))
                    }
                }
                let ours = (
                    serial: report.cases.last { $0.name == "weighted-average" && $0.params[2].1 == "1" }!.value,
                    parallel: report.cases.last { $0.name == "weighted-average" }!.value
                )
                let peer = python.measure(n: n, d: d, repetitions: reps)
                report.cases.append(
                    BenchCase(
                        name: "weighted-average-vs-np.average",
                        params: [("n", "\(n)"), ("D", "\(d)"), ("threads", "1")],
                        value: ours.serial,
                        unit: "GB/s",
                        floor: peer?.average
                    )
                )
                report.cases.append(
                    BenchCase(
                        name: "weighted-average-vs-w@X",
                        params: [("n", "\(n)"), ("D", "\(d)"), ("threads", "\(cores.threads)")],
                        value: ours.parallel,
                        unit: "GB/s",
                        floor: peer?.matmul
                    )
                )
            }
            try maskAndQuantise(d: d, words: UnsafeMutableBufferPointer(rebasing: words[0..<d]), reps, &report)
        }
        return report
    }

    /// Mask expansion and quantisation of one vector against libsodium's raw keystream.
    private func maskAndQuantise(
        d: Int,
        words: UnsafeMutableBufferPointer<UInt32>,
        _ reps: Int,
        _ report: inout BenchReport
    ) throws {
        let seed = SecretBytes.random(count: 32)
        let rawKey = seed.withUnsafeBytes { Array($0) }
        let keystream = try ChaCha20Keystream(seed: seed)
        let gb = Double(d * 4) / 1e9
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: d * 4, alignment: 64)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        var floats = [Float](repeating: 0, count: d)
        floats.withUnsafeMutableBufferPointer { f in
            for i in 0..<d { f[i] = Float(i % 2001) * 1e-3 - 1 }
        }
        let parameters = try QuantisationParameters(scale: 0x1p20, clipBound: 1)
        for threads in [Parallelism.serial, Parallelism.allCores] {
            let params = [("D", "\(d)"), ("threads", "\(threads.threads)")]
            let rawKeystream = { rawKeystreamPieces(raw, rawKey, threads) }
            let mask = try bestOfInterleaved(
                repetitions: reps,
                subject: { try MaskExpansion.add(keystream, to: words, parallelism: threads) },
                reference: rawKeystream
            )
            report.cases.append(rate("mask-expansion", params, gb, mask))
            let quantise = try floats.withUnsafeBufferPointer { f in
                try bestOfInterleaved(
                    repetitions: reps,
                    subject: {
                        try Quantisation.quantise(
                            f,
                            into: words,
                            parameters: parameters,
                            rounding: keystream,
                            parallelism: threads
                        )
                    },
                    reference: rawKeystream
                )
            }
            report.cases.append(rate("quantise", params, gb, quantise))
        }
    }

    private func rate(
        _ name: String,
        _ params: [(String, String)],
        _ gb: Double,
        _ times: (subject: Double, reference: Double)
    ) -> BenchCase {
        BenchCase(name: name, params: params, value: gb / times.subject, unit: "GB/s", floor: gb / times.reference)
    }
}

/// A benchmark that cannot run here, with the reason.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Uniform floats in [−1, 1), from a keystream (fast, and never NaN or subnormal).
private func fillUniform(_ x: UnsafeMutableBufferPointer<Float>) throws {
    let keystream = try ChaCha20Keystream(seed: SecretBytes.random(count: 32))
    let raw = Unchecked(UnsafeMutableRawBufferPointer(x))
    let chunk = 1 << 24
    DispatchQueue.concurrentPerform(iterations: (x.count * 4 + chunk - 1) / chunk) { k in
        let raw = raw.value
        let lo = k * chunk
        let piece = UnsafeMutableRawBufferPointer(rebasing: raw[lo..<min(raw.count, lo + chunk)])
        try! keystream.fill(piece, fromBlock: UInt64(lo / 64))
        let words = piece.bindMemory(to: UInt32.self)
        for i in words.indices { words[i] = (Float(words[i] >> 8) * 0x1p-23 - 1).bitPattern }
    }
}

/// The floor for sums: every input read once and folded into sixteen-lane accumulators, nothing
/// written. On several threads, each reads a contiguous share of every input.
private func readReduce<T: Reducible>(_ inputs: [UnsafeBufferPointer<T>], _ p: Parallelism) -> T {
    let d = inputs[0].count
    let pieces = p.threads
    let partials = UnsafeMutableBufferPointer<SIMD16<T>>.allocate(capacity: pieces)
    defer { partials.deallocate() }
    let work = { (k: Int) in
        let lo = d * k / pieces / 64 * 64
        let hi = k == pieces - 1 ? d : d * (k + 1) / pieces / 64 * 64
        var a0 = SIMD16<T>()
        var a1 = SIMD16<T>()
        var a2 = SIMD16<T>()
        var a3 = SIMD16<T>()
        for x in inputs {
            let raw = UnsafeRawPointer(x.baseAddress!)
            var i = lo
            while i + 64 <= hi {
                T.fold(&a0, raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<T>.self))
                T.fold(&a1, raw.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<T>.self))
                T.fold(&a2, raw.loadUnaligned(fromByteOffset: i * 4 + 128, as: SIMD16<T>.self))
                T.fold(&a3, raw.loadUnaligned(fromByteOffset: i * 4 + 192, as: SIMD16<T>.self))
                i += 64
            }
            while i < hi {
                var one = SIMD16<T>()
                one[0] = x[i]
                T.fold(&a0, one)
                i += 1
            }
        }
        T.fold(&a0, a1)
        T.fold(&a2, a3)
        T.fold(&a0, a2)
        partials[k] = a0
    }
    if pieces == 1 {
        work(0)
    } else {
        let job = Unchecked(work)
        DispatchQueue.concurrentPerform(iterations: pieces) { job.value($0) }
    }
    var total = SIMD16<T>()
    for partial in partials { T.fold(&total, partial) }
    return total[0]
}

/// The addition a floor folds with: wrapping for integers, IEEE for floats.
private protocol Reducible: SIMDScalar, Hashable, Codable {
    static func fold(_ a: inout SIMD16<Self>, _ b: SIMD16<Self>)
}

extension UInt32: Reducible {
    @inline(__always) static func fold(_ a: inout SIMD16<UInt32>, _ b: SIMD16<UInt32>) { a &+= b }
}

extension Float: Reducible {
    @inline(__always) static func fold(_ a: inout SIMD16<Float>, _ b: SIMD16<Float>) { a += b }
}

/// libsodium's raw keystream for `buffer`, split across `p.threads` threads (the floor of every mask).
func rawKeystreamPieces(_ buffer: UnsafeMutableRawBufferPointer, _ key: [UInt8], _ p: Parallelism) {
    let pieces = p.threads
    let work = { (k: Int) in
        let lo = buffer.count * k / pieces / 64 * 64
        let hi = k == pieces - 1 ? buffer.count : buffer.count * (k + 1) / pieces / 64 * 64
        precondition(
            SodiumBaseline.chacha20Keystream(into: UnsafeMutableRawBufferPointer(rebasing: buffer[lo..<hi]), key: key)
        )
    }
    if pieces == 1 {
        work(0)
    } else {
        let job = Unchecked(work)
        DispatchQueue.concurrentPerform(iterations: pieces) { job.value($0) }
    }
}

/// A closure handed to Dispatch's fork-join: each call touches its own piece, and
/// `concurrentPerform` returns only after all calls finished.
private struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Keeps a result alive so the optimiser cannot drop the loop that made it.
@inline(never)
private func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// numpy's figures for the same work, measured by python3 in a child process.
private struct NumpyPeer {
    /// The script: builds X (n × D, float32, uniform in [−1, 1)) and w, then times
    /// `np.average(X, axis=0, weights=w)` and `w @ X`, best of `repetitions`, in GB/s of X.
    private static let script = """
        import json, sys, time
        import numpy as np
        n, d, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        rng = np.random.default_rng(1)
        X = rng.random((n, d), dtype=np.float32); X *= 2; X -= 1
        w = (100 + (37 * np.arange(n)) % 900).astype(np.float32)
        def best(f):
            t = float("inf")
            for _ in range(reps):
                s = time.perf_counter(); f(); t = min(t, time.perf_counter() - s)
            return X.nbytes / t / 1e9
        print(json.dumps({"average": best(lambda: np.average(X, axis=0, weights=w)),
                          "matmul": best(lambda: w @ X)}))
        """

    func measure(n: Int, d: Int, repetitions: Int) -> (average: Double, matmul: Double)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, "\(n)", "\(d)", "\(repetitions)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Double],
            let average = object["average"], let matmul = object["matmul"]
        else { return nil }
        return (average, matmul)
    }
}
