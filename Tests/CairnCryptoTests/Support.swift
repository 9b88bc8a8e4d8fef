import CairnWire
import Testing

@testable import CairnCrypto

/// Bytes from hex in test vectors.
func hex(_ text: String) -> [UInt8] {
    // Test vectors are constants; a typo is a test bug, so trapping is right.
    try! Hex.decode(text.filter { !$0.isWhitespace })
}

/// Secret bytes from hex.
func secret(_ text: String) -> SecretBytes { SecretBytes(copying: hex(text)) }

/// The bytes of a secret, for comparisons in tests only.
func reveal(_ s: SecretBytes) -> [UInt8] { s.withUnsafeBytes { Array($0) } }

/// Asserts that `body` throws a ``CryptoError`` with exactly `code`.
func expectCryptoError<T>(
    _ code: CryptoError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> T
) {
    do {
        _ = try body()
        Issue.record("expected CryptoError.\(code), but the call succeeded", sourceLocation: sourceLocation)
    } catch let error as CryptoError {
        #expect(error.code == code, "got \(error.code): \(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected CryptoError.\(code), got \(error)", sourceLocation: sourceLocation)
    }
}
