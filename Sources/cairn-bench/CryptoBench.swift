import CairnCrypto
import CairnWire

/// `cairn-bench crypto`: Cairn's Swift API against direct libsodium calls on the same bytes.
struct CryptoBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "crypto")
        let sizes = [1 << 20, 64 << 20]
        let key = SymmetricKey()
        let rawKey = key.bytes.withUnsafeBytes { Array($0) }
        let nonce = XChaCha20Poly1305.Nonce()
        for size in sizes {
            // Touch every page of every buffer once, so no timed run pays for first-touch faults.
            let input = SecureRandom.bytes(size)
            var output = [UInt8](repeating: 1, count: size + XChaCha20Poly1305.tagByteCount)
            var opened = [UInt8](repeating: 1, count: size)
            let loops = max(1, (64 << 20) / size) / (quick ? 4 : 1)
            let reps = quick ? 3 : 7
            let params = [("bytes", "\(size)")]
            let gb = Double(size * loops) / 1e9

            let seal = try input.withUnsafeBytes { i in
                try output.withUnsafeMutableBytes { o in
                    try bestOfInterleaved(
                        repetitions: reps,
                        subject: {
                            for _ in 0..<loops { try XChaCha20Poly1305.seal(i, into: o, key: key, nonce: nonce) }
                        },
                        reference: {
                            for _ in 0..<loops {
                                precondition(SodiumBaseline.aeadSeal(i, into: o, key: rawKey, nonce: nonce.bytes))
                            }
                        }
                    )
                }
            }
            report.cases.append(perSecond("aead-seal", params, gb, "GB/s", seal))

            // The API that returns a new array, against libsodium writing into a freshly allocated
            // buffer: both pay for fresh memory (glibc maps blocks over 32 MiB anew on each call).
            let sealAllocating = try input.withUnsafeBytes { i in
                try bestOfInterleaved(
                    repetitions: reps,
                    subject: {
                        for _ in 0..<loops { _ = try XChaCha20Poly1305.seal(input, key: key, nonce: nonce) }
                    },
                    reference: {
                        for _ in 0..<loops {
                            precondition(SodiumBaseline.aeadSealFreshBuffer(i, key: rawKey, nonce: nonce.bytes))
                        }
                    }
                )
            }
            report.cases.append(perSecond("aead-seal-returning-array", params, gb, "GB/s", sealAllocating))

            let sealed = try XChaCha20Poly1305.seal(input, key: key, nonce: nonce)
            let open = try sealed.withUnsafeBytes { s in
                try opened.withUnsafeMutableBytes { o in
                    try bestOfInterleaved(
                        repetitions: reps,
                        subject: {
                            for _ in 0..<loops { try XChaCha20Poly1305.open(s, into: o, key: key, nonce: nonce) }
                        },
                        reference: {
                            for _ in 0..<loops {
                                precondition(SodiumBaseline.aeadOpen(s, into: o, key: rawKey, nonce: nonce.bytes))
                            }
                        }
                    )
                }
            }
            report.cases.append(perSecond("aead-open", params, gb, "GB/s", open))

            let chunk = 64 << 10
            let chunks = (size + chunk - 1) / chunk
            var streamOut = [UInt8](repeating: 1, count: size + chunks * SecretStream.chunkOverheadByteCount)
            let stream = try input.withUnsafeBytes { i in
                try streamOut.withUnsafeMutableBytes { o in
                    try bestOfInterleaved(
                        repetitions: reps,
                        subject: {
                            for _ in 0..<loops {
                                let encryptor = try SecretStream.Encryptor(key: key)
                                var offset = 0
                                for c in 0..<chunks {
                                    let n = min(chunk, size - c * chunk)
                                    try encryptor.push(
                                        UnsafeRawBufferPointer(rebasing: i[(c * chunk)..<(c * chunk + n)]),
                                        into: UnsafeMutableRawBufferPointer(rebasing: o[offset..<(offset + n + 17)]),
                                        isFinal: c == chunks - 1
                                    )
                                    offset += n + 17
                                }
                            }
                        },
                        reference: {
                            for _ in 0..<loops {
                                precondition(
                                    SodiumBaseline.secretstreamSeal(i, chunk: chunk, into: o, key: rawKey) != nil
                                )
                            }
                        }
                    )
                }
            }
            report.cases.append(perSecond("secretstream-seal", params + [("chunk", "\(chunk)")], gb, "GB/s", stream))

            let domain = Domain("cairn/bench/v1")
            let hash = try input.withUnsafeBytes { i in
                try bestOfInterleaved(
                    repetitions: reps,
                    subject: {
                        for _ in 0..<loops {
                            let hasher = try BLAKE2b(domain: domain)
                            hasher.update(i)
                            _ = try hasher.finalize()
                        }
                    },
                    reference: {
                        for _ in 0..<loops { _ = SodiumBaseline.blake2b(i) }
                    }
                )
            }
            report.cases.append(perSecond("blake2b-256", params, gb, "GB/s", hash))
        }

        // Signatures: operations per second on a 64-byte message.
        let message = SecureRandom.bytes(64)
        let signer = try Ed25519.PrivateKey()
        let raw = SodiumBaseline.signKeypair()
        let domain = Domain("cairn/bench/v1")
        let count = quick ? 500 : 4000
        let sign = try bestOfInterleaved(
            repetitions: quick ? 3 : 5,
            subject: { for _ in 0..<count { _ = try signer.signature(for: message, domain: domain) } },
            reference: { for _ in 0..<count { _ = SodiumBaseline.sign(message, secretKey: raw.secretKey) } }
        )
        report.cases.append(perSecond("ed25519-sign", [("bytes", "64")], Double(count), "ops/s", sign))
        let signature = try signer.signature(for: message, domain: domain)
        let rawSignature = SodiumBaseline.sign(message, secretKey: raw.secretKey)
        let verify = bestOfInterleaved(
            repetitions: quick ? 3 : 5,
            subject: {
                for _ in 0..<count {
                    precondition(signer.publicKey.isValidSignature(signature, for: message, domain: domain))
                }
            },
            reference: {
                for _ in 0..<count {
                    precondition(SodiumBaseline.verify(rawSignature, message, publicKey: raw.publicKey))
                }
            }
        )
        report.cases.append(perSecond("ed25519-verify", [("bytes", "64")], Double(count), "ops/s", verify))
        return report
    }

    /// A rate case: `amount` units of work (gigabytes, operations) per second of each side.
    private func perSecond(
        _ name: String,
        _ params: [(String, String)],
        _ amount: Double,
        _ unit: String,
        _ times: (subject: Double, reference: Double)
    ) -> BenchCase {
        BenchCase(
            name: name,
            params: params,
            value: amount / times.subject,
            unit: unit,
            floor: amount / times.reference
        )
    }
}
