// Row norms, one workgroup of 64 threads per row, statistics reduced in workgroup memory (f32).
// P[0] = rows, P[1] = cols, P[2] = eps bits, P[3] = mode (0 LayerNorm, 1 LN-modulate, 2 RMSNorm),
// P[4] = has weight (B), P[5] = has bias (C). LN-modulate: B = shift, C = scale.
var<workgroup> s1: array<f32, 64>;
var<workgroup> s2: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= P[0]) { return; }
    let n = P[1];
    let base = row * n;
    var a = 0.0;
    var b = 0.0;
    for (var c = li; c < n; c += 64u) {
        let x = ld_a(base + c);
        a += x;
        b += x * x;
    }
    s1[li] = a;
    s2[li] = b;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (li < s) {
            s1[li] += s1[li + s];
            s2[li] += s2[li + s];
        }
        workgroupBarrier();
    }
    let eps = bitcast<f32>(P[2]);
    let mean = s1[0] / f32(n);
    let mode = P[3];
    var scale = 0.0;
    if (mode == 2u) {
        scale = 1.0 / sqrt(s2[0] / f32(n) + eps);
    }
    // Two-pass variance (as the reference) for the LayerNorms.
    var v = 0.0;
    if (mode != 2u) {
        workgroupBarrier();
        var d = 0.0;
        for (var c = li; c < n; c += 64u) {
            let x = ld_a(base + c) - mean;
            d += x * x;
        }
        s2[li] = d;
        workgroupBarrier();
        for (var s = 32u; s > 0u; s = s >> 1u) {
            if (li < s) { s2[li] += s2[li + s]; }
            workgroupBarrier();
        }
        scale = 1.0 / sqrt(s2[0] / f32(n) + eps);
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
