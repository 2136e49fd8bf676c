//! The JoyAI edit prompt template and its tokenisation (Qwen2 BPE via the `tokenizers` crate).
//!
//! The template (model-spec §1.4, as diffusers builds it): a system turn whose first line is a space,
//! a literal backslash and the letter `n` (three characters, not a newline), the user turn with the
//! vision block directly followed by the instruction, then the assistant header. The encoder output
//! drops the first [`DROP_TOKENS`] states (the system turn and the user turn's `<|im_start|>`).

use crate::contain::contain;
use crate::files::{read_capped, MAX_TOKENIZER_BYTES};
use crate::{Error, Result};
use std::path::Path;

pub const SYSTEM_PROMPT: &str = "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the objects and background:";
/// Leading encoder states dropped before the DiT (diffusers `prompt_template_encode_start_idx`).
pub const DROP_TOKENS: usize = 34;

/// The full edit-mode template text with a single `<|image_pad|>` (the tokenised pad id is then
/// repeated once per vision token, as the Qwen processor does).
pub fn edit_template(prompt: &str) -> String {
    format!(
        "<|im_start|>system\n \\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n\
         <|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// A Qwen tokenizer plus the special ids the template needs.
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: tokenizers::Tokenizer,
    pub image_pad_id: u32,
    pub vision_start_id: u32,
    pub vision_end_id: u32,
}

impl PromptTokenizer {
    /// Loads a `tokenizer.json` (a regular file of at most [`MAX_TOKENIZER_BYTES`]); the special
    /// ids are looked up by name, so a remapped small vocabulary works as well as the real one.
    pub fn from_file(path: &Path) -> Result<PromptTokenizer> {
        let bytes = read_capped(path, MAX_TOKENIZER_BYTES)?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Loads a `tokenizer.json` held in memory; `origin` names it in errors. The file is tried
    /// once (the edit template encoded and decoded) so that a tokenizer that loads but fails or
    /// panics on use is refused here, where `joyrt info` sees it too.
    pub fn from_bytes(json: &[u8], origin: &str) -> Result<PromptTokenizer> {
        let invalid = |m: String| Error::config(origin, format!("not a valid tokenizer.json: {m}"));
        unsafe_bpe_merges(json).map_or(Ok(()), |m| Err(invalid(m)))?;
        let tokenizer = contain(|| tokenizers::Tokenizer::from_bytes(json))
            .map_err(|p| invalid(format!("the tokenizers library failed on it with an internal error: {p}")))?
            .map_err(|e| invalid(e.to_string()))?;
        let id = |name: &str| {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| Error::config(origin, format!("the tokenizer has no {name} token")))
        };
        let t = PromptTokenizer {
            image_pad_id: id("<|image_pad|>")?,
            vision_start_id: id("<|vision_start|>")?,
            vision_end_id: id("<|vision_end|>")?,
            tokenizer,
        };
        t.encode_edit("a", 1)
            .and_then(|(ids, _)| t.decode(&ids))
            .map_err(|e| invalid(format!("encoding the edit template failed: {e}")))?;
        Ok(t)
    }

    /// Size of the vocabulary with the added tokens: every id [`PromptTokenizer::encode`] returns
    /// is below it.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids of `text` (special tokens recognised, nothing added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = contain(|| self.tokenizer.encode(text, false))
            .map_err(|p| Error::Input(format!("the tokenizer failed with an internal error: {p}")))?
            .map_err(|e| Error::Input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids back to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        contain(|| self.tokenizer.decode(ids, false))
            .map_err(|p| Error::Input(format!("the tokenizer failed with an internal error: {p}")))?
            .map_err(|e| Error::Input(format!("tokenizer: {e}")))
    }

    /// Ids of the edit template for `prompt` with the image pad expanded to `vision_tokens` copies.
    /// Returns the ids and the index of the first pad.
    pub fn encode_edit(&self, prompt: &str, vision_tokens: usize) -> Result<(Vec<u32>, usize)> {
        let ids = self.encode(&edit_template(prompt))?;
        let pads: Vec<usize> =
            ids.iter().enumerate().filter(|(_, &t)| t == self.image_pad_id).map(|(i, _)| i).collect();
        let [pad] = pads[..] else {
            return Err(Error::Input(format!(
                "the prompt must not contain vision tokens (found {} <|image_pad|> tokens)",
                pads.len().saturating_sub(1)
            )));
        };
        if ids.iter().filter(|&&t| t == self.vision_start_id || t == self.vision_end_id).count() != 2 {
            return Err(Error::Input("the prompt must not contain <|vision_start|>/<|vision_end|>".into()));
        }
        let mut out = Vec::with_capacity(ids.len() + vision_tokens);
        out.extend_from_slice(&ids[..pad]);
        out.extend(std::iter::repeat_n(self.image_pad_id, vision_tokens));
        out.extend_from_slice(&ids[pad + 1..]);
        Ok((out, pad))
    }
}

/// What the `tokenizers` crate assumes of a BPE model without checking, when the file breaks it:
/// with a `continuing_subword_prefix`, it cuts that many bytes off the second token of every
/// merge, which panics when the token is shorter and builds an invalid UTF-8 `str` when the cut
/// falls inside a character. Every such merge must start with the prefix.
fn unsafe_bpe_merges(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let model = v.get("model")?;
    let prefix = model.get("continuing_subword_prefix")?.as_str().filter(|p| !p.is_empty())?;
    let merges = model.get("merges")?.as_array()?;
    merges.iter().find_map(|m| {
        let second = match m {
            serde_json::Value::Array(pair) => pair.get(1)?.as_str()?,
            serde_json::Value::String(s) => s.split_once(' ')?.1,
            _ => return None,
        };
        (!second.starts_with(prefix)).then(|| {
            format!("the BPE merge {m} does not start with the continuing_subword_prefix {prefix:?}")
        })
    })
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("image_pad_id", &self.image_pad_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> serde_json::Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny_model/tokenizer/tokenizer.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn corrupt_tokenizers_are_errors_not_panics() {
        let load = |v: &serde_json::Value| PromptTokenizer::from_bytes(v.to_string().as_bytes(), "t.json");
        let good = tiny_tokenizer();
        assert!(load(&good).is_ok());
        // A prefix longer than the merges' tokens makes the crate's BPE builder panic; a
        // multi-byte one would cut characters in half.
        for prefix in ["########", "é"] {
            let mut v = good.clone();
            v["model"]["continuing_subword_prefix"] = prefix.into();
            let e = load(&v).err().unwrap().to_string();
            assert!(e.contains("continuing_subword_prefix") && e.contains("t.json"), "{e}");
        }
        let mut v = good.clone();
        v["decoder"] = serde_json::json!({"type": "Nope"});
        assert!(load(&v).err().unwrap().to_string().contains("not a valid tokenizer.json"));
    }

    #[test]
    fn template_has_literal_backslash_n_and_no_newline_after_vision_end() {
        let t = edit_template("Add wings.");
        assert!(t.starts_with("<|im_start|>system\n \\nDescribe"));
        assert!(t.contains("<|vision_end|>Add wings.<|im_end|>\n<|im_start|>assistant\n"));
    }
}
