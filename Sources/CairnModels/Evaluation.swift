internal import Glibc

/// How well a model's predictions match the labels of a dataset.
///
/// Every figure is computed from `sampleCount` samples, so evaluations from several participants
/// can be combined by sample count (``combined(_:)``): a federation evaluates without pooling data.
public struct Evaluation: Codable, Sendable, Hashable {
    /// The number of samples evaluated.
    public var sampleCount: Int
    /// The fraction of samples whose most probable class is the label.
    public var accuracy: Double
    /// The mean of −log P(label) (probabilities clamped to [10⁻¹⁵, 1]).
    public var logLoss: Double
    /// Per class: true positives / predicted positives (0 when nothing was predicted).
    public var precision: [Double]
    /// Per class: true positives / actual positives (0 when the class is absent).
    public var recall: [Double]
    /// Per class: the harmonic mean of precision and recall (0 when both are 0).
    public var f1: [Double]
    /// Per class: how many samples carry that label.
    public var support: [Int]
    /// The unweighted means over classes.
    public var macroPrecision: Double
    /// The unweighted mean of ``recall``.
    public var macroRecall: Double
    /// The unweighted mean of ``f1``.
    public var macroF1: Double
    /// For two classes: the area under the ROC curve of P(class 1), ties counted half; nil otherwise
    /// or when one class is absent.
    public var rocAUC: Double?
    /// `confusion[actual][predicted]` counts.
    public var confusion: [[Int]]

    /// Evaluates probabilities (`labels.count × classes`, row-major) against labels.
    public init(probabilities: [Float], labels: [Int32], classes: Int) {
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        var loss = 0.0
        for r in labels.indices {
            let base = r * classes
            var best = 0
            for c in 1..<classes where probabilities[base + c] > probabilities[base + best] { best = c }
            let label = Int(labels[r])
            matrix[label][best] += 1
            loss -= log(min(1, max(1e-15, Double(probabilities[base + label]))))
        }
        let auc =
            classes == 2 ? Self.auc(scores: labels.indices.map { probabilities[$0 * 2 + 1] }, labels: labels) : nil
        self.init(confusion: matrix, logLoss: labels.isEmpty ? 0 : loss / Double(labels.count), rocAUC: auc)
    }

    /// Every count-based figure from a confusion matrix.
    private init(confusion matrix: [[Int]], logLoss: Double, rocAUC: Double?) {
        let classes = matrix.count
        let n = matrix.reduce(0) { $0 + $1.reduce(0, +) }
        sampleCount = n
        confusion = matrix
        self.logLoss = logLoss
        self.rocAUC = rocAUC
        accuracy = n > 0 ? Double((0..<classes).map { matrix[$0][$0] }.reduce(0, +)) / Double(n) : 0
        let support = matrix.map { $0.reduce(0, +) }
        self.support = support
        var precision: [Double] = []
        var recall: [Double] = []
        var f1: [Double] = []
        for c in 0..<classes {
            let tp = Double(matrix[c][c])
            let predicted = Double((0..<classes).map { matrix[$0][c] }.reduce(0, +))
            let p = predicted > 0 ? tp / predicted : 0
            let r = support[c] > 0 ? tp / Double(support[c]) : 0
            precision.append(p)
            recall.append(r)
            f1.append(p + r > 0 ? 2 * p * r / (p + r) : 0)
        }
        self.precision = precision
        self.recall = recall
        self.f1 = f1
        macroPrecision = precision.reduce(0, +) / Double(classes)
        macroRecall = recall.reduce(0, +) / Double(classes)
        macroF1 = f1.reduce(0, +) / Double(classes)
    }

    /// The Mann–Whitney estimate of the ROC AUC, with average ranks for tied scores.
    static func auc(scores: [Float], labels: [Int32]) -> Double? {
        let positives = labels.filter { $0 == 1 }.count
        let negatives = labels.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count, scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j where labels[order[k]] == 1 { rankSum += rank }
            i = j + 1
        }
        let p = Double(positives)
        return (rankSum - p * (p + 1) / 2) / (p * Double(negatives))
    }

    /// Evaluations of disjoint datasets combined by sample count: confusion matrices are summed
    /// and every figure recomputed from the sum, except log loss (averaged by sample count) and
    /// ROC AUC (averaged by sample count, an approximation: the exact AUC needs the pooled scores).
    public static func combined(_ parts: [Evaluation]) -> Evaluation? {
        guard let first = parts.first, parts.allSatisfy({ $0.confusion.count == first.confusion.count }) else {
            return nil
        }
        let classes = first.confusion.count
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for p in parts { for a in 0..<classes { for b in 0..<classes { matrix[a][b] += p.confusion[a][b] } } }
        let total = Double(max(1, parts.reduce(0) { $0 + $1.sampleCount }))
        let aucs = parts.compactMap { p in p.rocAUC.map { ($0, Double(p.sampleCount)) } }
        let aucWeight = aucs.reduce(0.0) { $0 + $1.1 }
        return Evaluation(
            confusion: matrix,
            logLoss: parts.reduce(0.0) { $0 + $1.logLoss * Double($1.sampleCount) } / total,
            rocAUC: aucWeight > 0 ? aucs.reduce(0.0) { $0 + $1.0 * $1.1 } / aucWeight : nil
        )
    }
}
