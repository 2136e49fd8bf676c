// Rotary embedding of A [L, H, D], one invocation per head vector (P.n = L·H of them), with f32
// tables B = cos, C = sin [L, D/2]; pairs (2m, 2m+1) for ROPE_INTERLEAVED, (m, m + D/2) for
// ROPE_HALF_SPLIT. rms_norm_rope first RMS-normalises the head vector by D = its weight [D];
// joint_qkv (below) does the same from a stream's fused QKV projection into the joint layout.

// Writes the head vector at element `src` of A, of token `l`, rotated, to OUT from element `dst`;
// each element first scaled by r·D[d] when `normalise`.
fn rotate_at(src: u32, dst: u32, l: u32, r: f32, normalise: bool) {
    let D = P.head_dim;
    let half = D / 2u;
    for (var m = 0u; m < half; m++) {
        var p = 2u * m;
        var q = 2u * m + 1u;
        if (P.pairing == ROPE_HALF_SPLIT) { p = m; q = m + half; }
        var x1 = ld_a(src + p);
        var x2 = ld_a(src + q);
        if (normalise) { x1 = x1 * r * ld_d(p); x2 = x2 * r * ld_d(q); }
        let co = ld_b(l * half + m);
        let si = ld_c(l * half + m);
        OUT[dst + p] = x1 * co - x2 * si;
        OUT[dst + q] = x2 * co + x1 * si;
    }
}

// Rotates head vector `i` in place, each element first scaled by r·D[d] when `normalise`.
fn rotate(i: u32, r: f32, normalise: bool) {
    rotate_at(i * P.head_dim, i * P.head_dim, i / P.heads, r, normalise);
}

// 1/√(mean(x²) + ε) of the head vector at element `src` of A.
fn rms_scale(src: u32) -> f32 {
    let D = P.head_dim;
    var s = 0.0;
    for (var d = 0u; d < D; d++) { let x = ld_a(src + d); s += x * x; }
    return 1.0 / sqrt(s / f32(D) + P.eps);
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
    rotate(i, rms_scale(i * P.head_dim), true);
}

// joint_qkv: part P.part (0 q, 1 k, 2 v) of one stream's fused projection A [L, 3·H·D] into the
// stream's rows of the joint [L₀ + L₁, H, D] output, one invocation per head vector (P.n = L·H
// of them). q and k are normalised by D = the part's gain, then rotated by B, C where P.rotate,
// as rms_norm_rope computes them; v is copied. OUT's window starts P.out_shift elements before
// the stream's first row (split.rs, `out_at`).
@compute @workgroup_size(ELEMENT_GROUP)
fn joint_qkv(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let D = P.head_dim;
    let l = i / P.heads;
    let src = (l * 3u + P.part) * P.heads * D + (i % P.heads) * D;
    let dst = P.out_shift + i * D;
    if (P.part == 2u) {
        for (var d = 0u; d < D; d++) { OUT[dst + d] = ld_a(src + d); }
        return;
    }
    let r = rms_scale(src);
    if (P.rotate != 0u) {
        rotate_at(src, dst, l, r, true);
        return;
    }
    for (var d = 0u; d < D; d++) { OUT[dst + d] = ld_a(src + d) * r * ld_d(d); }
}
