//! The JoyAI edit prompt template and its tokenisation (Qwen2 BPE via the `tokenizers` crate).
//!
//! The template (model-spec §1.4, as diffusers builds it): a system turn whose first line is a space,
//! a literal backslash and the letter `n` (three characters, not a newline), the user turn with the
//! vision block directly followed by the instruction, then the assistant header. The encoder output
//! drops the first [`DROP_TOKENS`] states (the system turn and the user turn's `<|im_start|>`).

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
pub struct PromptTokenizer {
    tokenizer: tokenizers::Tokenizer,
    pub image_pad_id: u32,
    pub vision_start_id: u32,
    pub vision_end_id: u32,
}

impl PromptTokenizer {
    /// Loads a `tokenizer.json`; the special ids are looked up by name, so a remapped small
    /// vocabulary works as well as the real one.
    pub fn from_file(path: &Path) -> Result<PromptTokenizer> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Loads a `tokenizer.json` held in memory; `origin` names it in errors.
    pub fn from_bytes(json: &[u8], origin: &str) -> Result<PromptTokenizer> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::config(origin, format!("not a valid tokenizer.json: {e}")))?;
        let id = |name: &str| {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| Error::config(origin, format!("the tokenizer has no {name} token")))
        };
        Ok(PromptTokenizer {
            image_pad_id: id("<|image_pad|>")?,
            vision_start_id: id("<|vision_start|>")?,
            vision_end_id: id("<|vision_end|>")?,
            tokenizer,
        })
    }

    /// Token ids of `text` (special tokens recognised, nothing added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| Error::Input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids back to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| Error::Input(format!("tokenizer: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_literal_backslash_n_and_no_newline_after_vision_end() {
        let t = edit_template("Add wings.");
        assert!(t.starts_with("<|im_start|>system\n \\nDescribe"));
        assert!(t.contains("<|vision_end|>Add wings.<|im_end|>\n<|im_start|>assistant\n"));
    }
}
