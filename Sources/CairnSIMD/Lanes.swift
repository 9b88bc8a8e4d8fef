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

/// `out[i] = f(a[i])` for `i` in `0..<count`, sixteen lanes at a time (`out` may be `a`).
///
/// `f` is a pure lane-wise transform; the tail goes through zero-padded lanes and only the real
/// ones are stored. Keep `f` small and free of loads and stores so that it inlines into the loop
/// (a body that does its own partial loads compiles to code that runs at half the speed).
@inline(__always)
func map16<A: SIMDScalar & Numeric, C: SIMDScalar>(
    _ a: UnsafePointer<A>,
    _ out: UnsafeMutablePointer<C>,
    _ count: Int,
    _ f: (SIMD16<A>) -> SIMD16<C>
) {
    var i = 0
    while i + lanes <= count {
        store16(f(load16(a, i)), out, i)
        i += lanes
    }
    if i < count { storePartial16(f(loadPartial16(a, i, count - i)), out, i, count - i) }
}

/// `out[i] = f(a[i], b[i])` for `i` in `0..<count` (`out` may be `a` or `b`); see ``map16(_:_:_:_:)``.
@inline(__always)
func zipMap16<A: SIMDScalar & Numeric, B: SIMDScalar & Numeric, C: SIMDScalar>(
    _ a: UnsafePointer<A>,
    _ b: UnsafePointer<B>,
    _ out: UnsafeMutablePointer<C>,
    _ count: Int,
    _ f: (SIMD16<A>, SIMD16<B>) -> SIMD16<C>
) {
    var i = 0
    while i + lanes <= count {
        store16(f(load16(a, i), load16(b, i)), out, i)
        i += lanes
    }
    if i < count {
        storePartial16(f(loadPartial16(a, i, count - i), loadPartial16(b, i, count - i)), out, i, count - i)
    }
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
