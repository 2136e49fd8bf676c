//! Where joyrt keeps what it makes once and reuses across runs (the built-in model, compiled
//! CUDA kernels): `$JOYRT_CACHE_DIR`, else `$XDG_CACHE_HOME/joyrt`, else `~/.cache/joyrt`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The joyrt cache folder for this process's environment (it may not exist yet).
pub fn cache_dir() -> PathBuf {
    cache_dir_in(|name| std::env::var_os(name))
}

/// The cache folder for an environment read through `var`.
fn cache_dir_in(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set("JOYRT_CACHE_DIR") {
        return d;
    }
    if let Some(d) = set("XDG_CACHE_HOME") {
        return d.join("joyrt");
    }
    match set("HOME") {
        Some(h) => h.join(".cache").join("joyrt"),
        None => std::env::temp_dir().join("joyrt-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(vars: &[(&str, &str)]) -> PathBuf {
        cache_dir_in(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn the_first_variable_set_decides() {
        let all = [("JOYRT_CACHE_DIR", "/j"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(dir_with(&all), PathBuf::from("/j"));
        assert_eq!(dir_with(&all[1..]), PathBuf::from("/x/joyrt"));
        assert_eq!(dir_with(&all[2..]), PathBuf::from("/h/.cache/joyrt"));
        assert_eq!(dir_with(&[("JOYRT_CACHE_DIR", ""), ("HOME", "/h")]), PathBuf::from("/h/.cache/joyrt"));
        assert_eq!(dir_with(&[]), std::env::temp_dir().join("joyrt-cache"));
    }
}
