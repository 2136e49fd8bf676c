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
// P.groups_n = workgroups along N in this dispatch. P.row_len = the length of a weight row in the
// bound buffer's elements (K dense, P.row_words quantized): chunk ranges count those elements.
//
// linear_quantized: the same kernel with B holding a quantized weight's packed u32 words
// (joyrt-core's quant module: code k of row n is bits (k % per)·bits of word n·W + k / per) and D
// its f32 scales [N, S]; each code is decoded into the shared tile as decode(q)·scale, one f32
// multiply, exactly as the CPU reference dequantizes. C is the bias in both.
var<workgroup> ta: array<array<f32, 17>, 64>;
var<workgroup> tb: array<array<f32, 17>, 64>;

// The dequantized weight element (n, k) of a linear_quantized weight (P.format: QUANT_INT8,
// QUANT_INT4 or QUANT_FP8), 0 where the bound chunk does not hold its word.
fn ld_q(n: u32, k: u32) -> f32 {
    var bits = 8u;
    if (P.format == QUANT_INT4) { bits = 4u; }
    let per = 32u / bits;
    let g = n * P.row_len + k / per;
    if (g < P.e0 || g >= P.e1) { return 0.0; }
    let c = (B[g - P.e0] >> ((k % per) * bits)) & ((1u << bits) - 1u);
    var v: f32;
    if (P.format == QUANT_INT8) {
        v = f32(bitcast<i32>(c << 24u) >> 24u);
    } else if (P.format == QUANT_INT4) {
        v = f32(i32(c) - 8);
    } else {
        v = e4m3_to_f32(c);
    }
    return v * ld_d(n * P.scales_per_row + k / P.block);
}

// The value of an FP8 E4M3 code (e4m3fn: bias 7, subnormals m·2⁻⁹, 0x7f/0xff NaN), exactly.
fn e4m3_to_f32(c: u32) -> f32 {
    let sign = (c & 0x80u) << 24u;
    let e = (c >> 3u) & 0xfu;
    let m = c & 7u;
    if (e == 0u) { return bitcast<f32>(bitcast<u32>(f32(m) * 0.001953125) | sign); }
    if (e == 15u && m == 7u) { return bitcast<f32>(0x7fc00000u | sign); }
    return bitcast<f32>(sign | ((e + 120u) << 23u) | (m << 20u));
}

@compute @workgroup_size(16, 16)
fn linear(g: Grid) {
    gemm(g, false);
}

@compute @workgroup_size(16, 16)
fn linear_quantized(g: Grid) {
    gemm(g, true);
}

fn gemm(g: Grid, quantized: bool) {
    let M = P.m;
    let K = P.k;
    let N = P.n;
    let tile = group_index(g);
    let m0 = (tile / P.groups_n) * 64u;
    let n0 = P.n_lo + (tile % P.groups_n) * 64u;
    let nhi = P.n_hi;
    let e0 = P.e0;
    let e1 = P.e1;
    let rl = P.row_len;
    let t = g.li;
    let lid = vec2<u32>(t % 16u, t / 16u);
    var acc: array<array<f32, 4>, 4>;
    for (var u = 0u; u < 4u; u++) {
        for (var v = 0u; v < 4u; v++) {
            let m = m0 + lid.y * 4u + u;
            let n = n0 + lid.x * 4u + v;
            let fresh = P.k0 == 0u && n * rl >= e0;
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
            if (quantized) {
                if (n0 + r < nhi && k < kend) { vb = ld_q(n0 + r, k); }
            } else {
                let g = (n0 + r) * K + k;
                if (n0 + r < nhi && k < kend && g >= e0 && g < e1) { vb = ld_b(g - e0); }
            }
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
                if (P.has_bias != 0u && P.k1 == K && (n + 1u) * rl <= e1) { r += ld_c(n); }
                OUT[m * N + n] = r;
            }
        }
    }
}
