import CairnCrypto
public import CairnWire
import Foundation

/// The broker's TLS certificate as nodes pin it (`Protocol/README.md`, "TLS"): its fingerprint is
/// SHA-256 over the certificate's DER bytes, 64 hex digits in the invite code.
public enum TLSCertificate {
    /// The DER bytes of the first `CERTIFICATE` block of a PEM text.
    public static func der(pem: String) throws(ExchangeError) -> [UInt8] {
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        guard let start = pem.range(of: begin), let stop = pem.range(of: end, range: start.upperBound..<pem.endIndex),
            let data = Data(
                base64Encoded: pem[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace },
                options: []
            ), !data.isEmpty
        else { throw ExchangeError(.transport, "the broker's TLS certificate is not a PEM certificate") }
        return Array(data)
    }

    /// SHA-256 of the certificate's DER bytes.
    public static func fingerprint(pem: String) throws(ExchangeError) -> [UInt8] { SHA256.hash(try der(pem: pem)) }
}
