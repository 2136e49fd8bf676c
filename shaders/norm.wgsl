// Norms, statistics in f32.
//
// Row norms over A [P.rows, P.cols]: one workgroup of ROW_GROUP invocations per row. The row sums
// come from `rsum(lane, v)`, prepended by the host from norm_reduce.wgsl (a workgroup-memory tree,
// any adapter) or norm_reduce_subgroup.wgsl (subgroupAdd, adapters with Features::SUBGROUP); each
// defines the `Lane` builtins it needs.
//
// Per-position norms over the channels of channel-first A [P.channels, P.positions], one
// invocation per position: channel_rms_norm (B = gamma) and cfg_renorm (A = cond, B = uncond).

const ROW_GROUP: u32 = 64u;

// The row of a row kernel, read so that WebGPU's uniformity analysis (Tint) sees it as uniform:
// it treats the `Grid` parameter as one value, non-uniform through its invocation index, and
// refuses the reduction's barriers after an early return on a value derived from it.
var<workgroup> row_slot: u32;

fn uniform_row(g: Grid) -> u32 {
    if (g.li == 0u) { row_slot = group_index(g); }
    return workgroupUniformLoad(&row_slot);
}

// Σx and Σx² over the row starting at `base`, summed across the workgroup.
fn row_sums(g: Grid, lane: Lane, base: u32) -> vec2<f32> {
    var a = 0.0;
    var b = 0.0;
    for (var c = g.li; c < P.cols; c += ROW_GROUP) {
        let x = ld_a(base + c);
        a += x;
        b += x * x;
    }
    return rsum(lane, vec2<f32>(a, b));
}

// layer_norm and layer_norm_modulate: x̂·(P.weight_offset + B[c]) + C[c] with
// x̂ = (x − mean)/√(var + eps), the variance in a second pass (as the reference); the factor and
// the term are left out without P.has_weight / P.has_bias.
@compute @workgroup_size(ROW_GROUP)
fn layer_norm(g: Grid, lane: Lane) {
    let row = uniform_row(g);
    if (row >= P.rows) { return; }
    let base = row * P.cols;
    let n = f32(P.cols);
    let mean = row_sums(g, lane, base).x / n;
    var d = 0.0;
    for (var c = g.li; c < P.cols; c += ROW_GROUP) {
        let x = ld_a(base + c) - mean;
        d += x * x;
    }
    let rstd = 1.0 / sqrt(rsum(lane, vec2<f32>(d, 0.0)).x / n + P.eps);
    for (var c = g.li; c < P.cols; c += ROW_GROUP) {
        var y = (ld_a(base + c) - mean) * rstd;
        if (P.has_weight != 0u) { y = y * (P.weight_offset + ld_b(c)); }
        if (P.has_bias != 0u) { y = y + ld_c(c); }
        OUT[base + c] = y;
    }
}

// x/√(mean(x²) + eps)·B[c].
@compute @workgroup_size(ROW_GROUP)
fn rms_norm(g: Grid, lane: Lane) {
    let row = uniform_row(g);
    if (row >= P.rows) { return; }
    let base = row * P.cols;
    let scale = 1.0 / sqrt(row_sums(g, lane, base).y / f32(P.cols) + P.eps);
    for (var c = g.li; c < P.cols; c += ROW_GROUP) {
        OUT[base + c] = ld_a(base + c) * scale * ld_b(c);
    }
}

// channel_rms_norm: x·√C/max(‖x‖, 1e-12)·gamma over the C channels at each position, in two
// passes over channel ranges [P.c_lo, P.c_hi) so that a tensor past the binding limit is bound a
// range of channels at a time (A holds x from channel c_lo on; one range when it fits):
// channel_sum_squares accumulates Σx² per position into OUT [positions] (P.resume: add to it),
// channel_rms_scale writes the range's channels, with B = gamma and C = the sums.
@compute @workgroup_size(ELEMENT_GROUP)
fn channel_sum_squares(g: Grid) {
    let i = element_index(g);
    if (i >= P.positions) { return; }
    var s = 0.0;
    if (P.resume != 0u) { s = OUT[i]; }
    for (var c = 0u; c < P.c_hi - P.c_lo; c++) { let x = ld_a(c * P.positions + i); s += x * x; }
    OUT[i] = s;
}

@compute @workgroup_size(ELEMENT_GROUP)
fn channel_rms_scale(g: Grid) {
    let i = element_index(g);
    if (i >= P.positions) { return; }
    let k = sqrt(f32(P.channels)) / max(sqrt(ld_c(i)), 1e-12);
    for (var c = 0u; c < P.c_hi - P.c_lo; c++) {
        let j = c * P.positions + i;
        OUT[j] = ld_a(j) * k * ld_b(P.c_lo + c);
    }
}

// v = uncond + guidance·(cond − uncond), rescaled to the norm of cond over the channels.
@compute @workgroup_size(ELEMENT_GROUP)
fn cfg_renorm(g: Grid) {
    let i = element_index(g);
    if (i >= P.positions) { return; }
    let C = P.channels;
    let np = P.positions;
    let gs = P.guidance;
    var nc = 0.0;
    var ng = 0.0;
    for (var c = 0u; c < C; c++) {
        let cv = ld_a(c * np + i);
        let uv = ld_b(c * np + i);
        let v = uv + gs * (cv - uv);
        nc += cv * cv;
        ng += v * v;
    }
    let s = sqrt(nc) / max(sqrt(ng), 1e-6);
    for (var c = 0u; c < C; c++) {
        let cv = ld_a(c * np + i);
        let uv = ld_b(c * np + i);
        OUT[c * np + i] = (uv + gs * (cv - uv)) * s;
    }
}
