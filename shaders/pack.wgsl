// Stores f32 values A as the output dtype, two 16-bit values per u32 word of OUT (one invocation
// per word; the high half of the last word is zero when the element count is odd).
// bf16: round to nearest even on the raw bits (NaN stays a quiet NaN); f16: pack2x16float.

fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return (b >> 16u) | 0x40u; }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// The two values of word `w`.
fn pair(w: u32) -> vec2<f32> {
    var v1 = 0.0;
    if (2u * w + 1u < P.len) { v1 = ld_a(2u * w + 1u); }
    return vec2<f32>(ld_a(2u * w), v1);
}

@compute @workgroup_size(ELEMENT_GROUP)
fn pack_bf16(g: Grid) {
    let w = element_index(g);
    if (w >= P.words) { return; }
    let v = pair(w);
    OUT[w] = bf16_bits(v.x) | (bf16_bits(v.y) << 16u);
}

@compute @workgroup_size(ELEMENT_GROUP)
fn pack_f16(g: Grid) {
    let w = element_index(g);
    if (w >= P.words) { return; }
    OUT[w] = pack2x16float(pair(w));
}
