// Attention, one invocation per (query, head): online softmax over the keys (running max and sum,
// f32), so no score matrix exists anywhere; the query row and the output accumulator live in
// registers, arrays of MAX_D (a specialisation constant, a bound on the head dim).
// Keys are processed in chunks [P.key_start, P.key_end), one dispatch each, with the running state
// (acc[D], max, sum) kept in OUT between dispatches (row stride D + 2): software adapters
// (llvmpipe) cap the loop iterations of one invocation at 65535, and long sequences would exceed it.
// A = q [Lq, Hq, D], B = k, C = v [Lk, Hkv, D]. Causal: key j is visible to query i iff
// j ≤ i + Lk − Lq. The last chunk normalises and leaves the state columns unused.

const QUERY_GROUP: u32 = 64u;

@compute @workgroup_size(QUERY_GROUP)
fn attention(g: Grid) {
    let t = group_index(g) * QUERY_GROUP + g.li;
    if (t >= P.threads) { return; }
    let Lq = P.q_len;
    let Lk = P.kv_len;
    let Hq = P.q_heads;
    let Hkv = P.kv_heads;
    let D = P.head_dim;
    let i = t / Hq;
    let h = t % Hq;
    let kh = h / (Hq / Hkv);
    let base = t * (D + 2u);
    var q: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    var mx = -3.0e38;
    var sum = 0.0;
    for (var d = 0u; d < D; d++) { q[d] = ld_a(t * D + d) * P.scale; acc[d] = 0.0; }
    if (P.first_chunk == 0u) {
        for (var d = 0u; d < D; d++) { acc[d] = OUT[base + d]; }
        mx = OUT[base + D];
        sum = OUT[base + D + 1u];
    }
    var visible = Lk;
    if (P.causal != 0u) { visible = min(i + Lk - Lq + 1u, Lk); }
    let end = min(visible, P.key_end);
    for (var j = P.key_start; j < end; j++) {
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
    if (P.last_chunk != 0u) {
        for (var d = 0u; d < D; d++) { OUT[base + d] = acc[d] / sum; }
    } else {
        for (var d = 0u; d < D; d++) { OUT[base + d] = acc[d]; }
        OUT[base + D] = mx;
        OUT[base + D + 1u] = sum;
    }
}
