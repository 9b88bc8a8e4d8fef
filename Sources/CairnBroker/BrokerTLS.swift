import CairnCrypto
import CairnExchange
import CairnWire
import Crypto
import Foundation
public import NIOSSL
import SwiftASN1
import X509

/// The broker's TLS certificate: self-signed (ECDSA P-256), made by `cairn-broker init` (or by
/// the first `serve` of a data folder made before TLS existed) and pinned by nodes through the
/// SHA-256 fingerprint every invite carries, so no certificate authority is involved
/// (`Protocol/README.md`, "TLS").
///
/// Files in the data folder: `tls.crt` (PEM) and `tls.key` (PEM, mode 0600).
public enum BrokerTLS {
    /// The certificate's file name.
    public static let certificateFileName = "tls.crt"
    /// The private key's file name.
    public static let keyFileName = "tls.key"
    /// How long a made certificate is valid: 10 years (its fingerprint is what nodes check).
    static let validity: TimeInterval = 10 * 365 * 86_400

    /// The certificate in `folder` as PEM, made first if the folder has none.
    public static func certificate(in folder: String, names: [String] = []) throws -> String {
        let path = folder + "/" + certificateFileName
        if !DurableFile.exists(path) { try create(in: folder, names: names) }
        return String(decoding: try DurableFile.read(path, maximum: 64 << 10), as: UTF8.self)
    }

    /// Makes a fresh key and self-signed certificate in `folder` for `localhost`, `127.0.0.1`,
    /// `::1` and `names` (host names or IP addresses). The key is written first, then the
    /// certificate, each durably; an existing pair is replaced.
    public static func create(in folder: String, names: [String] = []) throws {
        let key = P256.Signing.PrivateKey()
        let certificateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName { CommonName("cairn-broker") }
        var alternatives: [GeneralName] = []
        for host in ["localhost", "127.0.0.1", "::1"] + names where !host.isEmpty {
            if let address = IPAddress(host) {
                alternatives.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(address.bytes))))
            } else {
                alternatives.append(.dnsName(host))
            }
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: certificateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(validity),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternatives)
            },
            issuerPrivateKey: certificateKey
        )
        try DurableFile.write(Array(key.pemRepresentation.utf8), to: folder + "/" + keyFileName, replace: true)
        try DurableFile.write(
            Array(try certificate.serializeAsPEM().pemString.utf8) + [0x0A],
            to: folder + "/" + certificateFileName,
            replace: true
        )
    }

    /// The server's TLS configuration from the folder's key and certificate (TLS 1.2 and 1.3).
    public static func serverConfiguration(folder: String) throws -> TLSConfiguration {
        let pem = try certificate(in: folder)
        let key = try DurableFile.read(folder + "/" + keyFileName, maximum: 64 << 10)
        do {
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem))],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            )
            configuration.minimumTLSVersion = .tlsv12
            return configuration
        } catch {
            throw WireError(
                .invalidValue,
                "\(folder)/\(certificateFileName) or \(keyFileName) cannot be used: \(error)"
            )
        }
    }
}

/// An IPv4 or IPv6 address in text, as bytes.
private struct IPAddress {
    let bytes: [UInt8]

    init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            return nil
        }
    }
}
