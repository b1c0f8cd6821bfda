import XCTest
import LLM
import BackendCPU

/// GeGLU with `int8Activations` reads GELU from an f16 table, as llama.cpp's CPU backend
/// does: gelu(f16(x)) rounded to f16 for −10 < x < 10, 0 below, x above. The reference here is the
/// same definition computed in Double; the table computes GELU in Float (as llama.cpp does) before
/// rounding to f16, so the two may differ by one f16 step (2^−10 relative) where the Float value
/// sits on a rounding edge, and by up to ~1e-6 absolute below x ≈ −4, where 1 + tanh(…) cancels in
/// Float (GELU there is ~1e-6 itself).
final class GeluTableTests: XCTestCase {
    private func geglu(_ backend: CPUBackend, _ gate: [Float], _ up: [Float]) throws -> [Float] {
        let g = try backend.makeBuffer(count: gate.count, label: "gate")
        let u = try backend.makeBuffer(count: up.count, label: "up")
        let y = try backend.makeBuffer(count: gate.count, label: "y")
        try backend.upload(gate, to: g, offset: 0)
        try backend.upload(up, to: u, offset: 0)
        try backend.geglu(gate: g, up: u, into: y, count: gate.count)
        return try backend.download(y, offset: 0, count: gate.count)
    }

    private func geluDouble(_ x: Double) -> Double { 0.5 * x * (1 + tanh(0.797_884_560_802_865_4 * x * (1 + 0.044_715 * x * x))) }

    func testTableMatchesF16RoundedGelu() throws {
        var rng = SplitMix(seed: 3)
        var gate = (0..<20_000).map { _ in Float(rng.nextUnit() * 30 - 15) }  // includes |x| ≥ 10
        gate += [-10, 10, -9.999, 9.999, 0, -0.0, 1e-8, -1e-8, 65000, -65000]
        let up = gate.map { _ in Float(rng.nextUnit() * 4 - 2) }
        let got = try geglu(CPUBackend(threads: 2, int8Activations: true), gate, up)
        for i in gate.indices {
            let x = gate[i]
            let want: Double
            if x <= -10 { want = 0 } else if x >= 10 { want = Double(x * up[i]) } else {
                let gelu = Double(Float16(geluDouble(Double(Float(Float16(x))))))
                want = gelu * Double(up[i])
            }
            let step = max(abs(want) * 0x1p-10, 1e-6 * abs(Double(up[i])))
            XCTAssertEqual(Double(got[i]), want, accuracy: step, "x = \(x)")
        }
    }

    /// Without the rounding, GeGLU stays the exact tanh GELU (the oracle).
    func testExactModeIsTheTanhGelu() throws {
        let gate: [Float] = [-12, -3, -0.5, 0, 0.25, 2, 9.9, 11]
        let up: [Float] = [1, 2, -1, 3, 0.5, -2, 1, 1]
        let got = try geglu(CPUBackend(threads: 1), gate, up)
        for i in gate.indices {
            XCTAssertEqual(Double(got[i]), geluDouble(Double(gate[i])) * Double(up[i]), accuracy: 1e-5 * max(1, abs(Double(gate[i]))))
        }
    }
}
