import CairnCrypto
import CairnWire
import Glibc

/// An export of the audit log that anyone can check offline with only the broker's checkpoint
/// public key (`Protocol/README.md`, "Audit bundles").
///
/// A bundle is a folder:
/// - `checkpoint`: the signed checkpoint (C2SP note) the bundle is proved against;
/// - `entries.jsonl` and `entries.csv`: the exported entries, one per line, in canonical form;
/// - `leaves.bin` (whole-log exports): every leaf hash, 32 bytes each, so a verifier can name
///   the first entry that does not match; or `proofs.jsonl` (filtered exports): each entry's
///   leaf hash and inclusion proof;
/// - `consistency.jsonl`: a consistency proof from every earlier checkpoint the broker signed,
///   so an older bundle can be checked against this one;
/// - `manifest`: a note signed by the same key, naming the scope, filters, entry count and the
///   SHA-256 of every other file.
public enum AuditBundle {
    /// The first line of a manifest.
    public static let manifestHeader = "cairn-audit-bundle/v1"
    /// The largest bundle file read: 8 GiB.
    public static let maximumFileBytes = 8 << 30

    /// Which entries an export holds. Times are canonical RFC 3339 (``AuditEntry/time``);
    /// `from` is inclusive and `to` exclusive. With every field nil, the whole log.
    public struct Filter: Hashable, Sendable {
        /// The earliest time included.
        public var from: String?
        /// The first time excluded.
        public var to: String?
        /// Only entries by this actor.
        public var actor: String?
        /// Only entries with this action.
        public var action: String?

        /// A filter; see the properties.
        public init(from: String? = nil, to: String? = nil, actor: String? = nil, action: String? = nil) {
            self.from = from
            self.to = to
            self.actor = actor
            self.action = action
        }

        /// Whether the filter keeps everything.
        public var isEverything: Bool { from == nil && to == nil && actor == nil && action == nil }

        /// Whether `entry` passes.
        public func admits(_ entry: AuditEntry) -> Bool {
            (from.map { entry.time >= $0 } ?? true) && (to.map { entry.time < $0 } ?? true)
                && (actor.map { entry.actor == $0 } ?? true) && (action.map { entry.action == $0 } ?? true)
        }

        var lines: [(String, String?)] {
            [("filter-from", from), ("filter-to", to), ("filter-actor", actor), ("filter-action", action)]
        }

        func check() throws {
            for (name, value) in lines {
                guard let value else { continue }
                guard !value.isEmpty, !value.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                    throw AuditError(.malformed, "the \(name) value must be non-empty without control characters")
                }
            }
            for time in [from, to].compactMap({ $0 }) where !AuditEntry.isCanonicalTime(time) {
                throw AuditError(.malformed, "'\(time)' is not an RFC 3339 UTC time such as 2026-11-24T03:25:00Z")
            }
        }
    }

    /// What a verified bundle holds.
    public struct Summary: Hashable, Sendable {
        /// The log's origin.
        public var origin: String
        /// The id of the export (the object id of its `audit.export` entry).
        public var exportID: String
        /// The checkpoint's size (the number of entries in the log it covers).
        public var logSize: Int
        /// The checkpoint's root.
        public var root: MerkleHash
        /// The filter the export applied.
        public var filter: Filter
        /// The number of entries in the bundle.
        public var entryCount: Int
        /// Earlier checkpoints this bundle proves consistent with its own, by size.
        public var consistency: [Int: (root: MerkleHash, proof: [MerkleHash])]
        /// Entries that carry the request their actor signed, each signature checked.
        public var actorSigned = 0
        /// Entries the broker alone vouches for (its own actions, refusals, operator tools).
        public var brokerOnly = 0
        /// Checkpoints members' nodes cosigned as witnesses (each this bundle's or proved
        /// consistent with it), by size: the witnesses' fingerprints.
        public var witnesses: [Int: [String]] = [:]

        public static func == (a: Summary, b: Summary) -> Bool {
            a.origin == b.origin && a.exportID == b.exportID && a.logSize == b.logSize && a.root == b.root
                && a.filter == b.filter && a.entryCount == b.entryCount
        }

        public func hash(into hasher: inout Hasher) { hasher.combine(exportID) }
    }

    // MARK: Export

    /// Appends an `audit.export` entry by `actor`, signs a checkpoint that covers it, and writes
    /// the bundle of the entries `filter` admits to `directory`, which must not exist. The folder
    /// is written under a temporary name and renamed into place once complete. `request` is the
    /// signed request that asked for it, when a member's node did (it goes into the entry).
    @discardableResult
    public static func export(
        log: AuditLog,
        origin: String,
        signer: NoteSigner,
        filter: Filter = Filter(),
        actor: String,
        request: AuditEntry.SignedRequest? = nil,
        to directory: String
    ) throws -> Summary {
        try filter.check()
        guard !DurableFile.exists(directory) else {
            throw AuditError(.storage, "\(directory) already exists; choose a new folder for the bundle")
        }
        let exportID = Hex.encode(SecureRandom.bytes(16))
        let time = AuditEntry.now()
        try log.append {
            AuditEntry(
                sequence: $0,
                time: time,
                actor: actor,
                action: "audit.export",
                objectType: "export",
                objectID: exportID,
                outcome: .succeeded,
                reason: filter.isEverything ? "" : "filtered",
                request: request
            )
        }
        let note = try log.signCheckpoint(origin: origin, signer: signer)
        let checkpoint = try Checkpoint(text: SignedNote.open(note, verifier: signer.verifier))

        var jsonl: [UInt8] = []
        var csv = Array(BundleText.csvHeader.utf8)
        var evidence: [UInt8] = []
        var count = 0
        try log.forEachEntry(in: 0..<checkpoint.size) { sequence, bytes, leaf in
            let entry: AuditEntry
            do { entry = try AuditEntry(decoding: bytes) } catch let error as AuditError {
                throw AuditError(.malformed, "stored audit entry \(sequence) cannot be exported: \(error.message)")
            }
            if filter.isEverything {
                evidence += leaf.bytes
            } else {
                guard filter.admits(entry) else { return }
                let proof = try log.inclusionProof(index: sequence, size: checkpoint.size)
                evidence += BundleText.proofLine("sequence", sequence, "leaf", leaf, proof).utf8
            }
            jsonl += BundleText.jsonLine(entry).utf8
            csv += BundleText.csvRow(entry).utf8
            count += 1
        }
        var consistency: [UInt8] = []
        for (size, root) in try log.checkpoints() where size > 0 && size < checkpoint.size {
            let proof = try log.consistencyProof(from: size, to: checkpoint.size)
            consistency += BundleText.proofLine("size", size, "root", root, proof).utf8
        }
        var cosignatures: [UInt8] = []
        for (size, cosignature) in try log.cosignatures() where size <= checkpoint.size {
            cosignatures += BundleText.cosignatureLine(size: size, cosignature).utf8
        }
        let files: [(String, [UInt8])] = [
            ("checkpoint", Array(note.utf8)),
            ("consistency.jsonl", consistency),
            ("cosignatures.jsonl", cosignatures),
            ("entries.csv", csv),
            ("entries.jsonl", jsonl),
            (filter.isEverything ? "leaves.bin" : "proofs.jsonl", evidence),
        ]
        var manifest = "\(manifestHeader)\norigin \(origin)\nexport-id \(exportID)\nexported \(time)\n"
        manifest += "log-size \(checkpoint.size)\nscope \(filter.isEverything ? "all" : "filtered")\n"
        for case (let name, let value?) in filter.lines { manifest += "\(name) \(value)\n" }
        manifest += "entries \(count)\n"
        for (name, bytes) in files { manifest += "file \(name) \(Hex.encode(SHA256.hash(bytes)))\n" }
        let signedManifest = try SignedNote.sign(manifest, by: signer)

        let temporary = directory + ".partial-\(exportID)"
        do {
            try DurableFile.makeDirectory(temporary, mode: 0o777)
            for (name, bytes) in files + [("manifest", Array(signedManifest.utf8))] {
                try DurableFile.write(bytes, to: temporary + "/" + name, mode: DurableFile.shared, replace: false)
            }
            guard rename(temporary, directory) == 0 else {
                throw AuditError(.storage, "cannot move the bundle into place at \(directory)")
            }
        } catch let error as WireError {
            throw AuditError(.storage, "cannot write the bundle: \(error.message)")
        }
        return Summary(
            origin: origin,
            exportID: exportID,
            logSize: checkpoint.size,
            root: checkpoint.root,
            filter: filter,
            entryCount: count,
            consistency: [:]
        )
    }

    // MARK: Verification

    /// Verifies the bundle in `directory` with only the checkpoint key `verifier`, and returns
    /// what it holds. The first problem found is thrown as ``AuditError`` `tampered`, naming the
    /// file, and for entries the first bad entry and why.
    ///
    /// Order: the manifest's signature; the checkpoint's signature; the leaf hashes against the
    /// checkpoint's root; every entry line in order (canonical form, sequence, filter, its hash
    /// against its leaf or inclusion proof, its CSV row); the counts; the consistency proofs; and
    /// last the SHA-256 of every file against the manifest, which catches any other change.
    public static func verify(directory: String, verifier: NoteVerifier) throws -> Summary {
        func bad(_ why: String) -> AuditError { AuditError(.tampered, why) }
        func read(_ name: String) throws -> [UInt8] {
            do { return try DurableFile.read(directory + "/" + name, maximum: maximumFileBytes) } catch {
                throw bad("\(name): \(error.message)")
            }
        }

        // The manifest.
        let manifestNote = String(decoding: try read("manifest"), as: UTF8.self)
        let manifestText: String
        do { manifestText = try SignedNote.open(manifestNote, verifier: verifier) } catch let error as AuditError {
            throw bad("manifest: \(error.message)")
        }
        let manifest = try Manifest(manifestText)

        // The checkpoint.
        let checkpointBytes = try read("checkpoint")
        let checkpoint: Checkpoint
        do {
            checkpoint = try Checkpoint(
                text: SignedNote.open(String(decoding: checkpointBytes, as: UTF8.self), verifier: verifier)
            )
        } catch let error as AuditError { throw bad("checkpoint: \(error.message)") }
        guard checkpoint.origin == manifest.origin, checkpoint.size == manifest.logSize else {
            throw bad("checkpoint: its origin or size differs from the manifest's")
        }

        let entriesFile = try read("entries.jsonl")
        let csvFile = try read("entries.csv")
        let all = manifest.filter.isEverything
        let evidenceName = all ? "leaves.bin" : "proofs.jsonl"
        let evidence = try read(evidenceName)
        var leaves: [MerkleHash] = []
        if all {
            guard evidence.count == checkpoint.size * 32 else {
                throw bad("leaves.bin: \(evidence.count) bytes for a log of \(checkpoint.size) entries")
            }
            var tree = MerkleTree()
            for i in 0..<checkpoint.size {
                let leaf = MerkleHash(unchecked: Array(evidence[(i * 32)..<(i * 32 + 32)]))
                leaves.append(leaf)
                tree.append(leaf)
            }
            guard try tree.root() == checkpoint.root else {
                throw bad("leaves.bin: the leaf hashes do not make the checkpoint's root")
            }
        }
        let proofLines = all ? [] : lines(evidence, separator: [0x0A])
        let csvLines = lines(csvFile, separator: [0x0D, 0x0A])
        guard csvLines.first.map({ Array($0) == Array(BundleText.csvHeader.utf8.dropLast(2)) }) == true else {
            throw bad("entries.csv: the header row is not \(BundleText.csvHeader.dropLast(2))")
        }

        var previous = -1
        var signatures = Signatures()
        let entryLines = lines(entriesFile, separator: [0x0A])
        for (index, line) in entryLines.enumerated() {
            let expected = all ? index : previous + 1
            let place = "entry \(expected) (entries.jsonl line \(index + 1))"
            let entry: AuditEntry
            let encoded: [UInt8]
            do { (entry, encoded) = try BundleText.entryAndBytes(jsonLine: line) } catch let error as AuditError {
                throw bad("\(place): \(error.message)")
            }
            let sequence = Int(entry.sequence)
            if all, sequence != index {
                throw bad(
                    sequence > index
                        ? "entry \(index) is missing: entries.jsonl line \(index + 1) holds entry \(sequence)"
                        : "\(place): the line holds entry \(sequence), out of order or repeated"
                )
            }
            guard sequence > previous, sequence < checkpoint.size else {
                throw bad(
                    "entry \(sequence) (entries.jsonl line \(index + 1)): out of order, repeated or beyond the checkpoint"
                )
            }
            let name = "entry \(sequence) (entries.jsonl line \(index + 1))"
            guard manifest.filter.admits(entry) else { throw bad("\(name): the export's filter excludes it") }
            let leaf = RFC6962.leafHash(encoded)
            if all {
                guard leaf == leaves[sequence] else {
                    throw bad("\(name): it does not hash to leaf \(sequence) of the checkpoint's tree")
                }
            } else {
                guard index < proofLines.count else { throw bad("proofs.jsonl: no proof for \(name)") }
                let (proved, provedLeaf, proof): (Int, MerkleHash, [MerkleHash])
                do {
                    (proved, provedLeaf, proof) = try BundleText.proof(line: proofLines[index], "sequence", "leaf")
                } catch let error as AuditError {
                    throw bad("\(name): proofs.jsonl line \(index + 1): \(error.message)")
                }
                guard proved == sequence, provedLeaf == leaf else {
                    throw bad("\(name): it does not hash to the leaf on proofs.jsonl line \(index + 1)")
                }
                guard
                    RFC6962.verifyInclusion(
                        leaf: leaf,
                        index: sequence,
                        size: checkpoint.size,
                        proof: proof,
                        root: checkpoint.root
                    )
                else { throw bad("\(name): its inclusion proof does not lead to the checkpoint's root") }
            }
            guard index + 1 < csvLines.count,
                csvLines[index + 1].elementsEqual(BundleText.csvRow(entry).utf8.dropLast(2))
            else { throw bad("\(name): entries.csv row \(index + 2) does not match it") }
            if let why = signatures.check(entry, wholeLog: all) { throw bad("\(name): \(why)") }
            previous = sequence
        }
        if all, entryLines.count != checkpoint.size {
            throw bad("entry \(entryLines.count) is missing: entries.jsonl ends after \(entryLines.count) entries")
        }
        guard entryLines.count == manifest.entryCount else {
            throw bad("entries.jsonl: \(entryLines.count) entries, the manifest says \(manifest.entryCount)")
        }
        guard csvLines.count == entryLines.count + 1, proofLines.count == (all ? 0 : entryLines.count) else {
            throw bad("entries.csv or proofs.jsonl: the number of lines differs from entries.jsonl")
        }

        var consistency: [Int: (root: MerkleHash, proof: [MerkleHash])] = [:]
        for (index, line) in lines(try read("consistency.jsonl"), separator: [0x0A]).enumerated() {
            let place = "consistency.jsonl line \(index + 1)"
            let (size, root, proof): (Int, MerkleHash, [MerkleHash])
            do { (size, root, proof) = try BundleText.proof(line: line, "size", "root") } catch let error as AuditError
            {
                throw bad("\(place): \(error.message)")
            }
            guard
                RFC6962.verifyConsistency(
                    oldSize: size,
                    newSize: checkpoint.size,
                    oldRoot: root,
                    newRoot: checkpoint.root,
                    proof: proof
                ), size > 0, size < checkpoint.size, consistency[size] == nil
            else { throw bad("\(place): the proof from size \(size) does not verify") }
            consistency[size] = (root, proof)
        }

        // Witnesses: each cosignature of this checkpoint or of one proved consistent with it.
        var witnesses: [Int: [String]] = [:]
        let listed = Set(manifest.files.map(\.0))
        if listed.contains("cosignatures.jsonl") {
            for (index, line) in lines(try read("cosignatures.jsonl"), separator: [0x0A]).enumerated() {
                let place = "cosignatures.jsonl line \(index + 1)"
                let (size, cosignature): (Int, Cosignature)
                do { (size, cosignature) = try BundleText.cosignature(line: line) } catch let error as AuditError {
                    throw bad("\(place): \(error.message)")
                }
                guard let root = size == checkpoint.size ? checkpoint.root : consistency[size]?.root else {
                    throw bad("\(place): no checkpoint of \(size) entries is proved consistent with this bundle's")
                }
                guard cosignature.isValid(for: try Checkpoint(origin: checkpoint.origin, size: size, root: root)) else {
                    throw bad("\(place): the cosignature by \(cosignature.name) does not verify")
                }
                if all, signatures.brokerIdentity != nil,
                    !signatures.published.contains(cosignature.key.rawRepresentation)
                {
                    throw bad("\(place): \(cosignature.name) is not a key the log published (no member.enrol names it)")
                }
                witnesses[size, default: []].append(cosignature.name)
            }
        }

        let present = Set((try? DurableFile.entries(in: directory)) ?? [])
        for (name, digest) in manifest.files {
            guard Hex.encode(SHA256.hash(try read(name))) == digest else {
                throw bad("\(name): its SHA-256 differs from the manifest's")
            }
        }
        let unexpected = present.subtracting(manifest.files.map(\.0) + ["manifest"]).sorted()
        guard unexpected.isEmpty else { throw bad("the bundle holds files the manifest does not list: \(unexpected)") }
        guard
            listed.subtracting(["cosignatures.jsonl"]) == [
                "checkpoint", "consistency.jsonl", "entries.csv", "entries.jsonl", evidenceName,
            ]
        else { throw bad("manifest: it does not list the files of a \(all ? "whole-log" : "filtered") bundle") }

        return Summary(
            origin: manifest.origin,
            exportID: manifest.exportID,
            logSize: checkpoint.size,
            root: checkpoint.root,
            filter: manifest.filter,
            entryCount: entryLines.count,
            consistency: consistency,
            actorSigned: signatures.actorSigned,
            brokerOnly: signatures.brokerOnly,
            witnesses: witnesses
        )
    }

    /// The actor-signature check of entries in log order (`Protocol/README.md`, "Actor-signed
    /// entries"). A whole-log bundle also learns the keys the log publishes: the broker's
    /// identity and the operator's key (`broker.init`), and each member's (`member.enrol`).
    struct Signatures {
        var actorSigned = 0
        var brokerOnly = 0
        var brokerIdentity: [UInt8]?
        var published: Set<[UInt8]> = []

        /// Why `entry` fails, or nil; counts it.
        mutating func check(_ entry: AuditEntry, wholeLog: Bool) -> String? {
            func digest(_ name: String) -> [UInt8]? { entry.digests.first { $0.name == name }?.bytes }
            if entry.action == "broker.init", entry.outcome == .succeeded {
                brokerIdentity = digest("broker.identity") ?? brokerIdentity
                if let key = digest("operator.key") { published.insert(key) }
            }
            if entry.action == "member.enrol", entry.outcome == .succeeded, let key = digest("member.key") {
                published.insert(key)
            }
            guard let request = entry.request else {
                if entry.outcome == .succeeded, let fingerprint = entry.actorFingerprint {
                    return "it names \(entry.actor) as its actor but carries no request signed by \(fingerprint)"
                }
                brokerOnly += 1
                return nil
            }
            guard request.isValid else { return "the signature of the request it records does not verify" }
            guard let fingerprint = entry.actorFingerprint, request.fingerprint == fingerprint else {
                return
                    "its request was signed by \(request.fingerprint ?? "no valid key"), not by its actor \(entry.actor)"
            }
            if let brokerIdentity, request.broker != brokerIdentity {
                return "its request was signed for another broker than this log's"
            }
            if wholeLog, brokerIdentity != nil, !published.contains(request.key) {
                return "its request was signed by \(fingerprint), a key no earlier entry of the log publishes"
            }
            actorSigned += 1
            return nil
        }
    }

    /// Checks that the log `earlier` was verified from is a prefix of the log `later` was: same
    /// origin, and either the same root at the same size or a verified consistency proof in the
    /// later bundle from the earlier size.
    public static func checkConsistency(earlier: Summary, later: Summary) throws {
        guard earlier.origin == later.origin else {
            throw AuditError(.inconsistent, "the bundles come from different logs (\(earlier.origin), \(later.origin))")
        }
        if earlier.logSize == later.logSize {
            guard earlier.root == later.root else {
                throw AuditError(
                    .inconsistent,
                    "both checkpoints cover \(later.logSize) entries but their roots differ"
                )
            }
            return
        }
        guard earlier.logSize < later.logSize else {
            throw AuditError(
                .inconsistent,
                "the later bundle's log (\(later.logSize) entries) is smaller than the earlier one's"
            )
        }
        guard earlier.logSize == 0 || later.consistency[earlier.logSize]?.root == earlier.root else {
            throw AuditError(
                .inconsistent,
                "the later bundle proves no consistency with the earlier checkpoint (\(earlier.logSize) entries, root \(earlier.root))"
            )
        }
    }

    // MARK: Single proofs

    /// The proof document of entry `sequence` (what `cairn-audit prove` prints): the entry's
    /// JSON line, its proof line (leaf hash and inclusion proof) and the latest signed checkpoint,
    /// which must cover the entry.
    public static func proofDocument(log: AuditLog, sequence: Int) throws -> String {
        guard let note = try log.latestCheckpoint() else {
            throw AuditError(.outOfRange, "the log has no signed checkpoint yet")
        }
        let size = try checkpointSize(note)
        guard sequence >= 0, sequence < size else {
            throw AuditError(
                .outOfRange,
                "entry \(sequence) is not covered by the latest checkpoint (\(size) entries); sign a new one first"
            )
        }
        var document = ""
        try log.forEachEntry(in: sequence..<(sequence + 1)) { _, bytes, leaf in
            let proof = try log.inclusionProof(index: sequence, size: size)
            document =
                BundleText.jsonLine(try AuditEntry(decoding: bytes))
                + BundleText.proofLine("sequence", sequence, "leaf", leaf, proof) + note
        }
        return document
    }

    /// Verifies a proof document with the checkpoint key and returns the entry and checkpoint.
    public static func verifyProofDocument(
        _ document: [UInt8],
        verifier: NoteVerifier
    ) throws -> (
        AuditEntry, Checkpoint
    ) {
        func bad(_ why: String) -> AuditError { AuditError(.tampered, "proof: \(why)") }
        let parts = lines(document, separator: [0x0A])
        guard parts.count >= 3 else { throw bad("expected an entry line, a proof line and a checkpoint") }
        let entry: AuditEntry
        let (sequence, leaf, proof): (Int, MerkleHash, [MerkleHash])
        let checkpoint: Checkpoint
        do {
            entry = try BundleText.entry(jsonLine: parts[0])
            (sequence, leaf, proof) = try BundleText.proof(line: parts[1], "sequence", "leaf")
            let note = String(decoding: document[(parts[1].endIndex + 1)...], as: UTF8.self)
            checkpoint = try Checkpoint(text: SignedNote.open(note, verifier: verifier))
        } catch let error as AuditError { throw bad(error.message) }
        guard sequence == Int(entry.sequence), leaf == RFC6962.leafHash(try entry.encoded()) else {
            throw bad("entry \(entry.sequence) does not hash to the proved leaf")
        }
        guard
            RFC6962.verifyInclusion(
                leaf: leaf,
                index: sequence,
                size: checkpoint.size,
                proof: proof,
                root: checkpoint.root
            )
        else { throw bad("entry \(sequence): the inclusion proof does not lead to the checkpoint's root") }
        return (entry, checkpoint)
    }

    private static func checkpointSize(_ note: String) throws -> Int {
        let lines = note.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > 2, let size = Int(lines[1]) else {
            throw AuditError(.malformed, "a stored checkpoint is malformed")
        }
        return size
    }

    /// `bytes` split into lines that each end with `separator`; a final line without it is kept
    /// (and then fails the canonical checks).
    static func lines(_ bytes: [UInt8], separator: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i + separator.count <= bytes.count {
            if bytes[i] == separator[0], separator.count == 1 || bytes[i + 1] == separator[1] {
                out.append(bytes[start..<i])
                i += separator.count
                start = i
            } else {
                i += 1
            }
        }
        if start < bytes.count { out.append(bytes[start...]) }
        return out
    }

    /// A parsed manifest text.
    struct Manifest {
        var origin = ""
        var exportID = ""
        var logSize = 0
        var filter = Filter()
        var entryCount = 0
        var files: [(String, String)] = []

        init(_ text: String) throws {
            func bad(_ why: String) -> AuditError { AuditError(.tampered, "manifest: \(why)") }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard lines.first == AuditBundle.manifestHeader, lines.last == "" else { throw bad("not a v1 manifest") }
            lines = Array(lines.dropFirst().dropLast())
            var fields: [(String, String)] = []
            for line in lines {
                guard let space = line.firstIndex(of: " ") else { throw bad("the line '\(line)' has no value") }
                fields.append((String(line[..<space]), String(line[line.index(after: space)...])))
            }
            var position = 0
            func take(_ key: String) -> String? {
                guard position < fields.count, fields[position].0 == key else { return nil }
                position += 1
                return fields[position - 1].1
            }
            guard let origin = take("origin"), let exportID = take("export-id"), take("exported") != nil,
                let size = take("log-size").flatMap({ Int($0) }), size >= 0, let scope = take("scope"),
                scope == "all" || scope == "filtered"
            else { throw bad("the header lines are missing or malformed") }
            self.origin = origin
            self.exportID = exportID
            logSize = size
            filter = Filter(
                from: take("filter-from"),
                to: take("filter-to"),
                actor: take("filter-actor"),
                action: take("filter-action")
            )
            guard filter.isEverything == (scope == "all") else { throw bad("the scope and the filters disagree") }
            guard let count = take("entries").flatMap({ Int($0) }), count >= 0 else { throw bad("no entry count") }
            entryCount = count
            while let file = take("file") {
                let parts = file.split(separator: " ").map(String.init)
                guard parts.count == 2, parts[1].utf8.count == 64, !parts[0].contains("/"), parts[0] != "manifest",
                    !files.contains(where: { $0.0 == parts[0] })
                else { throw bad("the file line '\(file)' is malformed") }
                files.append((parts[0], parts[1]))
            }
            guard position == fields.count else { throw bad("unexpected line '\(fields[position].0)'") }
        }
    }
}
