// Attention, one thread per (query, head): online softmax over the keys (running max and sum, f32),
// so no score matrix exists anywhere; the query row and the output accumulator live in registers.
// Keys are processed in chunks, one dispatch each, with the running state (acc[D], max, sum) kept in
// OUT between dispatches (row stride D + 2): software adapters (llvmpipe) cap the loop iterations
// of one invocation at 65535, and long sequences would exceed it.
// A = q [Lq, Hq, D], B = k, C = v [Lk, Hkv, D]. P[2] = Lq, P[3] = Lk, P[4] = Hq, P[5] = Hkv, P[6] = D,
// P[7] = scale bits, P[8] = causal (key j visible to query i iff j ≤ i + Lk − Lq),
// P[9], P[10] = key range of this chunk, P[11] = first chunk, P[12] = last chunk (normalise).
// The host specialises the private arrays' length (128 here) to the head dim's bound (128 or 512).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = (wg.y * nwg.x + wg.x) * 64u + li;
    if (t >= P[0]) { return; }
    let Lq = P[2];
    let Lk = P[3];
    let Hq = P[4];
    let Hkv = P[5];
    let D = P[6];
    let scale = bitcast<f32>(P[7]);
    let i = t / Hq;
    let h = t % Hq;
    let kh = h / (Hq / Hkv);
    let base = t * (D + 2u);
    var q: array<f32, 128>;
    var acc: array<f32, 128>;
    var mx = -3.0e38;
    var sum = 0.0;
    for (var d = 0u; d < D; d++) { q[d] = ld_a(t * D + d) * scale; acc[d] = 0.0; }
    if (P[11] == 0u) {
        for (var d = 0u; d < D; d++) { acc[d] = OUT[base + d]; }
        mx = OUT[base + D];
        sum = OUT[base + D + 1u];
    }
    var visible = Lk;
    if (P[8] != 0u) { visible = min(i + Lk - Lq + 1u, Lk); }
    let end = min(visible, P[10]);
    for (var j = P[9]; j < end; j++) {
        let kb = (j * Hkv + kh) * D;
        var s = 0.0;
        for (var d = 0u; d < D; d++) { s += q[d] * ld_b(kb + d); }
        let nm = max(mx, s);
        let corr = exp(mx - nm);
        let p = exp(s - nm);
        sum = sum * corr + p;
        for (var d = 0u; d < D; d++) { acc[d] = acc[d] * corr + p * ld_c(kb + d); }
        mx = nm;
    }
    if (P[12] != 0u) {
        for (var d = 0u; d < D; d++) { OUT[base + d] = acc[d] / sum; }
    } else {
        for (var d = 0u; d < D; d++) { OUT[base + d] = acc[d]; }
        OUT[base + D] = mx;
        OUT[base + D + 1u] = sum;
    }
}
