import Foundation
import Glibc

/// A serial executor with a thread of its own. The ``Exchange`` actor runs on one, so its SQLite
/// reads and writes, their fsyncs and its signing block that thread, never one of Swift's
/// cooperative pool (as many threads as cores: two here), which the HTTP server's tasks need.
/// Jobs run in the order they were enqueued; the thread ends after ``stop()`` once none is left.
final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    /// The executor's thread, once it runs (for ``checkIsolated()``).
    private var thread: pthread_t?

    /// Starts the thread, named `name` (as `top -H` shows it).
    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Whether the caller runs on the executor's thread.
    var isCurrent: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    }

    /// Traps unless called on the executor's thread.
    func checkIsolated() { precondition(isCurrent, "not on the exchange's thread") }

    /// Lets the thread end once the jobs already enqueued have run.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        condition.lock()
        thread = pthread_self()
        condition.unlock()
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty, !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
