import CairnExchange
import CairnWire
import Foundation
import Hummingbird
import Logging
import Testing

@testable import CairnBroker

@Suite struct OpenAPITests {
    /// The routes the server registers are exactly the operations `Protocol/openapi.yaml` lists.
    @Test func serverRoutesAreTheSpecification() async throws {
        let fixture = try await Fixture()
        defer { _ = system("rm -rf '\(fixture.folder)'") }
        let router = BrokerServer.router(fixture.exchange, logger: quiet)
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path)" })

        let file = #filePath
        let root = String(file[..<file.range(of: "/Tests/")!.lowerBound])
        let yaml = String(
            decoding: try DurableFile.read(root + "/Protocol/openapi.yaml", maximum: 1 << 20),
            as: UTF8.self
        )
        // Paths sit at two spaces under `paths:`, operations at four spaces under each path.
        var specified: Set<String> = []
        var path: String?
        var inPaths = false
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") { inPaths = line == "paths:" }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "),
                let method = ["get", "post", "put", "delete", "patch"].first(where: { line.hasPrefix("    \($0):") })
            {
                specified.insert(method.uppercased() + " " + path)
            }
        }
        #expect(specified.count == 34)
        // Every signed operation lists the refusals any signed request can get (and 404 where a
        // path names something), and a sealed route says its bodies are sealed.
        var blocks: [String: String] = [:]
        var current: String?
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix("  ") || (line.hasPrefix("  /") && line.hasSuffix(":")) { current = nil }
            if line.hasPrefix("  /"), line.hasSuffix(":") { path = String(line.dropFirst(2).dropLast()) }
            if let path, line.hasPrefix("    "), !line.hasPrefix("     "),
                let method = ["get", "post"].first(where: { line.hasPrefix("    \($0):") })
            {
                current = method.uppercased() + " " + path
            }
            if let current { blocks[current, default: ""] += line + "\n" }
        }
        for (operation, block) in blocks.sorted(by: { $0.key < $1.key }) {
            let parts = operation.split(separator: " ").map(String.init)
            guard !["/healthz", "/metrics", "/v1/broker"].contains(parts[1]) else { continue }
            var codes = ["400", "401", "403", "413", "415", "429", "500"]
            if parts[1].contains("{") { codes.append("404") }
            // A POST carries a request id: a retry may meet its first attempt still being
            // answered (503) or an id used for another request (409).
            if parts[0] == "POST" {
                codes += ["409", "503"]
                #expect(block.contains("parameters/requestID"), "\(operation) takes no request id")
            }
            for code in codes { #expect(block.contains("\"\(code)\":"), "\(operation) lists no \(code)") }
            let sealing = SealedBody.routes(method: parts[0], path: parts[1])
            // The SecAgg+ message body and the sealed member record are components of the sealed type.
            let sealed = [SealedBody.contentType, "requestBodies/SecAggMessage", "responses/SealedMember"]
            #expect(
                sealed.contains(where: block.contains) == (sealing.request || sealing.response),
                "\(operation): sealed \(sealing)"
            )
        }
        #expect(
            served == specified,
            "served only: \(served.subtracting(specified)); specified only: \(specified.subtracting(served))"
        )
    }
}
