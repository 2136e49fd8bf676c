//! Host-side code against the golden fixtures: scheduler tables, buckets and resizing, tokenizers.
//! Backend-independent, so checked once here rather than per backend.

#[test]
fn host_tables_match_the_reference() {
    let mut report = joyrt_conformance::Report::new("host");
    joyrt_conformance::networks::host_tables(&joyrt_conformance::fixtures_dir(), &mut report);
    joyrt_conformance::finish(&report);
}
