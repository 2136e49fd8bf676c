//! The prompt and the negative prompt of `joyrt edit`, inline or from a file.
//!
//! A file lifts the OS limit on argument length and keeps quoting out of the way. It is read as
//! `--prompt "$(cat FILE)"` would read it: UTF-8, trailing line breaks removed (and a leading
//! byte-order mark). Chat-template special tokens in either prompt are ordinary text (see
//! `joyrt_core::prompt`).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// The largest prompt file read. The DiT keeps at most 4096 text tokens and the longest token of
/// the Qwen vocabulary is 128 bytes, so a longer prompt can never be used; twice that leaves room
/// for text that normalisation shortens.
pub const MAX_PROMPT_FILE_BYTES: u64 = 1 << 20;

#[derive(Args)]
pub struct PromptArgs {
    /// The edit instruction.
    #[arg(long, required_unless_present = "prompt_file", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the edit instruction from a UTF-8 text file (at most 1 MiB; trailing line breaks are
    /// removed), instead of --prompt.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Negative prompt for classifier-free guidance (default: empty).
    #[arg(long, conflicts_with = "negative_prompt_file")]
    pub negative_prompt: Option<String>,
    /// Read the negative prompt from a UTF-8 text file, as --prompt-file.
    #[arg(long, value_name = "FILE")]
    pub negative_prompt_file: Option<PathBuf>,
}

impl PromptArgs {
    /// `(prompt, negative prompt)`; an error names which of the two it is about.
    pub fn resolve(&self) -> Result<(String, String)> {
        let prompt = match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => read_prompt_file(f, "prompt")?,
            (None, None) => bail!("give the edit instruction with --prompt or --prompt-file"),
        };
        let negative = match (&self.negative_prompt, &self.negative_prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => read_prompt_file(f, "negative prompt")?,
            (None, None) => String::new(),
        };
        Ok((prompt, negative))
    }
}

/// Reads the `which` prompt ("prompt", "negative prompt") from `path`.
pub fn read_prompt_file(path: &Path, which: &str) -> Result<String> {
    let shown = path.display();
    // A regular file only (a FIFO would wait for a writer), capped.
    let bytes = joyrt_core::files::read_capped(path, MAX_PROMPT_FILE_BYTES)
        .with_context(|| format!("cannot read the {which} file {shown}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the {which} file {shown} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_files_are_read_as_shell_substitution_would_and_errors_name_the_prompt() {
        let dir = std::env::temp_dir().join(format!("joyrt-prompt-input-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.txt");
        std::fs::write(&f, "\u{feff}Make the sky\npurple ✓\r\n\n").unwrap();
        assert_eq!(read_prompt_file(&f, "prompt").unwrap(), "Make the sky\npurple ✓");
        std::fs::write(&f, b"ok \xff").unwrap();
        let e = format!("{:#}", read_prompt_file(&f, "negative prompt").unwrap_err());
        assert!(e.contains("the negative prompt file") && e.contains("offset 3"), "{e}");
        std::fs::write(&f, vec![b'a'; MAX_PROMPT_FILE_BYTES as usize + 1]).unwrap();
        let e = format!("{:#}", read_prompt_file(&f, "prompt").unwrap_err());
        assert!(e.contains("the prompt file") && e.contains("1048576-byte limit"), "{e}");
        let e = format!("{:#}", read_prompt_file(&dir, "prompt").unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!("{:#}", read_prompt_file(&dir.join("none"), "negative prompt").unwrap_err());
        assert!(e.contains("cannot read the negative prompt file"), "{e}");
        let args = PromptArgs {
            prompt: None,
            prompt_file: Some(dir.join("none")),
            negative_prompt: Some("blurry".into()),
            negative_prompt_file: None,
        };
        assert!(format!("{:#}", args.resolve().unwrap_err()).contains("the prompt file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
