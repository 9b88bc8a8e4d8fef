import CairnExchange
import CairnWire
import Synchronization
import Testing

@testable import CairnNode

/// The node's retry loop: which failures it retries, the waits it reports, when it gives up.
@Suite struct RetryTests {
    /// Two retryable failures, then an answer: both are reported with the backoff's waits.
    @Test func retriesWithReportedBackoff() async throws {
        let attempts = Mutex(0)
        let heard = Mutex<[String]>([])
        let report: RetryReport = { failure, wait in heard.withLock { $0.append("\(failure.message) \(wait)") } }
        // Patience far beyond need: a test run that starves this task for minutes (the pool
        // has two threads) must not make it give up.
        let answer = try await withRetries(patience: 1e9, onRetry: report) {
            let n = attempts.withLock {
                $0 += 1
                return $0
            }
            guard n > 2 else { throw ExchangeError(.transport, "the broker at x cannot be reached (\(n))") }
            return n
        }
        #expect(answer == 3)
        #expect(
            heard.withLock { $0 }
                == ["the broker at x cannot be reached (1) 0.1", "the broker at x cannot be reached (2) 0.2"]
        )
    }

    /// A refusal is thrown at once, unreported; so is a retryable failure once patience is out.
    @Test func givesUp() async throws {
        let heard = Mutex(0)
        let attempts = Mutex(0)
        let report: RetryReport = { _, _ in heard.withLock { $0 += 1 } }
        let refusal = await #expect(throws: ExchangeError.self) {
            try await withRetries(onRetry: report) { () async throws -> Int in
                attempts.withLock { $0 += 1 }
                throw ExchangeError(.forbidden, "not a participant")
            }
        }
        #expect(refusal?.message == "not a participant")
        let late = await #expect(throws: ExchangeError.self) {
            try await withRetries(patience: 0, onRetry: report) { () async throws -> Int in
                attempts.withLock { $0 += 1 }
                throw ExchangeError(.unavailable, "the broker is restarting")
            }
        }
        #expect(late?.message == "the broker is restarting")
        #expect(heard.withLock { $0 } == 0)
        #expect(attempts.withLock { $0 } == 2)
    }
}
