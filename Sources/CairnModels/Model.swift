import CairnWire
internal import Glibc

/// The shape of a model and the layout of its parameters in one flat `Float` vector.
///
/// Layouts (row-major tensors, one after another, in this order):
/// - `logistic` (binary): `weight` [inputs], `bias` [1]; P(class 1) = σ(weight · x + bias).
/// - `softmax`: `weight` [classes, inputs], `bias` [classes]; P = softmax(weight · x + bias).
/// - `mlp`: `hidden.weight` [hidden, inputs], `hidden.bias` [hidden], `output.weight`
///   [classes, hidden], `output.bias` [classes]; P = softmax(W₂ · relu(W₁ · x + b₁) + b₂).
///
/// A delta (local − global) has the same layout, so the SIMD core can clip, quantise and sum it.
public struct ModelArchitecture: Codable, Sendable, Hashable {
    /// The model family.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Logistic regression: two classes.
        case logistic
        /// Softmax (multinomial logistic) regression.
        case softmax
        /// A multilayer perceptron with one ReLU hidden layer and a softmax output.
        case mlp
    }

    /// The model family.
    public var kind: Kind
    /// Inputs per sample.
    public var inputs: Int
    /// Classes (2 for `logistic`).
    public var classes: Int
    /// Hidden units (`mlp` only; 0 otherwise).
    public var hidden: Int

    /// Checks the shape: at least one input, 2 classes for `logistic` and at least 2 otherwise,
    /// 1…4096 hidden units for `mlp`, and at most 2^26 parameters.
    public init(kind: Kind, inputs: Int, classes: Int, hidden: Int = 0) throws {
        guard inputs >= 1, classes >= 2 else {
            throw DataError(.invalidParameters, "a model needs at least 1 input and 2 classes")
        }
        guard kind != .logistic || classes == 2 else {
            throw DataError(.invalidParameters, "logistic regression has exactly 2 classes; use softmax for \(classes)")
        }
        guard kind != .mlp || (1...4096).contains(hidden) else {
            throw DataError(.invalidParameters, "an MLP needs 1 to 4096 hidden units")
        }
        self.kind = kind
        self.inputs = inputs
        self.classes = classes
        self.hidden = kind == .mlp ? hidden : 0
        guard parameterCount <= 1 << 26 else { throw DataError(.invalidParameters, "the model is too large") }
    }

    /// The named tensors of the layout: name, shape and offset in the flat vector.
    public var tensors: [(name: String, shape: [Int], offset: Int)] {
        var out: [(String, [Int], Int)] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            out.append((name, shape, offset))
            offset += shape.reduce(1, *)
        }
        switch kind {
        case .logistic:
            add("weight", [inputs])
            add("bias", [1])
        case .softmax:
            add("weight", [classes, inputs])
            add("bias", [classes])
        case .mlp:
            add("hidden.weight", [hidden, inputs])
            add("hidden.bias", [hidden])
            add("output.weight", [classes, hidden])
            add("output.bias", [classes])
        }
        return out
    }

    /// The length of the flat parameter vector.
    public var parameterCount: Int {
        switch kind {
        case .logistic: inputs + 1
        case .softmax: classes * (inputs + 1)
        case .mlp: hidden * (inputs + 1) + classes * (hidden + 1)
        }
    }

    /// Whether parameter `i` is a weight (L2-regularised) rather than a bias.
    func isWeight(_ i: Int) -> Bool {
        tensors.contains { $0.name.hasSuffix("weight") && i >= $0.offset && i < $0.offset + $0.shape.reduce(1, *) }
    }
}

/// A model: its architecture and its parameters. `Sendable` as a value type.
public struct Model: Sendable, Hashable {
    /// The shape and layout.
    public let architecture: ModelArchitecture
    /// The flat parameter vector (layout in ``ModelArchitecture``).
    public var parameters: [Float]

    /// A model with given parameters; their count must match the architecture.
    public init(architecture: ModelArchitecture, parameters: [Float]) throws {
        guard parameters.count == architecture.parameterCount else {
            throw DataError(
                .invalidParameters,
                "\(parameters.count) parameters for a model that has \(architecture.parameterCount)"
            )
        }
        self.architecture = architecture
        self.parameters = parameters
    }

    /// A fresh model: zeros for the linear models; for the MLP, weights uniform in ±√(6 / (fan-in
    /// + fan-out)) from `seed` (Glorot) and zero biases.
    public init(architecture: ModelArchitecture, seed: UInt64) {
        self.architecture = architecture
        parameters = [Float](repeating: 0, count: architecture.parameterCount)
        guard architecture.kind == .mlp else { return }
        var rng = SplitMix64(seed: seed)
        for t in architecture.tensors where t.name.hasSuffix("weight") {
            let bound = Float((6.0 / Double(t.shape[0] + t.shape[1])).squareRoot())
            for i in t.offset..<(t.offset + t.shape[0] * t.shape[1]) {
                parameters[i] = Float.random(in: -bound...bound, using: &rng)
            }
        }
    }

    /// `self − base`, coordinate by coordinate: the update a participant shares.
    public func delta(from base: Model) throws -> [Float] {
        guard base.architecture == architecture else {
            throw DataError(.invalidParameters, "a delta needs two models of one architecture")
        }
        return zip(parameters, base.parameters).map { $0 - $1 }
    }

    /// Class probabilities for `rows` samples of `architecture.inputs` inputs each, row-major
    /// (`rows × classes`).
    public func probabilities(_ x: [Float]) -> [Float] {
        let d = architecture.inputs
        let k = architecture.classes
        let rows = x.count / d
        var out = [Float](repeating: 0, count: rows * k)
        var scratch = Scratch(architecture)
        parameters.withUnsafeBufferPointer { p in
            x.withUnsafeBufferPointer { xs in
                for r in 0..<rows {
                    forward(p, xs.baseAddress! + r * d, &scratch)
                    for c in 0..<k { out[r * k + c] = scratch.probabilities[c] }
                }
            }
        }
        return out
    }

    /// The mean cross-entropy over the rows `batch` of `data`, plus `l2 / 2 · Σ weights²`, and
    /// its gradient with respect to every parameter (written into `gradient`).
    ///
    /// The loss is accumulated in `Double`.
    public func lossAndGradient(
        _ data: Dataset,
        rows batch: some Collection<Int>,
        l2: Float,
        gradient: inout [Float]
    ) -> Double {
        precondition(data.inputCount == architecture.inputs, "the data has another number of inputs")
        gradient = [Float](repeating: 0, count: parameters.count)
        var scratch = Scratch(architecture)
        let scale = 1 / Float(batch.count)
        var loss = 0.0
        parameters.withUnsafeBufferPointer { p in
            gradient.withUnsafeMutableBufferPointer { g in
                data.features.withUnsafeBufferPointer { f in
                    for r in batch {
                        let x = f.baseAddress! + r * architecture.inputs
                        let y = Int(data.labels[r])
                        forward(p, x, &scratch)
                        loss += scratch.negativeLogLikelihood(y)
                        backward(p, x, y, scale, &scratch, g)
                    }
                }
            }
        }
        loss /= Double(batch.count)
        if l2 > 0 {
            var penalty = 0.0
            for t in architecture.tensors where t.name.hasSuffix("weight") {
                for i in t.offset..<(t.offset + t.shape.reduce(1, *)) {
                    penalty += Double(parameters[i]) * Double(parameters[i])
                    gradient[i] += l2 * parameters[i]
                }
            }
            loss += Double(l2) / 2 * penalty
        }
        return loss
    }

    /// Working memory for one sample's forward and backward pass.
    struct Scratch {
        var logits: [Float]
        var probabilities: [Float]
        var hidden: [Float]
        var hiddenGradient: [Float]
        let logistic: Bool

        init(_ a: ModelArchitecture) {
            logistic = a.kind == .logistic
            logits = [Float](repeating: 0, count: a.classes)
            probabilities = logits
            hidden = [Float](repeating: 0, count: a.hidden)
            hiddenGradient = hidden
        }

        /// −log P(y), from the logits, computed stably.
        func negativeLogLikelihood(_ y: Int) -> Double {
            if logistic {
                // Logistic: logits = [0, z].
                let z = Double(logits[1])
                let softplus = max(z, 0) + log1p(exp(-abs(z)))
                return y == 1 ? softplus - z : softplus
            }
            let m = Double(logits.max()!)
            let sum = logits.reduce(0.0) { $0 + exp(Double($1) - m) }
            return m + log(sum) - Double(logits[y])
        }
    }

    private func forward(_ p: UnsafeBufferPointer<Float>, _ x: UnsafePointer<Float>, _ s: inout Scratch) {
        let a = architecture
        let w = p.baseAddress!
        switch a.kind {
        case .logistic:
            let z = dot(w, x, a.inputs) + w[a.inputs]
            s.logits[0] = 0
            s.logits[1] = z
            let probability = z >= 0 ? 1 / (1 + expf(-z)) : expf(z) / (1 + expf(z))
            s.probabilities[1] = probability
            s.probabilities[0] = 1 - probability
        case .softmax:
            let bias = w + a.classes * a.inputs
            for c in 0..<a.classes { s.logits[c] = dot(w + c * a.inputs, x, a.inputs) + bias[c] }
            softmax(&s)
        case .mlp:
            let b1 = w + a.hidden * a.inputs
            let w2 = b1 + a.hidden
            let b2 = w2 + a.classes * a.hidden
            for j in 0..<a.hidden { s.hidden[j] = max(0, dot(w + j * a.inputs, x, a.inputs) + b1[j]) }
            s.hidden.withUnsafeBufferPointer { h in
                for c in 0..<a.classes { s.logits[c] = dot(w2 + c * a.hidden, h.baseAddress!, a.hidden) + b2[c] }
            }
            softmax(&s)
        }
    }

    private func softmax(_ s: inout Scratch) {
        let m = s.logits.max()!
        var sum: Float = 0
        for c in s.logits.indices {
            s.probabilities[c] = expf(s.logits[c] - m)
            sum += s.probabilities[c]
        }
        for c in s.logits.indices { s.probabilities[c] /= sum }
    }

    private func backward(
        _ p: UnsafeBufferPointer<Float>,
        _ x: UnsafePointer<Float>,
        _ y: Int,
        _ scale: Float,
        _ s: inout Scratch,
        _ g: UnsafeMutableBufferPointer<Float>
    ) {
        let a = architecture
        let gw = g.baseAddress!
        switch a.kind {
        case .logistic:
            let dz = (s.probabilities[1] - (y == 1 ? 1 : 0)) * scale
            axpy(dz, x, gw, a.inputs)
            gw[a.inputs] += dz
        case .softmax:
            let gb = gw + a.classes * a.inputs
            for c in 0..<a.classes {
                let dz = (s.probabilities[c] - (c == y ? 1 : 0)) * scale
                axpy(dz, x, gw + c * a.inputs, a.inputs)
                gb[c] += dz
            }
        case .mlp:
            let w2 = p.baseAddress! + a.hidden * (a.inputs + 1)
            let gb1 = gw + a.hidden * a.inputs
            let gw2 = gb1 + a.hidden
            let gb2 = gw2 + a.classes * a.hidden
            for j in 0..<a.hidden { s.hiddenGradient[j] = 0 }
            s.hidden.withUnsafeBufferPointer { h in
                s.hiddenGradient.withUnsafeMutableBufferPointer { dh in
                    for c in 0..<a.classes {
                        let dz = (s.probabilities[c] - (c == y ? 1 : 0)) * scale
                        axpy(dz, h.baseAddress!, gw2 + c * a.hidden, a.hidden)
                        gb2[c] += dz
                        axpy(dz, w2 + c * a.hidden, dh.baseAddress!, a.hidden)
                    }
                    for j in 0..<a.hidden where h[j] > 0 {
                        axpy(dh[j], x, gw + j * a.inputs, a.inputs)
                        gb1[j] += dh[j]
                    }
                }
            }
        }
    }
}

/// Σ a[i]·b[i] over `n` elements, in eight interleaved partial sums.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
        acc +=
            UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var sum = acc.sum()
    while i < n {
        sum += a[i] * b[i]
        i += 1
    }
    return sum
}

/// y[i] += alpha · x[i] over `n` elements.
@inline(__always)
func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += alpha * x[i] }
}
