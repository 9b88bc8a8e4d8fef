import CairnWire
import Glibc
import Testing

@testable import CairnCrypto

@Suite struct KeystoreTests {
    let passphrase = SecretBytes(copying: Array("correct horse battery staple".utf8))

    private func sample() throws -> (Keystore, Ed25519.PrivateKey, X25519.PrivateKey) {
        let signing = try Ed25519.PrivateKey()
        let delivery = try X25519.PrivateKey()
        let store = try Keystore(entries: [
            Keystore.Entry(name: "identity", ed25519: signing),
            Keystore.Entry(name: "delivery", x25519: delivery),
        ])
        return (store, signing, delivery)
    }

    @Test func roundTripAndLayout() throws {
        let (store, signing, delivery) = try sample()
        let file = try store.encrypted(passphrase: passphrase, parameters: .testing)
        // 68-byte header, then the payload (2 + 2·(1 + 8 + 1 + 32)) and a 16-byte tag.
        #expect(file.count == 68 + 2 + (1 + 8 + 1 + 32) * 2 + 16)
        #expect(Array(file.prefix(8)) == Array("CAIRNKS\0".utf8))
        #expect(Array(file[8..<12]) == [1, 0, 1, 1])
        #expect(Array(file[12..<24]) == [1, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 0, 0, 0])
        let opened = try Keystore(decrypting: file, passphrase: passphrase)
        #expect(try opened.ed25519Key(named: "identity").publicKey == signing.publicKey)
        #expect(try opened.x25519Key(named: "delivery").publicKey == delivery.publicKey)
        expectCryptoError(.keyNotFound) { try opened.ed25519Key(named: "delivery") }
        expectCryptoError(.keyNotFound) { try opened.x25519Key(named: "licence") }
        // Fresh salt and nonce each time.
        #expect(try store.encrypted(passphrase: passphrase, parameters: .testing) != file)
    }

    @Test func wrongPassphraseIsRefusedWithAClearMessage() throws {
        let file = try sample().0.encrypted(passphrase: passphrase, parameters: .testing)
        do {
            _ = try Keystore(
                decrypting: file,
                passphrase: SecretBytes(copying: Array("correct horse battery stapler".utf8))
            )
            Issue.record("a wrong passphrase unlocked the keystore")
        } catch let error as CryptoError {
            #expect(error.code == .keystoreLocked)
            #expect(error.message == "cannot unlock the keystore: wrong passphrase, or the file was modified")
        }
        expectCryptoError(.invalidPassphrase) { try Keystore(decrypting: file, passphrase: SecretBytes(copying: [])) }
    }

    /// Every single-bit flip of every byte is refused, as locked (tag or key mismatch) or malformed.
    @Test func everySingleBitFlipIsRefused() throws {
        let file = try sample().0.encrypted(passphrase: passphrase, parameters: .testing)
        var refusedAsLocked = 0
        var refusedAsMalformed = 0
        for index in file.indices {
            for bit in 0..<8 {
                var damaged = file
                damaged[index] ^= UInt8(1 << bit)
                do {
                    _ = try Keystore(decrypting: damaged, passphrase: passphrase)
                    Issue.record("flipping bit \(bit) of byte \(index) went unnoticed")
                } catch let error as CryptoError {
                    switch error.code {
                    case .keystoreLocked: refusedAsLocked += 1
                    case .keystoreMalformed: refusedAsMalformed += 1
                    default: Issue.record("byte \(index) bit \(bit): unexpected \(error.code)")
                    }
                }
            }
        }
        #expect(refusedAsLocked + refusedAsMalformed == file.count * 8)
        #expect(refusedAsMalformed > 0 && refusedAsLocked > 0)
    }

    @Test func truncatedExtendedAndForeignFilesAreMalformed() throws {
        let file = try sample().0.encrypted(passphrase: passphrase, parameters: .testing)
        for length in [0, 7, 8, 67, 68, file.count - 1] {
            expectCryptoError(.keystoreMalformed) {
                try Keystore(decrypting: Array(file.prefix(length)), passphrase: passphrase)
            }
        }
        expectCryptoError(.keystoreMalformed) { try Keystore(decrypting: file + [0], passphrase: passphrase) }
        expectCryptoError(.keystoreMalformed) {
            try Keystore(decrypting: Array("hello, world".utf8), passphrase: passphrase)
        }
        // Parameters outside the accepted range are refused before any Argon2id work.
        var greedy = file
        greedy[12] = 200
        expectCryptoError(.keystoreMalformed) { try Keystore(decrypting: greedy, passphrase: passphrase) }
    }

    @Test func entriesAreChecked() throws {
        let key = SecretBytes.random(count: 32)
        expectCryptoError(.keystoreMalformed) { try Keystore.Entry(name: "Identity", kind: .ed25519Seed, secret: key) }
        expectCryptoError(.keystoreMalformed) { try Keystore.Entry(name: "", kind: .ed25519Seed, secret: key) }
        expectCryptoError(.keystoreMalformed) {
            try Keystore.Entry(name: "a", kind: .ed25519Seed, secret: SecretBytes.random(count: 31))
        }
        let entry = try Keystore.Entry(name: "a", kind: .ed25519Seed, secret: key)
        expectCryptoError(.keystoreMalformed) { try Keystore(entries: [entry, entry]) }
        expectCryptoError(.keystoreMalformed) { try Keystore(entries: []) }
    }

    @Test func filesAreWrittenPrivateAndNeverOverwritten() throws {
        let folder = String(cString: mkdtemp(strdup("/tmp/cairn-keystore-XXXXXX")))
        defer { _ = system("rm -rf '\(folder)'") }
        let path = folder + "/k.keystore"
        let (store, signing, _) = try sample()
        try store.write(to: path, passphrase: passphrase, parameters: .testing)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(
            try Keystore.read(from: path, passphrase: passphrase).ed25519Key(named: "identity").publicKey
                == signing.publicKey
        )
        #expect(throws: WireError(.io, "")) { try store.write(to: path, passphrase: passphrase, parameters: .testing) }
        // The refused write left the original intact.
        #expect(
            try Keystore.read(from: path, passphrase: passphrase).ed25519Key(named: "identity").publicKey
                == signing.publicKey
        )
        #expect(throws: WireError(.io, "")) { try Keystore.read(from: folder + "/missing", passphrase: passphrase) }
    }
}
