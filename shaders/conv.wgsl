// Direct 2-D convolution, one thread per output element, zero padding by bounds checks.
// A = x [C, H, W], B = w [O, C, KH, KW], D = bias. P[2] = C, P[3] = H, P[4] = W, P[5] = KH, P[6] = KW,
// P[7] = stride, P[8] = pad top, P[9] = pad left, P[10] = out H, P[11] = out W, P[12] = has bias.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if (i >= P[0]) { return; }
    let C = P[2]; let H = P[3]; let W = P[4]; let KH = P[5]; let KW = P[6];
    let Ho = P[10]; let Wo = P[11];
    let o = i / (Ho * Wo);
    let y = (i / Wo) % Ho;
    let x = i % Wo;
    var acc = 0.0;
    if (P[12] != 0u) { acc = ld_d(o); }
    for (var c = 0u; c < C; c++) {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(y * P[7] + ky) - i32(P[8]);
            if (iy < 0 || iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(x * P[7] + kx) - i32(P[9]);
                if (ix < 0 || ix >= i32(W)) { continue; }
                acc += ld_b(((o * C + c) * KH + ky) * KW + kx) * ld_a((c * H + u32(iy)) * W + u32(ix));
            }
        }
    }
    OUT[i] = acc;
}
