// Row-sum reduction for norm.wgsl with subgroup operations (needs Features::SUBGROUP; WGSL must not
// say `enable subgroups;`, naga 30 rejects it): subgroupAdd within each subgroup, one slot per
// subgroup in workgroup memory, then every invocation adds the slots (2 barriers instead of 7).
// Works for any subgroup size: lavapipe's 8, 32 on NVIDIA, 64 on AMD, or one subgroup for the
// workgroup.
struct Lane {
    @builtin(subgroup_invocation_id) sl: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) ns: u32,
}

var<workgroup> red: array<vec2<f32>, ROW_GROUP>;

fn rsum(lane: Lane, v: vec2<f32>) -> vec2<f32> {
    let s = subgroupAdd(v);
    workgroupBarrier(); // earlier readers of `red` are done
    if (lane.sl == 0u) { red[lane.sid] = s; }
    workgroupBarrier();
    var t = vec2<f32>(0.0);
    for (var k = 0u; k < lane.ns; k++) { t += red[k]; }
    return t;
}
