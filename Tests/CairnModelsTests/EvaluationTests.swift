import Foundation
import Testing

@testable import CairnModels

@Suite("Evaluation")
struct EvaluationTests {
    @Test("Exact figures for a small three-class case")
    func threeClasses() {
        // Predictions (argmax): 0, 0, 1, 2, 2, 1 for labels 0, 1, 1, 2, 2, 0.
        let p: [Float] = [
            0.8, 0.1, 0.1, 0.5, 0.4, 0.1, 0.2, 0.7, 0.1, 0.1, 0.1, 0.8, 0.3, 0.2, 0.5, 0.2, 0.6, 0.2,
        ]
        let e = Evaluation(probabilities: p, labels: [0, 1, 1, 2, 2, 0], classes: 3)
        #expect(e.confusion == [[1, 1, 0], [1, 1, 0], [0, 0, 2]])
        #expect(e.accuracy == 4.0 / 6.0)
        #expect(e.precision == [0.5, 0.5, 1])
        #expect(e.recall == [0.5, 0.5, 1])
        #expect(e.f1 == [0.5, 0.5, 1])
        #expect(e.support == [2, 2, 2])
        #expect(abs(e.macroF1 - 2.0 / 3.0) < 1e-12)
        #expect(e.rocAUC == nil)
        let expectedLoss = -(log(0.8) + log(0.4) + log(0.7) + log(0.8) + log(0.5) + log(0.2)) / 6
        #expect(abs(e.logLoss - expectedLoss) < 1e-6)
    }

    @Test("ROC AUC: perfect, reversed, and ties counted half")
    func auc() {
        #expect(Evaluation.auc(scores: [0.1, 0.2, 0.8, 0.9], labels: [0, 0, 1, 1]) == 1)
        #expect(Evaluation.auc(scores: [0.9, 0.8, 0.2, 0.1], labels: [0, 0, 1, 1]) == 0)
        #expect(Evaluation.auc(scores: [0.5, 0.5, 0.5, 0.5], labels: [0, 1, 0, 1]) == 0.5)
        // One positive ranked above 2 of 3 negatives, one above all 3, one tied with one: (2 + 3 + 2.5) / 9.
        #expect(Evaluation.auc(scores: [0.1, 0.3, 0.5, 0.4, 0.6, 0.5], labels: [0, 0, 0, 1, 1, 1]) == 7.5 / 9)
        #expect(Evaluation.auc(scores: [0.1, 0.2], labels: [1, 1]) == nil)
    }

    @Test("Evaluations of two halves combine to the evaluation of the whole")
    func combined() throws {
        let p: [Float] = [0.9, 0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.2, 0.45, 0.55, 0.35, 0.65]
        let labels: [Int32] = [0, 1, 1, 0, 0, 1]
        let whole = Evaluation(probabilities: p, labels: labels, classes: 2)
        let a = Evaluation(probabilities: Array(p[0..<6]), labels: Array(labels[0..<3]), classes: 2)
        let b = Evaluation(probabilities: Array(p[6...]), labels: Array(labels[3...]), classes: 2)
        let c = try #require(Evaluation.combined([a, b]))
        #expect(c.confusion == whole.confusion)
        #expect(c.accuracy == whole.accuracy && c.f1 == whole.f1 && c.sampleCount == 6)
        #expect(abs(c.logLoss - whole.logLoss) < 1e-12)
    }
}
