import CairnCrypto
import CairnWire
import Testing

@testable import CairnAudit

/// RFC 6962 §2.1 written out literally over leaf hashes: the slow reference.
enum Reference {
    static func mth(_ d: ArraySlice<MerkleHash>) -> MerkleHash {
        if d.isEmpty { return RFC6962.emptyRoot }
        if d.count == 1 { return d.first! }
        let k = RFC6962.split(d.count)
        return RFC6962.nodeHash(mth(d.prefix(k)), mth(d.dropFirst(k)))
    }

    static func path(_ m: Int, _ d: ArraySlice<MerkleHash>) -> [MerkleHash] {
        if d.count <= 1 { return [] }
        let k = RFC6962.split(d.count)
        return m < k ? path(m, d.prefix(k)) + [mth(d.dropFirst(k))] : path(m - k, d.dropFirst(k)) + [mth(d.prefix(k))]
    }

    static func subproof(_ m: Int, _ d: ArraySlice<MerkleHash>, _ b: Bool) -> [MerkleHash] {
        if m == d.count { return b ? [] : [mth(d)] }
        let k = RFC6962.split(d.count)
        return m <= k
            ? subproof(m, d.prefix(k), b) + [mth(d.dropFirst(k))]
            : subproof(m - k, d.dropFirst(k), false) + [mth(d.prefix(k))]
    }
}

/// A small seeded generator (SplitMix64), so every run checks the same indices.
struct Seeded: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func leaves(_ n: Int) -> [MerkleHash] { (0..<n).map { RFC6962.leafHash(Array("entry \($0)".utf8)) } }

/// The proof with one byte of element `i` flipped.
func flipped(_ proof: [MerkleHash], _ i: Int) -> [MerkleHash] {
    var p = proof
    var bytes = p[i].bytes
    bytes[i % 32] ^= 0x01
    p[i] = MerkleHash(bytes)!
    return p
}

@Suite("RFC 6962 Merkle tree")
struct MerkleTreeTests {
    @Test("Known values: the empty root, leaf and node prefixes, the certificate-transparency test roots")
    func knownValues() throws {
        #expect(RFC6962.emptyRoot.description == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(RFC6962.leafHash([]).bytes == SHA256.hash([0x00]))
        #expect(RFC6962.leafHash([1, 2]).bytes == SHA256.hash([0x00, 1, 2]))
        let a = RFC6962.leafHash([7])
        let b = RFC6962.leafHash([8])
        #expect(RFC6962.nodeHash(a, b).bytes == SHA256.hash([0x01] + a.bytes + b.bytes))
        #expect(RFC6962.nodeHash(a, b) != RFC6962.nodeHash(b, a))
        // The eight leaves of the certificate-transparency reference tests, and the root of each prefix.
        let data: [[UInt8]] = [
            [], [0x00], [0x10], [0x20, 0x21], [0x30, 0x31], [0x40, 0x41, 0x42, 0x43],
            [0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57], Array(0x60...0x6f),
        ]
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        var tree = MerkleTree()
        #expect(try tree.root() == RFC6962.emptyRoot)
        for (d, root) in zip(data, roots) {
            tree.append(RFC6962.leafHash(d))
            #expect(try tree.root().description == root)
        }
    }

    @Test("Every tree size 1–1024: roots and proofs equal the reference; proofs verify")
    func everySize() throws {
        let all = leaves(1024)
        var tree = MerkleTree()
        var g = Seeded(state: 1)
        for n in 1...1024 {
            tree.append(all[n - 1])
            let d = all[0..<n]
            let root = Reference.mth(d)
            #expect(try tree.root() == root)
            // Every index and every old size for small trees; a few random ones for large trees.
            let picks =
                n <= 40 ? Array(0..<n) : [0, n - 1, n / 2] + (0..<3).map { _ in Int.random(in: 0..<n, using: &g) }
            for m in picks {
                let proof = try tree.inclusionProof(index: m)
                #expect(proof == Reference.path(m, d))
                #expect(RFC6962.verifyInclusion(leaf: all[m], index: m, size: n, proof: proof, root: root))
                let old = m + 1
                let consistency = try tree.consistencyProof(from: old)
                #expect(consistency == (old == n ? [] : Reference.subproof(old, d, true)))
                #expect(
                    RFC6962.verifyConsistency(
                        oldSize: old,
                        newSize: n,
                        oldRoot: Reference.mth(all[0..<old]),
                        newRoot: root,
                        proof: consistency
                    )
                )
            }
        }
    }

    @Test("Frontiers: grown leaf by leaf, taken from the tree at any size, and stored, they give the reference root")
    func frontiers() throws {
        let all = leaves(300)
        var tree = MerkleTree()
        var grown = Frontier.empty
        #expect(grown.root == RFC6962.emptyRoot)
        for (i, leaf) in all.enumerated() {
            tree.append(leaf)
            grown.append(leaf)
            #expect(grown.size == i + 1)
            #expect(grown.hashes.count == (i + 1).nonzeroBitCount)
            #expect(grown.root == Reference.mth(all[0...i]))
        }
        for n in 0...300 {
            let taken = try tree.frontier(size: n)
            #expect(taken.root == Reference.mth(all.prefix(n)))
            #expect(Frontier(size: n, bytes: taken.bytes) == taken)
        }
        #expect(tree.frontier == grown)
        #expect(Frontier(size: 3, bytes: Array(repeating: 0, count: 32)) == nil)
        #expect(Frontier(size: 3, bytes: Array(repeating: 0, count: 65)) == nil)
        #expect(throws: AuditError.self) { try tree.frontier(size: 301) }
    }

    @Test("Proofs for earlier tree sizes, from the final tree alone")
    func earlierSizes() throws {
        let all = leaves(300)
        var tree = MerkleTree()
        for h in all { tree.append(h) }
        for n in [1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 299] {
            let root = Reference.mth(all[0..<n])
            #expect(try tree.root(size: n) == root)
            for m in [0, n / 3, n - 1] {
                #expect(try tree.inclusionProof(index: m, size: n) == Reference.path(m, all[0..<n]))
            }
            for old in [1, n / 2, n - 1] where old >= 1 && old < n {
                let proof = try tree.consistencyProof(from: old, to: n)
                #expect(proof == Reference.subproof(old, all[0..<n], true))
            }
        }
    }

    @Test("Any altered hash, index, size or proof length fails verification")
    func tampering() throws {
        let all = leaves(77)
        var tree = MerkleTree()
        for h in all { tree.append(h) }
        let root = try tree.root()
        // A size is only meaningful with its root (a checkpoint signs the pair), so an altered size
        // is checked with the real root of that size.
        var bigger = tree
        bigger.append(RFC6962.leafHash([0xFF]))
        let root78 = try bigger.root()
        let root76 = try tree.root(size: 76)
        for m in [0, 1, 31, 32, 63, 76] {
            let proof = try tree.inclusionProof(index: m)
            #expect(RFC6962.verifyInclusion(leaf: all[m], index: m, size: 77, proof: proof, root: root))
            for i in proof.indices {
                #expect(
                    !RFC6962.verifyInclusion(leaf: all[m], index: m, size: 77, proof: flipped(proof, i), root: root)
                )
            }
            #expect(!RFC6962.verifyInclusion(leaf: all[(m + 1) % 77], index: m, size: 77, proof: proof, root: root))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: (m + 1) % 77, size: 77, proof: proof, root: root))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: m, size: 78, proof: proof, root: root78))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: m, size: 64, proof: proof, root: root))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: m, size: 77, proof: proof.dropLast(), root: root))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: m, size: 77, proof: proof + [root], root: root))
            #expect(!RFC6962.verifyInclusion(leaf: all[m], index: 77, size: 77, proof: proof, root: root))
        }
        for old in [1, 2, 3, 32, 33, 64, 76] {
            let proof = try tree.consistencyProof(from: old)
            let oldRoot = try tree.root(size: old)
            #expect(RFC6962.verifyConsistency(oldSize: old, newSize: 77, oldRoot: oldRoot, newRoot: root, proof: proof))
            for i in proof.indices {
                #expect(
                    !RFC6962.verifyConsistency(
                        oldSize: old,
                        newSize: 77,
                        oldRoot: oldRoot,
                        newRoot: root,
                        proof: flipped(proof, i)
                    )
                )
            }
            #expect(
                !RFC6962.verifyConsistency(oldSize: old + 1, newSize: 77, oldRoot: oldRoot, newRoot: root, proof: proof)
            )
            #expect(
                !RFC6962.verifyConsistency(oldSize: old, newSize: 76, oldRoot: oldRoot, newRoot: root76, proof: proof)
            )
            #expect(
                !RFC6962.verifyConsistency(oldSize: old, newSize: 78, oldRoot: oldRoot, newRoot: root78, proof: proof)
            )
            #expect(!RFC6962.verifyConsistency(oldSize: old, newSize: 77, oldRoot: root, newRoot: root, proof: proof))
            #expect(
                !RFC6962.verifyConsistency(
                    oldSize: old,
                    newSize: 77,
                    oldRoot: oldRoot,
                    newRoot: root,
                    proof: proof.dropLast()
                )
            )
        }
        #expect(RFC6962.verifyConsistency(oldSize: 77, newSize: 77, oldRoot: root, newRoot: root, proof: []))
        #expect(!RFC6962.verifyConsistency(oldSize: 77, newSize: 77, oldRoot: root, newRoot: root, proof: [root]))
        #expect(!RFC6962.verifyConsistency(oldSize: 5, newSize: 3, oldRoot: root, newRoot: root, proof: []))
        #expect(throws: AuditError(.outOfRange, "")) { try tree.inclusionProof(index: 77) }
        #expect(throws: AuditError(.outOfRange, "")) { try tree.root(size: 78) }
        #expect(throws: AuditError(.outOfRange, "")) { try tree.consistencyProof(from: 10, to: 78) }
    }

    @Test("Random sizes up to 10^6: roots and sampled proofs verify")
    func largeTrees() throws {
        var tree = MerkleTree()
        var g = Seeded(state: 2)
        let sizes = [1000, 65_537, 1_000_000]
        var next = 0
        for target in sizes {
            while tree.size < target {
                tree.append(RFC6962.leafHash(Array("e\(next)".utf8)))
                next += 1
            }
            let root = try tree.root()
            for _ in 0..<20 {
                let m = Int.random(in: 0..<target, using: &g)
                let proof = try tree.inclusionProof(index: m)
                #expect(RFC6962.verifyInclusion(leaf: tree.leaf(m), index: m, size: target, proof: proof, root: root))
                let old = Int.random(in: 1...target, using: &g)
                let consistency = try tree.consistencyProof(from: old)
                #expect(
                    RFC6962.verifyConsistency(
                        oldSize: old,
                        newSize: target,
                        oldRoot: try tree.root(size: old),
                        newRoot: root,
                        proof: consistency
                    )
                )
            }
        }
        #expect(tree.size == 1_000_000)
    }
}
