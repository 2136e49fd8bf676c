// Row gathers and scatters, one invocation per element of the rows moved (P.n of them).

// OUT[n, c] = Σ_t W[n·T + t]·A[I[n·T + t], c] with B = indices I (u32), C = weights W (f32 bits,
// 1 without P.has_weights), T = P.taps. A holds elements [P.e0, P.e1) of the table: a table past
// the binding limit comes in chunks (whole words, rows may straddle two), one dispatch per chunk,
// each adding the taps whose element it holds, the first (P.first) writing OUT fresh. Unsplit
// tables: e0 = 0, e1 = all, one dispatch, the taps in order.
@compute @workgroup_size(ELEMENT_GROUP)
fn gather_rows(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let c = i % P.cols;
    let first_tap = (i / P.cols) * P.taps;
    var acc = 0.0;
    for (var t = first_tap; t < first_tap + P.taps; t++) {
        let e = B[t] * P.cols + c;
        if (e < P.e0 || e >= P.e1) { continue; }
        var w = 1.0;
        if (P.has_weights != 0u) { w = bitcast<f32>(C[t]); }
        acc += w * ld_a(e - P.e0);
    }
    if (P.first != 0u) { OUT[i] = acc; } else { OUT[i] = OUT[i] + acc; }
}

// Row n of A = src goes to row B[n] (u32) of OUT, which already holds dst widened to f32:
// assigned, or added for SCATTER_ADD.
@compute @workgroup_size(ELEMENT_GROUP)
fn scatter_rows(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let cols = P.cols;
    let o = B[i / cols] * cols + i % cols;
    if (P.mode == SCATTER_ADD) { OUT[o] = OUT[o] + ld_a(i); } else { OUT[o] = ld_a(i); }
}
