// Direct 2-D convolution, one invocation per output element, zero padding by bounds checks.
// A = x [C, H, W], B = w [O, C, KH, KW], C = bias [O] (when P.has_bias).
// Past the binding limit the host splits the work (ops/conv.rs): OUT holds the output elements
// from P.out_start on, and A the input channels [P.c_lo, P.c_hi) that this dispatch sums; a
// dispatch after the first channel range resumes from the partial sum in OUT (P.resume), so the
// f32 additions are the same, in the same order, as in one dispatch over all channels.
@compute @workgroup_size(ELEMENT_GROUP)
fn conv2d(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let H = P.input[1]; let W = P.input[2];
    let C = P.input[0];
    let KH = P.kernel[0]; let KW = P.kernel[1];
    let Ho = P.output[0]; let Wo = P.output[1];
    let e = P.out_start + i;
    let o = e / (Ho * Wo);
    let y = (e / Wo) % Ho;
    let x = e % Wo;
    var acc = 0.0;
    if (P.resume != 0u) { acc = OUT[i]; } else if (P.has_bias != 0u) { acc = ld_c(o); }
    for (var c = P.c_lo; c < P.c_hi; c++) {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(y * P.stride + ky) - i32(P.pad[0]);
            if (iy < 0 || iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(x * P.stride + kx) - i32(P.pad[1]);
                if (ix < 0 || ix >= i32(W)) { continue; }
                acc += ld_b(((o * C + c) * KH + ky) * KW + kx) * ld_a(((c - P.c_lo) * H + u32(iy)) * W + u32(ix));
            }
        }
    }
    OUT[i] = acc;
}
