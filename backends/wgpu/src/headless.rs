//! Keeping a headless machine's stderr free of a Vulkan layer's display probe.
//!
//! Mesa ships an implicit Vulkan layer, `VK_LAYER_MESA_device_select`, with lavapipe and its GPU
//! drivers. It puts the GPU that drives the display first, and to find it, it connects to the
//! Wayland compositor whenever an instance enables `VK_KHR_wayland_surface`, which wgpu always
//! does. Without `XDG_RUNTIME_DIR` that connection attempt prints
//! `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on every adapter probe, even
//! when everything works. On a machine with no display at all there is no display GPU to find,
//! so the layer can be turned off there (its documented switch, `NODEVICE_SELECT=1`) without
//! changing which adapter wgpu picks.

use std::ffi::OsString;
use std::path::Path;

/// Whether the `device_select` layer would print the Wayland error and has nothing to find:
/// no display (neither Wayland nor X11), no usable `XDG_RUNTIME_DIR`, and no device-selection
/// setting of the user's (`NODEVICE_SELECT`, `MESA_VK_DEVICE_SELECT`, `DRI_PRIME`).
fn device_select_is_pointless(var: impl Fn(&str) -> Option<OsString>) -> bool {
    let user_choice =
        ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT", "DRI_PRIME"].iter().any(|v| var(v).is_some());
    let display = ["WAYLAND_DISPLAY", "DISPLAY"].iter().any(|v| var(v).is_some_and(|s| !s.is_empty()));
    let runtime_dir = var("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_dir());
    !user_choice && !display && !runtime_dir
}

/// Turns Mesa's `device_select` layer off where it can only fail noisily (see the module doc);
/// returns whether it did. It sets an environment variable, so call it at the start of `main`,
/// before any thread exists and before the first [`crate::WgpuBackend`] is opened.
pub fn quiet_headless_device_select() -> bool {
    let off = device_select_is_pointless(|v| std::env::var_os(v));
    if off {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(vars: &[(&str, &str)]) -> bool {
        device_select_is_pointless(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn only_a_headless_machine_without_runtime_dir_or_user_setting() {
        assert!(decide(&[]));
        assert!(decide(&[("XDG_RUNTIME_DIR", "/nonexistent/runtime")]));
        assert!(decide(&[("DISPLAY", "")]));
        let tmp = std::env::temp_dir();
        assert!(!decide(&[("XDG_RUNTIME_DIR", tmp.to_str().unwrap())]));
        assert!(!decide(&[("WAYLAND_DISPLAY", "wayland-0")]));
        assert!(!decide(&[("DISPLAY", ":0")]));
        assert!(!decide(&[("MESA_VK_DEVICE_SELECT", "10de:2330")]));
        assert!(!decide(&[("DRI_PRIME", "1")]));
        assert!(!decide(&[("NODEVICE_SELECT", "0")]));
    }
}
