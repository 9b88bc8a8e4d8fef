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
        #expect(specified.count == 30)
        #expect(
            served == specified,
            "served only: \(served.subtracting(specified)); specified only: \(specified.subtracting(served))"
        )
    }
}
