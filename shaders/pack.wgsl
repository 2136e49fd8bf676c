// Stores f32 values X as the output dtype, two 16-bit values per u32 word (one thread per word).
// bf16: round to nearest even on the raw bits (NaN stays a quiet NaN); f16: pack2x16float.
// P[0] = words, P[1] = element count, P[2] = 0 bf16 / 1 f16.
@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;

fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return (b >> 16u) | 0x40u; }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let w = (wg.y * nwg.x + wg.x) * 256u + li;
    if (w >= P[0]) { return; }
    let v0 = X[2u * w];
    var v1 = 0.0;
    if (2u * w + 1u < P[1]) { v1 = X[2u * w + 1u]; }
    if (P[2] == 0u) {
        OUT[w] = bf16_bits(v0) | (bf16_bits(v1) << 16u);
    } else {
        OUT[w] = pack2x16float(vec2<f32>(v0, v1));
    }
}
