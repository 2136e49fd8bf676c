// Direct 2-D convolution, one invocation per output element, zero padding by bounds checks.
// A = x [C, H, W], B = w [O, C, KH, KW], C = bias [O] (when P.has_bias).
@compute @workgroup_size(ELEMENT_GROUP)
fn conv2d(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let C = P.input[0]; let H = P.input[1]; let W = P.input[2];
    let KH = P.kernel[0]; let KW = P.kernel[1];
    let Ho = P.output[0]; let Wo = P.output[1];
    let o = i / (Ho * Wo);
    let y = (i / Wo) % Ho;
    let x = i % Wo;
    var acc = 0.0;
    if (P.has_bias != 0u) { acc = ld_c(o); }
    for (var c = 0u; c < C; c++) {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(y * P.stride + ky) - i32(P.pad[0]);
            if (iy < 0 || iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(x * P.stride + kx) - i32(P.pad[1]);
                if (ix < 0 || ix >= i32(W)) { continue; }
                acc += ld_b(((o * C + c) * KH + ky) * KW + kx) * ld_a((c * H + u32(iy)) * W + u32(ix));
            }
        }
    }
    OUT[i] = acc;
}
