// Row-sum reduction for norm.wgsl on any adapter: a tree over 64 slots of workgroup memory
// (7 barriers). Called in uniform control flow by all 64 threads; returns the sums to all of them.
struct Lane {
    @builtin(local_invocation_index) li: u32,
}

var<workgroup> red: array<vec2<f32>, 64>;

fn rsum(lane: Lane, v: vec2<f32>) -> vec2<f32> {
    workgroupBarrier(); // earlier readers of `red` are done
    red[lane.li] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane.li < s) { red[lane.li] += red[lane.li + s]; }
        workgroupBarrier();
    }
    return red[0];
}
