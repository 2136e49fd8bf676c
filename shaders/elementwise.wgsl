// Elementwise ops, one invocation per output element (P.n of them), f32 arithmetic on widened
// inputs. ElementwiseArgs: op = ACT_* (activation) or BIN_* (binary); bcast = BCAST_* and
// inner = its extent (binary's B), or the gate's length, the columns (gated_residual);
// alpha = scaled_add's scalar; first_row = the row of a split dispatch's first element (a column
// broadcast's B is bound whole).

fn erf_(x: f32) -> f32 {
    // Chebyshev fit of erfc (relative error < 1.2e-7), the same as the CPU reference's.
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
        + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(-z * z + p);
    return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
}

fn silu_(x: f32) -> f32 { return x / (1.0 + exp(-x)); }

// Widens A to f32 (cast, with the pack pass storing the target dtype; scatter_rows' copy of dst).
@compute @workgroup_size(ELEMENT_GROUP)
fn copy(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    OUT[i] = ld_a(i);
}

@compute @workgroup_size(ELEMENT_GROUP)
fn activation(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let a = ld_a(i);
    var r = 0.0;
    switch P.op {
        case ACT_SILU: { r = silu_(a); }
        // The clamp changes no f32 result (tanh is ±1.0 in f32 past |u| ≈ 9) but keeps SwiftShader's
        // tanh, (e^2u − 1)/(e^2u + 1), from turning large |u| into Inf/Inf = NaN (WebGPU in Chromium).
        case ACT_GELU_TANH: { r = 0.5 * a * (1.0 + tanh(clamp(0.7978845608 * (a + 0.044715 * a * a * a), -15.0, 15.0))); }
        case ACT_GELU_ERF, default: { r = 0.5 * a * (1.0 + erf_(a * 0.70710678118)); }
    }
    OUT[i] = r;
}

@compute @workgroup_size(ELEMENT_GROUP)
fn binary(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    var j = i;
    if (P.bcast == BCAST_ROW) { j = i % P.inner; } else if (P.bcast == BCAST_COL) { j = P.first_row + i / P.inner; }
    let a = ld_a(i);
    let b = ld_b(j);
    var r = 0.0;
    switch P.op {
        case BIN_ADD: { r = a + b; }
        case BIN_SUB: { r = a - b; }
        case BIN_MUL, default: { r = a * b; }
    }
    OUT[i] = r;
}

@compute @workgroup_size(ELEMENT_GROUP)
fn swiglu(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    OUT[i] = silu_(ld_a(i)) * ld_b(i);
}

@compute @workgroup_size(ELEMENT_GROUP)
fn scaled_add(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    OUT[i] = ld_a(i) + P.alpha * ld_b(i);
}

// A + C[column]·B.
@compute @workgroup_size(ELEMENT_GROUP)
fn gated_residual(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    OUT[i] = ld_a(i) + ld_c(i % P.inner) * ld_b(i);
}
