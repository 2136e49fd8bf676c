// Layout copies, one invocation per output element (P.n of them): f32 output, widened input.

// OUT = A permuted: P.dims are the output dims, P.strides the input strides of the output axes.
@compute @workgroup_size(ELEMENT_GROUP)
fn permute(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    var r = i;
    var src = 0u;
    for (var a = 0u; a < P.rank; a++) {
        let ax = P.rank - 1u - a;
        let d = P.dims[ax];
        src += (r % d) * P.strides[ax];
        r = r / d;
    }
    OUT[i] = ld_a(src);
}

// Rows of P.len elements: OUT[o·dst_width + dst_start + j] = A[o·src_width + src_start + j]
// (slice, a piece of concat, attention's state without its two last columns).
@compute @workgroup_size(ELEMENT_GROUP)
fn copy_rows(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let o = i / P.len;
    let j = i % P.len;
    OUT[o * P.dst_width + P.dst_start + j] = ld_a(o * P.src_width + P.src_start + j);
}

// Nearest ×2 upsampling of A [P.channels, P.height, P.width].
@compute @workgroup_size(ELEMENT_GROUP)
fn upsample_nearest2x(g: Grid) {
    let i = element_index(g);
    if (i >= P.n) { return; }
    let w2 = 2u * P.width;
    let h2 = 2u * P.height;
    let c = i / (h2 * w2);
    let y = (i / w2) % h2;
    let x = i % w2;
    OUT[i] = ld_a((c * P.height + y / 2u) * P.width + x / 2u);
}
