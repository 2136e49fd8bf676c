// Row-sum reduction for norm.wgsl on any adapter: a tree over ROW_GROUP slots of workgroup memory
// (7 barriers for 64). Called in uniform control flow by the whole workgroup; returns the sums to
// every invocation.
struct Lane {
    // The workgroup is one-dimensional, so x is the invocation's slot.
    @builtin(local_invocation_id) id: vec3<u32>,
}

var<workgroup> red: array<vec2<f32>, ROW_GROUP>;

fn rsum(lane: Lane, v: vec2<f32>) -> vec2<f32> {
    let li = lane.id.x;
    workgroupBarrier(); // earlier readers of `red` are done
    red[li] = v;
    workgroupBarrier();
    for (var s = ROW_GROUP / 2u; s > 0u; s = s >> 1u) {
        if (li < s) { red[li] += red[li + s]; }
        workgroupBarrier();
    }
    return red[0];
}
