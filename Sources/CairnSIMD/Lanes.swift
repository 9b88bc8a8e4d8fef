// Loads and stores of 16 lanes at an element index, and the partial forms for a vector's tail.
// Every kernel runs its tail through the same SIMD code as its body (zero-filled lanes, only the
// real ones stored back), so the last few coordinates get exactly the arithmetic of the others.

/// The number of lanes every kernel works in.
let lanes = 16

@inline(__always)
func load16<T: SIMDScalar>(_ p: UnsafePointer<T>, _ i: Int) -> SIMD16<T> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<T>.self)
}

@inline(__always)
func store16<T: SIMDScalar>(_ v: SIMD16<T>, _ p: UnsafeMutablePointer<T>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD16<T>.self)
}

/// Lanes `0..<n` from `p + i`; the other lanes are zero.
@inline(__always)
func loadPartial16<T: SIMDScalar & Numeric>(_ p: UnsafePointer<T>, _ i: Int, _ n: Int) -> SIMD16<T> {
    var v = SIMD16<T>()
    for k in 0..<n { v[k] = p[i + k] }
    return v
}

/// Stores lanes `0..<n` of `v` at `p + i`.
@inline(__always)
func storePartial16<T: SIMDScalar>(_ v: SIMD16<T>, _ p: UnsafeMutablePointer<T>, _ i: Int, _ n: Int) {
    for k in 0..<n { p[i + k] = v[k] }
}

/// Lanes `0..<n` (n ≤ 16) from `p + i`: a full load when `n` is 16, zero-filled lanes otherwise.
@inline(__always)
func load<T: SIMDScalar & Numeric>(_ p: UnsafePointer<T>, _ i: Int, _ n: Int) -> SIMD16<T> {
    n == lanes ? load16(p, i) : loadPartial16(p, i, n)
}

@inline(__always)
func load<T: SIMDScalar & Numeric>(_ p: UnsafeMutablePointer<T>, _ i: Int, _ n: Int) -> SIMD16<T> {
    load(UnsafePointer(p), i, n)
}

/// Stores lanes `0..<n` (n ≤ 16) of `v` at `p + i`.
@inline(__always)
func store<T: SIMDScalar>(_ v: SIMD16<T>, _ p: UnsafeMutablePointer<T>, _ i: Int, _ n: Int) {
    if n == lanes { store16(v, p, i) } else { storePartial16(v, p, i, n) }
}

/// Calls `body(i, n)` for `i = 0, 16, 32, …` below `count`, with `n` = 16 lanes except for a
/// shorter last group. Inlined, the body's `load`/`store` calls become plain vector moves in
/// the main loop.
@inline(__always)
func forEachLaneGroup(_ count: Int, _ body: (_ i: Int, _ n: Int) -> Void) {
    var i = 0
    while i + lanes <= count {
        body(i, lanes)
        i += lanes
    }
    if i < count { body(i, count - i) }
}

/// Eight pointers: the inputs of one pass of the many-input kernels.
typealias Eight<T> = (T, T, T, T, T, T, T, T)

/// Runs `body` on zero-padded 16-lane copies of `x.k[start..<count]` and `s[start..<count]`
/// (fewer than 16 elements), then copies the real lanes of `s` back.
@inline(never)
func withPaddedTail<T: SIMDScalar & Numeric>(
    _ x: Eight<UnsafePointer<T>>,
    _ s: UnsafeMutablePointer<T>,
    from start: Int,
    count: Int,
    _ body: (Eight<UnsafePointer<T>>, UnsafeMutablePointer<T>) -> Void
) {
    let n = count - start
    withUnsafeTemporaryAllocation(of: T.self, capacity: 9 * lanes) { pad in
        let base = pad.baseAddress!
        pad.initialize(repeating: .zero)
        for (k, p) in [x.0, x.1, x.2, x.3, x.4, x.5, x.6, x.7].enumerated() {
            (base + k * lanes).update(from: p + start, count: n)
        }
        let padS = base + 8 * lanes
        padS.update(from: s + start, count: n)
        let q = { (k: Int) in UnsafePointer(base + k * lanes) }
        body((q(0), q(1), q(2), q(3), q(4), q(5), q(6), q(7)), padS)
        (s + start).update(from: padS, count: n)
    }
}

#if _endian(big)
#error("Cairn reads keystream words and fixed-point sums as little-endian UInt32; big-endian hosts need byte swaps")
#endif
