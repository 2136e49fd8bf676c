// Row norms, one workgroup of 64 threads per row, statistics in f32.
// P[0] = rows, P[1] = cols, P[2] = eps bits, P[3] = mode (0 LayerNorm, 1 LN-modulate, 2 RMSNorm),
// P[4] = has weight (B), P[5] = has bias (C). LN-modulate: B = shift, C = scale.
// The row sums come from `rsum`, prepended from norm_reduce.wgsl (a workgroup-memory tree, any
// adapter) or norm_reduce_subgroup.wgsl (subgroupAdd, adapters with Features::SUBGROUP); each
// defines the `Lane` input struct with the builtins it needs.

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= P[0]) { return; }
    let li = lane.li;
    let n = P[1];
    let base = row * n;
    var a = 0.0;
    var b = 0.0;
    for (var c = li; c < n; c += 64u) {
        let x = ld_a(base + c);
        a += x;
        b += x * x;
    }
    let s = rsum(lane, vec2<f32>(a, b));
    let eps = bitcast<f32>(P[2]);
    let mean = s.x / f32(n);
    let mode = P[3];
    var scale = 0.0;
    if (mode == 2u) {
        scale = 1.0 / sqrt(s.y / f32(n) + eps);
    } else {
        // Two-pass variance (as the reference) for the LayerNorms.
        var d = 0.0;
        for (var c = li; c < n; c += 64u) {
            let x = ld_a(base + c) - mean;
            d += x * x;
        }
        scale = 1.0 / sqrt(rsum(lane, vec2<f32>(d, 0.0)).x / f32(n) + eps);
    }
    for (var c = li; c < n; c += 64u) {
        let x = ld_a(base + c);
        var y = 0.0;
        if (mode == 2u) {
            y = x * scale * ld_b(c);
        } else if (mode == 1u) {
            y = (x - mean) * scale * (1.0 + ld_c(c)) + ld_b(c);
        } else {
            y = (x - mean) * scale;
            if (P[4] != 0u) { y = y * ld_b(c); }
            if (P[5] != 0u) { y = y + ld_c(c); }
        }
        OUT[base + c] = y;
    }
}
