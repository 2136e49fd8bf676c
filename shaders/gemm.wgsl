// linear: OUT[m, n] = Σ_k A[m, k]·B[n, k] + C[n]. Workgroup 16×16 computes a 64×64 tile, each
// invocation a 4×4 block held in registers; K advances in steps of 16 through workgroup-memory
// tiles of A and B (both read along K, B in its stored [N, K] layout). f32 accumulation.
// K is split into chunks [P.k0, P.k1), one dispatch each, accumulating in OUT (software adapters
// cap the loop iterations of one invocation at 65535).
// A weight larger than the storage binding limit is split into chunks of whole words (not rows);
// one dispatch per (weight chunk, K chunk). B holds weight elements [P.e0, P.e1) only: loads
// outside it read 0, the dispatch covers the rows [P.n_lo, P.n_hi) the chunk touches, and a row
// split between two chunks gets its partial sums accumulated in OUT like a K chunk's. An output
// element is written fresh by its first contribution (K chunk 0 of the chunk holding its row's
// start, so n·K ≥ e0) and gets the bias from the last (last K chunk of the chunk holding its row's
// end, (n+1)·K ≤ e1). Unsplit weights have e0 = 0, e1 = N·K and the whole N range.
// P.groups_n = workgroups along N in this dispatch.
var<workgroup> ta: array<array<f32, 17>, 64>;
var<workgroup> tb: array<array<f32, 17>, 64>;

@compute @workgroup_size(16, 16)
fn linear(g: Grid) {
    let M = P.m;
    let K = P.k;
    let N = P.n;
    let tile = group_index(g);
    let m0 = (tile / P.groups_n) * 64u;
    let n0 = P.n_lo + (tile % P.groups_n) * 64u;
    let nhi = P.n_hi;
    let e0 = P.e0;
    let e1 = P.e1;
    let t = g.li;
    let lid = vec2<u32>(t % 16u, t / 16u);
    var acc: array<array<f32, 4>, 4>;
    for (var u = 0u; u < 4u; u++) {
        for (var v = 0u; v < 4u; v++) {
            let m = m0 + lid.y * 4u + u;
            let n = n0 + lid.x * 4u + v;
            let fresh = P.k0 == 0u && n * K >= e0;
            if (m < M && n < nhi && !fresh) { acc[u][v] = OUT[m * N + n]; }
        }
    }
    let kend = P.k1;
    for (var k0 = P.k0; k0 < kend; k0 += 16u) {
        // 256 invocations load 64×16 of A and of B: 4 elements each.
        for (var e = 0u; e < 4u; e++) {
            let idx = t * 4u + e;
            let r = idx / 16u;
            let c = idx % 16u;
            let k = k0 + c;
            var va = 0.0;
            var vb = 0.0;
            if (m0 + r < M && k < kend) { va = ld_a((m0 + r) * K + k); }
            let g = (n0 + r) * K + k;
            if (n0 + r < nhi && k < kend && g >= e0 && g < e1) { vb = ld_b(g - e0); }
            ta[r][c] = va;
            tb[r][c] = vb;
        }
        workgroupBarrier();
        // Each 16-wide K tile is summed on its own and then added, so rounding grows with
        // K/16 + 16 terms rather than one chain of K (close to the reference's blocked sums).
        // Zeroed by hand: Chromium's WebGPU (Tint on SwiftShader) does not re-zero a `var`
        // declared without an initializer each time its declaration runs in a loop.
        var part: array<array<f32, 4>, 4>;
        for (var u = 0u; u < 4u; u++) {
            for (var v = 0u; v < 4u; v++) {
                part[u][v] = 0.0;
            }
        }
        for (var c = 0u; c < 16u; c++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var u = 0u; u < 4u; u++) {
                a[u] = ta[lid.y * 4u + u][c];
                b[u] = tb[lid.x * 4u + u][c];
            }
            for (var u = 0u; u < 4u; u++) {
                for (var v = 0u; v < 4u; v++) {
                    part[u][v] += a[u] * b[v];
                }
            }
        }
        for (var u = 0u; u < 4u; u++) {
            for (var v = 0u; v < 4u; v++) {
                acc[u][v] += part[u][v];
            }
        }
        workgroupBarrier();
    }
    for (var u = 0u; u < 4u; u++) {
        let m = m0 + lid.y * 4u + u;
        for (var v = 0u; v < 4u; v++) {
            let n = n0 + lid.x * 4u + v;
            if (m < M && n < nhi) {
                var r = acc[u][v];
                if (P.has_bias != 0u && P.k1 == K && (n + 1u) * K <= e1) { r += ld_c(n); }
                OUT[m * N + n] = r;
            }
        }
    }
}
