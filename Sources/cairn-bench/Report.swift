import Glibc

/// One measured case: `value` through Cairn's API, `floor` for the same work measured in the same
/// run by the reference (direct libsodium, a plain loop, numpy), `ratio` = value / floor for rates.
/// A reference that could not run (numpy absent) has a nil floor and ratio, printed as null.
struct BenchCase {
    let name: String
    let params: [(String, String)]
    let value: Double
    let unit: String
    let floor: Double?
    var ratio: Double? { floor.flatMap { $0 > 0 ? value / $0 : nil } }
}

/// The result of one `cairn-bench <area>` run.
struct BenchReport {
    let area: String
    var cases: [BenchCase] = []

    /// `{"area": ..., "cases": [{"name", "params", "value", "unit", "floor", "ratio"}]}` on one line.
    var json: String {
        let items = cases.map { c in
            let params = c.params.map { "\(quote($0.0)): \(quote($0.1))" }.joined(separator: ", ")
            return "{\"name\": \(quote(c.name)), \"params\": {\(params)}, \"value\": \(number(c.value)), "
                + "\"unit\": \(quote(c.unit)), \"floor\": \(number(c.floor)), \"ratio\": \(number(c.ratio))}"
        }
        return "{\"area\": \(quote(area)), \"cases\": [\(items.joined(separator: ", "))]}"
    }

    /// A table for people.
    var table: String {
        var lines = [
            "area: \(area)", pad("case", 34) + pad("params", 32) + pad("value", 14) + pad("floor", 14) + "ratio",
        ]
        for c in cases {
            let params = c.params.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            lines.append(
                pad(c.name, 34) + pad(params, 32) + pad("\(number(c.value)) \(c.unit)", 14)
                    + pad("\(number(c.floor))", 14) + number(c.ratio)
            )
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }

    private func quote(_ s: String) -> String {
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }

    private func number(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "null" }
        return "\((x * 1000).rounded() / 1000)"
    }
}

/// Seconds taken by `body`.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return (ContinuousClock.now - start).seconds
}

extension Duration {
    /// In seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// Runs `subject` and `reference` alternately `repetitions` times and keeps the best time of each,
/// so that both see the same machine state and a passing hiccup hurts neither.
func bestOfInterleaved(
    repetitions: Int,
    subject: () throws -> Void,
    reference: () throws -> Void
) rethrows -> (subject: Double, reference: Double) {
    var best = (subject: Double.infinity, reference: Double.infinity)
    for round in 0..<repetitions {
        // Alternate which goes first, so neither always runs on a warmer cache.
        if round % 2 == 0 {
            best.subject = min(best.subject, try seconds(subject))
            best.reference = min(best.reference, try seconds(reference))
        } else {
            best.reference = min(best.reference, try seconds(reference))
            best.subject = min(best.subject, try seconds(subject))
        }
    }
    return best
}

/// CPU seconds this process has used, on all its threads.
func processCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) * 1e-9
}
