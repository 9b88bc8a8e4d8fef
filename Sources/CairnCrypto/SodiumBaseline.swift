internal import CSodium

/// Direct libsodium calls with no Cairn wrapper in between, visible only inside this package.
///
/// `cairn-bench` measures the public API against these in the same run (the "floor"), so that
/// the wrapper's cost is a measured ratio. Nothing outside the package can reach them, and
/// `CSodium` stays imported by this module alone.
package enum SodiumBaseline {
    /// `crypto_aead_xchacha20poly1305_ietf_encrypt` into `output` (`input.count + 16` bytes).
    package static func aeadSeal(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        key: [UInt8],
        nonce: [UInt8]
    ) -> Bool {
        ensureSodium()
        var written: UInt64 = 0
        return crypto_aead_xchacha20poly1305_ietf_encrypt(
            output.baseAddress!.assumingMemoryBound(to: UInt8.self),
            &written,
            input.baseAddress!.assumingMemoryBound(to: UInt8.self),
            UInt64(input.count),
            nil,
            0,
            nil,
            nonce,
            key
        ) == 0
    }

    /// `crypto_aead_xchacha20poly1305_ietf_encrypt` into a freshly allocated buffer, freed after:
    /// the same allocation work as an API that returns a new array.
    package static func aeadSealFreshBuffer(_ input: UnsafeRawBufferPointer, key: [UInt8], nonce: [UInt8]) -> Bool {
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: input.count + 16, alignment: 16)
        defer { output.deallocate() }
        return aeadSeal(input, into: output, key: key, nonce: nonce)
    }

    /// `crypto_aead_xchacha20poly1305_ietf_decrypt` into `output` (`input.count - 16` bytes).
    package static func aeadOpen(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        key: [UInt8],
        nonce: [UInt8]
    ) -> Bool {
        ensureSodium()
        var written: UInt64 = 0
        return crypto_aead_xchacha20poly1305_ietf_decrypt(
            output.baseAddress!.assumingMemoryBound(to: UInt8.self),
            &written,
            nil,
            input.baseAddress!.assumingMemoryBound(to: UInt8.self),
            UInt64(input.count),
            nil,
            0,
            nonce,
            key
        ) == 0
    }

    /// A whole secretstream: `input` cut into `chunk`-byte pieces, the last one final,
    /// written back to back into `output` (each piece + 17 bytes). Returns the stream header, or
    /// nil when libsodium fails.
    @discardableResult
    package static func secretstreamSeal(
        _ input: UnsafeRawBufferPointer,
        chunk: Int,
        into output: UnsafeMutableRawBufferPointer,
        key: [UInt8]
    ) -> [UInt8]? {
        ensureSodium()
        var state = crypto_secretstream_xchacha20poly1305_state()
        var header = [UInt8](repeating: 0, count: 24)
        guard crypto_secretstream_xchacha20poly1305_init_push(&state, &header, key) == 0 else { return nil }
        var inOffset = 0
        var outOffset = 0
        repeat {
            let n = min(chunk, input.count - inOffset)
            let final = inOffset + n == input.count
            let tag = UInt8(final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0)
            guard
                crypto_secretstream_xchacha20poly1305_push(
                    &state,
                    output.baseAddress!.assumingMemoryBound(to: UInt8.self) + outOffset,
                    nil,
                    input.baseAddress!.assumingMemoryBound(to: UInt8.self) + inOffset,
                    UInt64(n),
                    nil,
                    0,
                    tag
                ) == 0
            else { return nil }
            inOffset += n
            outOffset += n + 17
        } while inOffset < input.count
        sodium_memzero(&state, MemoryLayout.size(ofValue: state))
        return header
    }

    /// Opens what ``secretstreamSeal(_:chunk:into:key:)`` wrote: `input` holds the chunks back to
    /// back (each `chunk` + 17 bytes, the last shorter), `output` their plaintext. False when a
    /// chunk does not authenticate or the final tag is not on the last chunk.
    package static func secretstreamOpen(
        _ input: UnsafeRawBufferPointer,
        chunk: Int,
        into output: UnsafeMutableRawBufferPointer,
        key: [UInt8],
        header: [UInt8]
    ) -> Bool {
        ensureSodium()
        var state = crypto_secretstream_xchacha20poly1305_state()
        guard crypto_secretstream_xchacha20poly1305_init_pull(&state, header, key) == 0 else { return false }
        defer { sodium_memzero(&state, MemoryLayout.size(ofValue: state)) }
        var inOffset = 0
        var outOffset = 0
        var tag: UInt8 = 0
        repeat {
            let n = min(chunk + 17, input.count - inOffset)
            guard n >= 17,
                crypto_secretstream_xchacha20poly1305_pull(
                    &state,
                    output.baseAddress!.assumingMemoryBound(to: UInt8.self) + outOffset,
                    nil,
                    &tag,
                    input.baseAddress!.assumingMemoryBound(to: UInt8.self) + inOffset,
                    UInt64(n),
                    nil,
                    0
                ) == 0
            else { return false }
            inOffset += n
            outOffset += n - 17
        } while inOffset < input.count
        return tag == UInt8(crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    }

    /// Unkeyed BLAKE2b-256 of `input`, one call.
    package static func blake2b(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_generichash(
            &out,
            32,
            input.baseAddress!.assumingMemoryBound(to: UInt8.self),
            UInt64(input.count),
            nil,
            0
        )
        return out
    }

    /// An Ed25519 key pair as libsodium holds it: (public key, 64-byte secret key).
    package static func signKeypair() -> (publicKey: [UInt8], secretKey: [UInt8]) {
        ensureSodium()
        var pk = [UInt8](repeating: 0, count: 32)
        var sk = [UInt8](repeating: 0, count: 64)
        precondition(crypto_sign_keypair(&pk, &sk) == 0, "crypto_sign_keypair failed")
        return (pk, sk)
    }

    /// `crypto_sign_detached` over `message`.
    package static func sign(_ message: [UInt8], secretKey: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: 64)
        _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey)
        return signature
    }

    /// `crypto_sign_verify_detached` over `message`.
    package static func verify(_ signature: [UInt8], _ message: [UInt8], publicKey: [UInt8]) -> Bool {
        crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// `crypto_stream_chacha20_ietf` (zero nonce): raw keystream into `output`, one call.
    package static func chacha20Keystream(into output: UnsafeMutableRawBufferPointer, key: [UInt8]) -> Bool {
        ensureSodium()
        let nonce = [UInt8](repeating: 0, count: 12)
        return crypto_stream_chacha20_ietf(
            output.baseAddress!.assumingMemoryBound(to: UInt8.self),
            UInt64(output.count),
            nonce,
            key
        ) == 0
    }
}
