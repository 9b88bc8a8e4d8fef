import CairnModels
import Foundation

/// `cairn-bench training`: training throughput (samples per second: epochs × rows / time) of each
/// model on the digits data, against a numpy implementation of the same model, optimiser, batch
/// size and epochs, timed in the same run (null when python3 or numpy is missing).
///
/// Models: `logistic` (the digits relabelled "is it a 0?"), `softmax` and `mlp` (64 hidden
/// units); mini-batch Adam, batch 32, over the 1,797 standardised rows.
struct TrainingBench {
    let quick: Bool

    func run() throws -> BenchReport {
        var report = BenchReport(area: "training")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let csv = root + "/Datasets/digits/data.csv"
        let schema = try DataSchema.load(from: root + "/Datasets/digits/schema.json")
        let (raw, _) = try DataValidator.load(csv, schema: schema)
        let digits = Standardisation(of: raw).apply(to: raw)
        var binarySchema = schema
        binarySchema.task = .binary
        binarySchema.label.classes = ["other", "zero"]
        let zeros = Dataset(
            schema: binarySchema,
            features: digits.features,
            labels: digits.labels.map { $0 == 0 ? 1 : 0 }
        )
        let epochs = quick ? 3 : 20
        let settings = TrainingSettings(
            optimizer: .adam,
            epochs: epochs,
            batchSize: 32,
            learningRate: 0.01,
            l2: 0.001,
            seed: 1
        )
        let peer = NumpyTraining(csv: csv, epochs: epochs, repetitions: quick ? 1 : 3)
        for (kind, data) in [(ModelArchitecture.Kind.logistic, zeros), (.softmax, digits), (.mlp, digits)] {
            let architecture = try ModelArchitecture(
                kind: kind,
                inputs: data.inputCount,
                classes: data.classCount,
                hidden: 64
            )
            var best = Double.infinity
            for _ in 0..<(quick ? 1 : 3) {
                var model = Model(architecture: architecture, seed: 1)
                best = min(best, try seconds { _ = try Trainer.train(&model, on: data, settings: settings) })
            }
            let samples = Double(epochs * data.count)
            report.cases.append(
                BenchCase(
                    name: "train-\(kind.rawValue)",
                    params: [("rows", "\(data.count)"), ("epochs", "\(epochs)"), ("batch", "32")],
                    value: samples / best,
                    unit: "samples/s",
                    floor: peer.measure(kind.rawValue).map { samples / $0 }
                )
            )
        }
        return report
    }
}

/// The same training in numpy, in a python3 child process; returns the best time in seconds.
private struct NumpyTraining {
    let csv: String
    let epochs: Int
    let repetitions: Int

    private static let script = """
        import sys, time
        import numpy as np
        path, kind, epochs, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
        X, y = data[:, :64], data[:, 64].astype(int)
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
        X = X.astype(np.float32)
        if kind == "logistic":
            y = (y == 0).astype(int)
        k = 2 if kind == "logistic" else 10
        Y = np.eye(k, dtype=np.float32)[y]
        rng = np.random.default_rng(1)
        def params():
            if kind == "logistic": return [np.zeros(64, np.float32), np.zeros(1, np.float32)]
            if kind == "softmax": return [np.zeros((10, 64), np.float32), np.zeros(10, np.float32)]
            b1 = np.sqrt(6 / 128); b2 = np.sqrt(6 / 74)
            return [rng.uniform(-b1, b1, (64, 64)).astype(np.float32), np.zeros(64, np.float32),
                    rng.uniform(-b2, b2, (10, 64)).astype(np.float32), np.zeros(10, np.float32)]
        def grads(p, Xb, Yb, yb):
            B = len(Xb)
            if kind == "logistic":
                z = Xb @ p[0] + p[1][0]; q = 1 / (1 + np.exp(-z)); d = (q - yb) / B
                return [Xb.T @ d + 0.001 * p[0], np.array([d.sum()], np.float32)]
            if kind == "softmax":
                z = Xb @ p[0].T + p[1]; e = np.exp(z - z.max(1, keepdims=True)); q = e / e.sum(1, keepdims=True)
                d = (q - Yb) / B
                return [d.T @ Xb + 0.001 * p[0], d.sum(0)]
            a = Xb @ p[0].T + p[1]; h = np.maximum(a, 0); z = h @ p[2].T + p[3]
            e = np.exp(z - z.max(1, keepdims=True)); q = e / e.sum(1, keepdims=True); d = (q - Yb) / B
            dh = (d @ p[2]) * (a > 0)
            return [dh.T @ Xb + 0.001 * p[0], dh.sum(0), d.T @ h + 0.001 * p[2], d.sum(0)]
        def train():
            p = params(); m = [np.zeros_like(t) for t in p]; v = [np.zeros_like(t) for t in p]; step = 0
            order = np.arange(len(X))
            for _ in range(epochs):
                rng.shuffle(order)
                for s in range(0, len(order), 32):
                    b = order[s:s + 32]; g = grads(p, X[b], Y[b], y[b]); step += 1
                    for i in range(len(p)):
                        m[i] = 0.9 * m[i] + 0.1 * g[i]; v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                        p[i] -= 0.01 * (m[i] / (1 - 0.9 ** step)) / (np.sqrt(v[i] / (1 - 0.999 ** step)) + 1e-8)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter(); train(); best = min(best, time.perf_counter() - t)
        print(best)
        """

    func measure(_ kind: String) -> Double? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, csv, kind, "\(epochs)", "\(repetitions)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return Double(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
