// Rotary embedding of A [L, H, D], one invocation per head vector (P.n = L·H of them), with f32
// tables B = cos, C = sin [L, D/2]; pairs (2m, 2m+1) for ROPE_INTERLEAVED, (m, m + D/2) for
// ROPE_HALF_SPLIT. rms_norm_rope first RMS-normalises the head vector by D = its weight [D].

// Rotates head vector `i`, each element first scaled by r·D[d] when `normalise`.
fn rotate(i: u32, r: f32, normalise: bool) {
    let D = P.head_dim;
    let half = D / 2u;
    let l = i / P.heads;
    let base = i * D;
    for (var m = 0u; m < half; m++) {
        var p = 2u * m;
        var q = 2u * m + 1u;
        if (P.pairing == ROPE_HALF_SPLIT) { p = m; q = m + half; }
        var x1 = ld_a(base + p);
        var x2 = ld_a(base + q);
        if (normalise) { x1 = x1 * r * ld_d(p); x2 = x2 * r * ld_d(q); }
        let co = ld_b(l * half + m);
        let si = ld_c(l * half + m);
        OUT[base + p] = x1 * co - x2 * si;
        OUT[base + q] = x2 * co + x1 * si;
    }
}

@compute @workgroup_size(ELEMENT_GROUP)
fn rope(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    rotate(i, 1.0, false);
}

@compute @workgroup_size(ELEMENT_GROUP)
fn rms_norm_rope(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let D = P.head_dim;
    var s = 0.0;
    for (var d = 0u; d < D; d++) { let x = ld_a(i * D + d); s += x * x; }
    rotate(i, 1.0 / sqrt(s / f32(D) + P.eps), true);
}
