// Prepended to every kernel, after the op codes, ELEMENT_GROUP, the parameter struct `P`, the
// bindings and the loaders `ld_a`..`ld_d` that the host generates (backends/wgpu/src/dispatch.rs).

// The builtins that place an invocation in the grid.
struct Grid {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

// The workgroup's index in a 1-D grid (the host folds grids past the per-dimension limit into y).
fn group_index(g: Grid) -> u32 {
    return g.wg.y * g.nwg.x + g.wg.x;
}

// The invocation's index in a kernel of @workgroup_size(ELEMENT_GROUP), one invocation per element.
fn element_index(g: Grid) -> u32 {
    return group_index(g) * ELEMENT_GROUP + g.li;
}
