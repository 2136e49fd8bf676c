// Layout copies, one thread per output element (f32 output, widened input).
// Op 0 permute: P[2] = rank, P[3..9] = output dims, P[9..15] = input strides of the output axes.
// Op 1 slice/concat piece: out[o·out_inner + off + j] = A[o·inner + start + j] for j < len;
//   P[2] = len, P[3] = inner, P[4] = start, P[5] = out_inner, P[6] = off.
// Op 2 nearest ×2 upsample: P[2] = C, P[3] = H, P[4] = W (input).
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if (i >= P[0]) { return; }
    switch P[1] {
        case 0u: {
            let rank = P[2];
            var r = i;
            var src = 0u;
            for (var a = 0u; a < rank; a++) {
                let ax = rank - 1u - a;
                let d = P[3u + ax];
                src += (r % d) * P[9u + ax];
                r = r / d;
            }
            OUT[i] = ld_a(src);
        }
        case 1u: {
            let o = i / P[2];
            let j = i % P[2];
            OUT[o * P[5] + P[6] + j] = ld_a(o * P[3] + P[4] + j);
        }
        default: {
            let w2 = 2u * P[4];
            let h2 = 2u * P[3];
            let c = i / (h2 * w2);
            let y = (i / w2) % h2;
            let x = i % w2;
            OUT[i] = ld_a((c * P[3] + y / 2u) * P[4] + x / 2u);
        }
    }
}
