// Per-position and per-head ops, one thread per position / (token, head) / output element.
// Op 0 channel RMS norm over A [C, P]: P[2] = C, P[3] = positions (threads = positions).
// Op 1 rope / rms_norm_rope on A [L, H, D] with f32 tables B = cos, C = sin [L, D/2], D = weight:
//   P[2] = H, P[3] = D, P[4] = pairing (0 interleaved, 1 half-split), P[5] = normalise, P[6] = eps.
// Op 2 cfg renorm of A = cond, B = uncond [C, P]: P[2] = C, P[3] = positions, P[4] = guidance bits.
// Op 3 gather: OUT[n, c] = Σ_t W[n·T + t]·A[I[n·T + t], c]; B = indices (u32), C = weights (f32);
//   P[2] = cols, P[3] = taps, P[4] = has weights, P[5], P[6] = elements [e0, e1) of the table that A
//   holds, P[7] = first dispatch. A table past the binding limit comes in chunks (whole words, rows
//   may straddle two): one dispatch per chunk, each adding the taps whose element it holds, the
//   first writing OUT fresh. Unsplit tables: e0 = 0, e1 = all, one dispatch, the taps in order.
// Op 4 scatter rows into OUT (already a copy of dst): B = rows (u32), A = src [N, C]: P[2] = cols, P[3] = add.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if (i >= P[0]) { return; }
    switch P[1] {
        case 0u: {
            let C = P[2];
            let np = P[3];
            var s = 0.0;
            for (var c = 0u; c < C; c++) { let x = ld_a(c * np + i); s += x * x; }
            let k = sqrt(f32(C)) / max(sqrt(s), 1e-12);
            for (var c = 0u; c < C; c++) { OUT[c * np + i] = ld_a(c * np + i) * k * ld_b(c); }
        }
        case 1u: {
            let H = P[2];
            let D = P[3];
            let half = D / 2u;
            let l = i / H;
            let base = i * D;
            var r = 1.0;
            if (P[5] != 0u) {
                var s = 0.0;
                for (var d = 0u; d < D; d++) { let x = ld_a(base + d); s += x * x; }
                r = 1.0 / sqrt(s / f32(D) + bitcast<f32>(P[6]));
            }
            for (var m = 0u; m < half; m++) {
                var p = 2u * m;
                var q = 2u * m + 1u;
                if (P[4] == 1u) { p = m; q = m + half; }
                var x1 = ld_a(base + p);
                var x2 = ld_a(base + q);
                if (P[5] != 0u) { x1 = x1 * r * ld_d(p); x2 = x2 * r * ld_d(q); }
                let co = ld_b(l * half + m);
                let si = ld_c(l * half + m);
                OUT[base + p] = x1 * co - x2 * si;
                OUT[base + q] = x2 * co + x1 * si;
            }
        }
        case 2u: {
            let C = P[2];
            let np = P[3];
            let g = bitcast<f32>(P[4]);
            var nc = 0.0;
            var ng = 0.0;
            for (var c = 0u; c < C; c++) {
                let cv = ld_a(c * np + i);
                let uv = ld_b(c * np + i);
                let v = uv + g * (cv - uv);
                nc += cv * cv;
                ng += v * v;
            }
            let s = sqrt(nc) / max(sqrt(ng), 1e-6);
            for (var c = 0u; c < C; c++) {
                let cv = ld_a(c * np + i);
                let uv = ld_b(c * np + i);
                OUT[c * np + i] = (uv + g * (cv - uv)) * s;
            }
        }
        case 3u: {
            let cols = P[2];
            let T = P[3];
            let n = i / cols;
            let c = i % cols;
            var acc = 0.0;
            for (var t = 0u; t < T; t++) {
                let g = B[n * T + t] * cols + c;
                if (g < P[5] || g >= P[6]) { continue; }
                var w = 1.0;
                if (P[4] != 0u) { w = bitcast<f32>(C[n * T + t]); }
                acc += w * ld_a(g - P[5]);
            }
            if (P[7] != 0u) { OUT[i] = acc; } else { OUT[i] = OUT[i] + acc; }
        }
        default: {
            let cols = P[2];
            let n = i / cols;
            let c = i % cols;
            let o = B[n] * cols + c;
            if (P[3] != 0u) { OUT[o] = OUT[o] + ld_a(i); } else { OUT[o] = ld_a(i); }
        }
    }
}
