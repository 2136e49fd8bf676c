// Direct 2-D convolution, one invocation per output element, zero padding by bounds checks.
// A = x [C, H, W], B = w [O, C, KH, KW], C = bias [O] (when P.has_bias).
@compute @workgroup_size(ELEMENT_GROUP)
fn conv2d(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let C = P.channels; let H = P.height; let W = P.width; let KH = P.kernel_h; let KW = P.kernel_w;
    let Ho = P.out_height; let Wo = P.out_width;
    let o = i / (Ho * Wo);
    let y = (i / Wo) % Ho;
    let x = i % Wo;
    var acc = 0.0;
    if (P.has_bias != 0u) { acc = ld_c(o); }
    for (var c = 0u; c < C; c++) {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(y * P.stride + ky) - i32(P.pad_top);
            if (iy < 0 || iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(x * P.stride + kx) - i32(P.pad_left);
                if (ix < 0 || ix >= i32(W)) { continue; }
                acc += ld_b(((o * C + c) * KH + ky) * KW + kx) * ld_a((c * H + u32(iy)) * W + u32(ix));
            }
        }
    }
    OUT[i] = acc;
}
