//! Running third-party code that can panic on malformed input (the `tokenizers` crate on a corrupt
//! `tokenizer.json`) so that the panic becomes an error message instead of an exit.
//!
//! The panic hook would still print "thread 'main' panicked at …" with a backtrace hint. The hook
//! is process-wide, so rather than swapping it around each call (which would race with other
//! threads), one hook is installed once, chained to whatever hook was there before: it stays
//! silent only while the panicking thread is inside [`contain`], and defers to the previous hook
//! otherwise, so every other panic prints as before.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How deep the current thread is inside [`contain`] calls.
    static CONTAINED: Cell<usize> = const { Cell::new(0) };
}

fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it (on this thread) is returned as `Err` with the panic's message and
/// is not printed. `f` must not be relied on afterwards for state it was mutating when it
/// panicked (callers here only pass shared references to immutable tokenizers).
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    CONTAINED.with(|c| c.set(c.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_values_pass_through() {
        assert_eq!(contain(|| 7), Ok(7));
        assert_eq!(contain(|| -> u8 { panic!("bad prefix {}", 3) }), Err("bad prefix 3".to_string()));
        assert_eq!(contain(|| -> u8 { panic!("static") }), Err("static".to_string()));
        // Nesting keeps the outer call contained.
        assert_eq!(contain(|| contain(|| -> u8 { panic!("inner") }).unwrap_err()), Ok("inner".into()));
        assert_eq!(CONTAINED.with(Cell::get), 0);
    }
}
