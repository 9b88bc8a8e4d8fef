import CairnCrypto
public import CairnWire

/// A 32-byte SHA-256 digest in the audit log's Merkle tree.
public struct MerkleHash: Hashable, Sendable, CustomStringConvertible {
    /// The digest bytes.
    public let bytes: [UInt8]

    /// Wraps 32 bytes; nil for any other length.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count == SHA256.byteCount else { return nil }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Lower-case hex.
    public var description: String { Hex.encode(bytes) }
}

/// The Merkle tree hash of RFC 6962 §2.1 (also RFC 9162 §2.1) and its proofs.
public enum RFC6962 {
    /// MTH({}) = SHA-256 of the empty string.
    public static let emptyRoot = MerkleHash(unchecked: SHA256.hash([]))

    /// MTH({d}) = SHA-256(0x00 ‖ d).
    public static func leafHash(_ entry: [UInt8]) -> MerkleHash { MerkleHash(unchecked: SHA256.hash([0x00], entry)) }

    /// SHA-256(0x01 ‖ left ‖ right).
    public static func nodeHash(_ left: MerkleHash, _ right: MerkleHash) -> MerkleHash {
        MerkleHash(unchecked: SHA256.hash([0x01], left.bytes, right.bytes))
    }

    /// RFC 9162's "right-shift fn and sn until LSB(fn) is set or fn is 0" (after one shift at least).
    private static func shiftPastEvenNodes(_ fn: inout Int, _ sn: inout Int) {
        repeat {
            fn >>= 1
            sn >>= 1
        } while fn & 1 == 0 && fn != 0
    }

    /// The largest power of two smaller than `n` (n ≥ 2): the RFC's split point.
    static func split(_ n: Int) -> Int {
        var k = 1
        while k << 1 < n { k <<= 1 }
        return k
    }

    /// Whether `proof` shows that the leaf with hash `leaf` is entry `index` of the tree of
    /// `size` entries whose root is `root` (RFC 9162 §2.1.3.2).
    public static func verifyInclusion(
        leaf: MerkleHash,
        index: Int,
        size: Int,
        proof: [MerkleHash],
        root: MerkleHash
    ) -> Bool {
        guard index >= 0, index < size else { return false }
        var fn = index
        var sn = size - 1
        var r = leaf
        for p in proof {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 { shiftPastEvenNodes(&fn, &sn) }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == root
    }

    /// Whether `proof` shows that the tree of `oldSize` entries with root `oldRoot` is a prefix of
    /// the tree of `newSize` entries with root `newRoot` (RFC 9162 §2.1.4.2). Equal sizes need an
    /// empty proof and equal roots; an empty old tree needs an empty proof.
    public static func verifyConsistency(
        oldSize: Int,
        newSize: Int,
        oldRoot: MerkleHash,
        newRoot: MerkleHash,
        proof: [MerkleHash]
    ) -> Bool {
        guard oldSize >= 0, oldSize <= newSize else { return false }
        if oldSize == newSize { return proof.isEmpty && oldRoot == newRoot }
        if oldSize == 0 { return proof.isEmpty && oldRoot == emptyRoot }
        guard !proof.isEmpty else { return false }
        var path = proof
        if oldSize & (oldSize - 1) == 0 { path.insert(oldRoot, at: 0) }
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 { shiftPastEvenNodes(&fn, &sn) }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return fr == oldRoot && sr == newRoot && sn == 0
    }
}

/// An append-only RFC 6962 Merkle tree over leaf hashes, with every complete, aligned subtree's
/// hash kept as leaves arrive, so roots and proofs for any tree size up to ``size`` take
/// O(log² n) hashes and never re-read the entries.
///
/// `levels[h][i]` is the hash of the 2^h leaves starting at `i · 2^h`. Roughly 2n hashes are kept
/// for n leaves. `Sendable` as a value type.
public struct MerkleTree: Sendable {
    private var levels: [[MerkleHash]] = [[]]

    /// An empty tree.
    public init() {}

    /// The number of leaves.
    public var size: Int { levels[0].count }

    /// The hash of leaf `index`.
    public func leaf(_ index: Int) -> MerkleHash { levels[0][index] }

    /// Appends a leaf hash (``RFC6962/leafHash(_:)`` of the entry).
    public mutating func append(_ leaf: MerkleHash) {
        levels[0].append(leaf)
        var h = 0
        // Each time the newest subtree at level h is complete with a left sibling, its parent is too.
        while levels[h].count % 2 == 0 {
            let n = levels[h].count
            let parent = RFC6962.nodeHash(levels[h][n - 2], levels[h][n - 1])
            if levels.count == h + 1 { levels.append([]) }
            levels[h + 1].append(parent)
            h += 1
        }
    }

    /// The tree's frontier: the hashes of its complete subtrees, one per set bit of ``size``,
    /// largest first. Enough to compute the root and to go on appending without the leaves.
    public var frontier: Frontier { (try? frontier(size: size)) ?? .empty }

    /// The frontier of the tree of the first `size` leaves.
    public func frontier(size n: Int) throws -> Frontier {
        guard n >= 0, n <= size else { throw treeSizeError(n) }
        var hashes: [MerkleHash] = []
        var start = 0
        for h in stride(from: levels.count - 1, through: 0, by: -1) where n >> h & 1 == 1 {
            hashes.append(levels[h][start >> h])
            start += 1 << h
        }
        return Frontier(size: n, hashes: hashes)!
    }

    /// The root of the first `size` leaves (the current tree by default).
    public func root(size: Int? = nil) throws -> MerkleHash {
        let n = size ?? self.size
        guard n >= 0, n <= self.size else { throw treeSizeError(n) }
        return n == 0 ? RFC6962.emptyRoot : hash(0, n)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 6962 §2.1.1).
    public func inclusionProof(index: Int, size: Int? = nil) throws -> [MerkleHash] {
        let n = size ?? self.size
        guard n >= 1, n <= self.size, index >= 0, index < n else {
            throw AuditError(.outOfRange, "no leaf \(index) in a tree of \(n) entries (the log holds \(self.size))")
        }
        var proof: [MerkleHash] = []
        path(index, 0, n, &proof)
        return proof
    }

    /// The consistency proof from the tree of the first `oldSize` leaves to that of the first
    /// `newSize` (RFC 6962 §2.1.2); empty when the sizes are equal or `oldSize` is 0.
    public func consistencyProof(from oldSize: Int, to newSize: Int? = nil) throws -> [MerkleHash] {
        let n = newSize ?? size
        guard n <= size else { throw treeSizeError(n) }
        guard oldSize >= 0, oldSize <= n else {
            throw AuditError(.outOfRange, "cannot prove \(oldSize) entries consistent with \(n)")
        }
        guard oldSize > 0, oldSize < n else { return [] }
        var proof: [MerkleHash] = []
        subproof(oldSize, 0, n, true, &proof)
        return proof
    }

    private func treeSizeError(_ n: Int) -> AuditError {
        AuditError(.outOfRange, "no tree of \(n) entries (the log holds \(size))")
    }

    /// MTH of leaves `lo..<hi` (non-empty). The RFC's left halves are complete and aligned, so
    /// they come from `levels`; only the right edge recurses.
    private func hash(_ lo: Int, _ hi: Int) -> MerkleHash {
        let n = hi - lo
        if n & (n - 1) == 0, lo % n == 0 {
            return levels[n.trailingZeroBitCount][lo / n]
        }
        let k = RFC6962.split(n)
        return RFC6962.nodeHash(hash(lo, lo + k), hash(lo + k, hi))
    }

    private func path(_ m: Int, _ lo: Int, _ hi: Int, _ proof: inout [MerkleHash]) {
        let n = hi - lo
        guard n > 1 else { return }
        let k = RFC6962.split(n)
        if m < k {
            path(m, lo, lo + k, &proof)
            proof.append(hash(lo + k, hi))
        } else {
            path(m - k, lo + k, hi, &proof)
            proof.append(hash(lo, lo + k))
        }
    }

    private func subproof(_ m: Int, _ lo: Int, _ hi: Int, _ complete: Bool, _ proof: inout [MerkleHash]) {
        let n = hi - lo
        if m == n {
            if !complete { proof.append(hash(lo, hi)) }
            return
        }
        let k = RFC6962.split(n)
        if m <= k {
            subproof(m, lo, lo + k, complete, &proof)
            proof.append(hash(lo + k, hi))
        } else {
            subproof(m - k, lo + k, hi, false, &proof)
            proof.append(hash(lo, lo + k))
        }
    }
}

/// The right edge of an RFC 6962 tree: its size and the hashes of its complete subtrees, one
/// per set bit of the size, largest first (`Protocol/README.md`, "The tree head"). It grows by
/// one leaf in O(log n) hashes and gives the same root as the whole tree.
public struct Frontier: Hashable, Sendable {
    /// The number of leaves.
    public private(set) var size: Int
    /// The complete subtrees' hashes, largest first.
    public private(set) var hashes: [MerkleHash]

    /// A frontier; nil when the number of hashes is not the number of set bits of `size`.
    public init?(size: Int, hashes: [MerkleHash]) {
        guard size >= 0, hashes.count == size.nonzeroBitCount else { return nil }
        self.size = size
        self.hashes = hashes
    }

    /// The frontier of the empty tree.
    public static let empty = Frontier(size: 0, hashes: [])!

    /// Adds a leaf hash: it merges with the smaller subtrees it completes.
    public mutating func append(_ leaf: MerkleHash) {
        var node = leaf
        var n = size
        while n & 1 == 1 {
            node = RFC6962.nodeHash(hashes.removeLast(), node)
            n >>= 1
        }
        hashes.append(node)
        size += 1
    }

    /// MTH of the leaves: the subtrees folded from the right, as RFC 6962 splits.
    public var root: MerkleHash {
        guard var r = hashes.last else { return RFC6962.emptyRoot }
        for h in hashes.dropLast().reversed() { r = RFC6962.nodeHash(h, r) }
        return r
    }

    /// The stored form: the hashes concatenated.
    public var bytes: [UInt8] { hashes.flatMap(\.bytes) }

    /// Reads the stored form back; nil when it does not fit `size`.
    public init?(size: Int, bytes: [UInt8]) {
        guard bytes.count % SHA256.byteCount == 0 else { return nil }
        let hashes = stride(from: 0, to: bytes.count, by: SHA256.byteCount).map {
            MerkleHash(unchecked: Array(bytes[$0..<($0 + SHA256.byteCount)]))
        }
        self.init(size: size, hashes: hashes)
    }
}

/// An error raised by the audit log.
public typealias AuditError = CairnError<AuditErrorDomain>

/// The domain tag of ``AuditError``.
public enum AuditErrorDomain: Sendable {}

extension ErrorCode where Domain == AuditErrorDomain {
    /// A leaf index or tree size beyond the log.
    public static let outOfRange = Self("outOfRange")
    /// A checkpoint, note, key string or entry is not well-formed.
    public static let malformed = Self("malformed")
    /// A note's signature is missing or does not verify.
    public static let badSignature = Self("badSignature")
    /// The SQLite store failed (disk full, I/O error, a locked or corrupt file).
    public static let storage = Self("storage")
    /// The log does not extend its last checkpoint: entries were lost or changed.
    public static let inconsistent = Self("inconsistent")
    /// An exported bundle does not verify: a file, an entry, a proof or a signature was changed,
    /// removed or added.
    public static let tampered = Self("tampered")
}
