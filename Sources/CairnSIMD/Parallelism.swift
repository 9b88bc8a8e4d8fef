internal import Dispatch
internal import Glibc

/// How many threads a kernel may use to split one large vector.
///
/// Every kernel gives the same bits whatever the parallelism: element-wise operations trivially,
/// and reductions (``Norms/l2Norm(_:parallelism:)``) because they sum fixed-size blocks in a fixed
/// order. Vectors shorter than ``minimumCoordinatesPerThread`` per thread are not split.
public struct Parallelism: Sendable, Hashable, CustomStringConvertible {
    /// The most threads a kernel will use (at least 1).
    public let threads: Int

    /// At most `threads` threads (values below 1 mean 1).
    public init(threads: Int) { self.threads = max(1, threads) }

    /// The calling thread only.
    public static let serial = Parallelism(threads: 1)

    /// One thread per online processor.
    public static var allCores: Parallelism { Parallelism(threads: sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// The smallest piece worth a thread of its own: 2^16 coordinates (256 KiB of 4-byte values).
    public static let minimumCoordinatesPerThread = 1 << 16

    public var description: String { threads == 1 ? "serial" : "\(threads) threads" }

    /// Cuts `0..<count` into at most ``threads`` contiguous pieces whose bounds are multiples of
    /// `granule`, runs `body` on each (concurrently when there are several) and returns when all
    /// are done. The first error thrown, by piece order, is rethrown.
    func forEachPiece<E: Error>(
        of count: Int,
        granule: Int = 16,
        _ body: (Range<Int>) throws(E) -> Void
    ) throws(E) {
        let granules = (count + granule - 1) / granule
        let perThreadGranules = max(1, Self.minimumCoordinatesPerThread / granule)
        let pieces = max(1, min(threads, granules / perThreadGranules))
        if pieces == 1 {
            try body(0..<count)
            return
        }
        let piece = { (k: Int) -> Range<Int> in
            min(count, granules * k / pieces * granule)..<min(count, granules * (k + 1) / pieces * granule)
        }
        let failures = UnsafeMutableBufferPointer<E?>.allocate(capacity: pieces)
        failures.initialize(repeating: nil)
        defer { failures.deinitialize().deallocate() }
        withoutActuallyEscaping(body) { body in
            let job = ForkJoin(body: body, failures: failures, piece: piece)
            DispatchQueue.concurrentPerform(iterations: pieces) { k in job.run(k) }
        }
        if let first = failures.lazy.compactMap({ $0 }).first { throw first }
    }
}

/// The work of one ``Parallelism/forEachPiece(of:granule:_:)`` call, handed to Dispatch's workers.
///
/// `@unchecked Sendable` without a lock, because the sharing is fork-join: `run` is called only
/// inside `DispatchQueue.concurrentPerform`, which returns after every call has finished (that
/// return orders all their writes before anything the caller does next); call `k` works on piece
/// `k` alone and writes only `failures[k]`; pieces do not overlap.
private struct ForkJoin<E: Error>: @unchecked Sendable {
    let body: (Range<Int>) throws(E) -> Void
    let failures: UnsafeMutableBufferPointer<E?>
    let piece: (Int) -> Range<Int>

    func run(_ k: Int) {
        do { try body(piece(k)) } catch { failures[k] = error }
    }
}
