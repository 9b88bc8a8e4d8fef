import CairnCrypto
import CairnLicensing
import CairnWire

/// `cairn-bench delivery`: sealing and opening a model container (header signature, sealed file
/// key, secretstream chunks with the header as associated data, licence checks) against raw
/// libsodium secretstream over the same bytes with the same chunk size, in the same run. Both
/// write into buffers allocated and touched before the clock starts.
struct DeliveryBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "delivery")
        let size = quick ? 64 << 20 : 1 << 30
        let chunk = Container.defaultChunkSize
        let reps = quick ? 2 : 3
        let broker = try Ed25519.PrivateKey()
        let licensee = try Ed25519.PrivateKey()
        let delivery = try X25519.PrivateKey()
        let licence = try Licence(
            id: SecureRandom.bytes(16),
            model: "bench",
            versions: 1...1,
            licensee: licensee.publicKey,
            entitlements: .inference,
            notBefore: 0,
            notAfter: Int64.max,
            deliveryLimit: 1
        ).signed(by: broker)
        let payload = [UInt8](unsafeUninitializedCapacity: size) { out, n in
            for i in 0..<size { out[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
            n = size
        }
        let digest = try Container.plaintextDigest(payload)
        var container = [UInt8](repeating: 1, count: Container.byteCount(model: "bench", payloadCount: size))
        let chunks = (size + Int(chunk) - 1) / Int(chunk)
        var raw = [UInt8](repeating: 1, count: size + chunks * SecretStream.chunkOverheadByteCount)
        var opened = [UInt8](repeating: 1, count: size)
        var rawOpened = [UInt8](repeating: 1, count: size)
        let rawKey = SecureRandom.bytes(32)
        var rawHeader: [UInt8] = []
        let params = [("bytes", "\(size)"), ("chunk", "\(chunk)")]
        let gb = Double(size) / 1e9

        let seal = try payload.withUnsafeBytes { p in
            try container.withUnsafeMutableBytes { c in
                try raw.withUnsafeMutableBytes { r in
                    try bestOfInterleaved(
                        repetitions: reps,
                        subject: {
                            try Container.seal(
                                p,
                                into: c,
                                plaintextDigest: digest,
                                model: "bench",
                                version: 1,
                                licence: licence.licence,
                                deliveryID: SecureRandom.bytes(16),
                                deliveryKey: delivery.publicKey,
                                chunkSize: chunk,
                                signer: broker
                            )
                        },
                        reference: {
                            rawHeader = SodiumBaseline.secretstreamSeal(p, chunk: Int(chunk), into: r, key: rawKey)!
                        }
                    )
                }
            }
        }
        report.cases.append(perSecond("container-seal", params, gb, seal))

        let open = try container.withUnsafeBytes { c in
            try opened.withUnsafeMutableBytes { o in
                try raw.withUnsafeBytes { r in
                    try rawOpened.withUnsafeMutableBytes { ro in
                        try bestOfInterleaved(
                            repetitions: reps,
                            subject: {
                                _ = try Container.open(
                                    c,
                                    into: o,
                                    licence: licence,
                                    identity: licensee.publicKey,
                                    deliveryKey: delivery,
                                    brokerLicenceKey: broker.publicKey,
                                    now: 1
                                )
                            },
                            reference: {
                                precondition(
                                    SodiumBaseline.secretstreamOpen(
                                        r,
                                        chunk: Int(chunk),
                                        into: ro,
                                        key: rawKey,
                                        header: rawHeader
                                    )
                                )
                            }
                        )
                    }
                }
            }
        }
        precondition(opened == payload && rawOpened == payload, "a benchmark round trip changed the payload")
        report.cases.append(perSecond("container-open", params, gb, open))
        return report
    }

    private func perSecond(
        _ name: String,
        _ params: [(String, String)],
        _ gb: Double,
        _ t: (subject: Double, reference: Double)
    )
        -> BenchCase
    {
        BenchCase(name: name, params: params, value: gb / t.subject, unit: "GB/s", floor: gb / t.reference)
    }
}
