//! The multipart form of `POST /v1/images/edits`, as the OpenAI clients send it, with joyrt's own
//! fields under the names SGLang and vLLM-Omni accept through `extra_body`. Every field is checked
//! here, before the request is queued, and an error names the field.

use super::api_error::ApiError;
use axum::body::Bytes;
use joyrt_core::limits::{in_range, GUIDANCE, STEPS};

/// Images per request at most (OpenAI's limit for `n`).
pub const MAX_N: usize = 10;
/// The sides a `size` may ask for, in pixels (the processor's pixel range is checked later, by
/// the pipeline, against the model's own configs).
pub const SIZE_SIDES: (usize, usize) = (32, 4096);
/// Output sides are multiples of this: the vision tower's patch × merge unit.
pub const SIZE_MULTIPLE: usize = 32;
/// The longest prompt accepted, in bytes: more than the 4096 tokens the DiT keeps could ever need.
pub const MAX_PROMPT_BYTES: usize = crate::prompt_input::MAX_PROMPT_FILE_BYTES as usize;

/// Defaults for the fields a request leaves out.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub steps: usize,
    pub guidance: f32,
}

/// A checked edit request.
#[derive(Debug)]
pub struct EditForm {
    pub image: Bytes,
    pub prompt: String,
    pub negative_prompt: String,
    pub n: usize,
    /// `(height, width)`; `None` (`auto`): the bucket closest to the input's aspect ratio.
    pub size: Option<(usize, usize)>,
    pub steps: usize,
    pub guidance: f32,
    pub seed: Option<u64>,
    pub model: Option<String>,
    /// Answer with server-sent events: one per denoising step, then one per image.
    pub stream: bool,
    pub response_format: ResponseFormat,
}

/// How the images come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// In the answer, as base64 PNG.
    B64Json,
    /// As a link to the PNG, which this server keeps for a bounded time (`--url-ttl-seconds`).
    Url,
}

impl EditForm {
    /// Checks the form's `(name, value)` fields; each may appear once.
    pub fn parse(fields: Vec<(String, Bytes)>, defaults: &Defaults) -> Result<EditForm, ApiError> {
        let mut seen = std::collections::HashSet::new();
        let mut image = None;
        let (mut prompt, mut negative_prompt, mut model) = (None, String::new(), None);
        let (mut n, mut size, mut seed, mut stream) = (1, None, None, false);
        let mut response_format = ResponseFormat::B64Json;
        let (mut steps, mut guidance) = (defaults.steps, defaults.guidance);
        for (name, value) in fields {
            // Newer clients send a list of images as `image[]`; joyrt edits one.
            let key = if name == "image[]" { "image" } else { name.as_str() };
            if !seen.insert(key.to_string()) {
                let why = if key == "image" { "joyrt edits one image per request" } else { "given twice" };
                return Err(ApiError::field(key, format!("the field `{key}` appears more than once: {why}")));
            }
            match key {
                "image" => image = Some(value),
                "prompt" => prompt = Some(text(key, &value)?),
                "negative_prompt" => negative_prompt = text(key, &value)?,
                "model" => model = Some(text(key, &value)?),
                "n" => n = number(key, &value, (1, MAX_N))?,
                "size" => size = parse_size(&text(key, &value)?)?,
                "response_format" => {
                    response_format = match text(key, &value)?.as_str() {
                        "b64_json" => ResponseFormat::B64Json,
                        "url" => ResponseFormat::Url,
                        other => {
                            return Err(ApiError::field(
                                key,
                                format!("unknown response_format {other:?}; use `b64_json` or `url`"),
                            ))
                        }
                    }
                }
                "output_format" => {
                    if text(key, &value)? != "png" {
                        return Err(ApiError::field(
                            key,
                            "joyrt returns PNG images: output_format must be `png`",
                        ));
                    }
                }
                "num_inference_steps" => steps = number(key, &value, STEPS)?,
                "guidance_scale" => {
                    let g: f32 = text(key, &value)?
                        .trim()
                        .parse()
                        .map_err(|_| ApiError::field(key, "guidance_scale must be a number"))?;
                    in_range(key, g, GUIDANCE).map_err(|m| ApiError::field(key, m))?;
                    guidance = g;
                }
                "seed" => seed = Some(number(key, &value, (0, u64::MAX))?),
                // OpenAI's end-user id: not used.
                "user" => {}
                "stream" => {
                    stream = match text(key, &value)?.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(ApiError::field(
                                key,
                                format!("stream must be true or false, got {other:?}"),
                            ))
                        }
                    }
                }
                "mask" => {
                    return Err(ApiError::field(
                        key,
                        "masks are not supported: the edit follows the prompt over the whole image",
                    ))
                }
                other => return Err(ApiError::field(other, format!("unknown field `{other}`"))),
            }
        }
        let image = image.ok_or_else(|| ApiError::field("image", "the `image` file is missing"))?;
        if image.is_empty() {
            return Err(ApiError::field("image", "the `image` file is empty"));
        }
        let prompt = prompt.ok_or_else(|| ApiError::field("prompt", "the `prompt` field is missing"))?;
        if prompt.trim().is_empty() {
            return Err(ApiError::field("prompt", "the prompt is empty"));
        }
        Ok(EditForm {
            image,
            prompt,
            negative_prompt,
            n,
            size,
            steps,
            guidance,
            seed,
            model,
            stream,
            response_format,
        })
    }
}

/// A field's value as UTF-8 text; prompts are capped at [`MAX_PROMPT_BYTES`], the other fields
/// are short.
fn text(key: &str, v: &[u8]) -> Result<String, ApiError> {
    let cap = if key.ends_with("prompt") { MAX_PROMPT_BYTES } else { 256 };
    if v.len() > cap {
        return Err(ApiError::field(key, format!("`{key}` is {} bytes long, at most {cap}", v.len())));
    }
    String::from_utf8(v.to_vec()).map_err(|_| ApiError::field(key, format!("`{key}` is not UTF-8 text")))
}

fn number<T>(key: &str, v: &[u8], range: (T, T)) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let s = text(key, v)?;
    let x: T = s
        .trim()
        .parse()
        .map_err(|_| ApiError::field(key, format!("`{key}` must be a whole number, got {s:?}")))?;
    in_range(key, x, range).map_err(|m| ApiError::field(key, m))?;
    Ok(x)
}

/// `auto` or `WIDTHxHEIGHT` → `(height, width)`.
fn parse_size(s: &str) -> Result<Option<(usize, usize)>, ApiError> {
    if s == "auto" {
        return Ok(None);
    }
    let bad = || {
        ApiError::field(
            "size",
            format!(
                "size must be `auto` or WIDTHxHEIGHT with sides multiples of {SIZE_MULTIPLE} from {} to {}, got {s:?}",
                SIZE_SIDES.0, SIZE_SIDES.1
            ),
        )
    };
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    let ok = |v: usize| (SIZE_SIDES.0..=SIZE_SIDES.1).contains(&v) && v.is_multiple_of(SIZE_MULTIPLE);
    if !ok(w) || !ok(h) {
        return Err(bad());
    }
    Ok(Some((h, w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults { steps: 40, guidance: 4.0 };

    fn form(fields: &[(&str, &str)]) -> Result<EditForm, ApiError> {
        let mut v: Vec<(String, Bytes)> = vec![("image".into(), Bytes::from_static(b"\x89PNG"))];
        v.extend(fields.iter().map(|(k, x)| (k.to_string(), Bytes::from(x.to_string()))));
        EditForm::parse(v, &D)
    }

    fn param_of(fields: &[(&str, &str)]) -> String {
        let e = form(fields).unwrap_err();
        assert_eq!(e.status, 400, "{e:?}");
        e.param.unwrap()
    }

    #[test]
    fn fields_are_read_with_defaults() {
        let f = form(&[("prompt", "Make it blue"), ("size", "64x96"), ("n", "2"), ("seed", "7")]).unwrap();
        assert_eq!((f.prompt.as_str(), f.size, f.n, f.seed), ("Make it blue", Some((96, 64)), 2, Some(7)));
        assert_eq!((f.steps, f.guidance, f.negative_prompt.as_str()), (40, 4.0, ""));
        let f = form(&[
            ("prompt", "x"),
            ("negative_prompt", "blurry"),
            ("num_inference_steps", "3"),
            ("guidance_scale", "1.5"),
            ("response_format", "b64_json"),
            ("size", "auto"),
            ("model", "m"),
            ("user", "u"),
        ])
        .unwrap();
        assert_eq!((f.steps, f.guidance, f.size, f.model.as_deref()), (3, 1.5, None, Some("m")));
        assert!(!f.stream);
        assert_eq!(f.response_format, ResponseFormat::B64Json);
        let f = form(&[("prompt", "x"), ("response_format", "url")]).unwrap();
        assert_eq!(f.response_format, ResponseFormat::Url);
        assert!(form(&[("prompt", "x"), ("stream", "true")]).unwrap().stream);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(param_of(&[]), "prompt");
        assert_eq!(param_of(&[("prompt", "  ")]), "prompt");
        for (k, v) in [
            ("n", "0"),
            ("n", "11"),
            ("n", "two"),
            ("size", "100x100"),
            ("size", "64"),
            ("size", "8192x64"),
            ("response_format", "png"),
            ("num_inference_steps", "0"),
            ("guidance_scale", "nan"),
            ("guidance_scale", "0.5"),
            ("seed", "-1"),
            ("mask", "x"),
            ("output_format", "webp"),
            ("stream", "yes"),
            ("quality", "hd"),
        ] {
            assert_eq!(param_of(&[("prompt", "x"), (k, v)]), k, "{k}={v}");
        }
        assert_eq!(param_of(&[("prompt", "x"), ("prompt", "y")]), "prompt");
        assert_eq!(param_of(&[("prompt", "x"), ("image[]", "y")]), "image");
        let long = "a".repeat(MAX_PROMPT_BYTES + 1);
        assert_eq!(param_of(&[("prompt", &long)]), "prompt");
        let e = EditForm::parse(vec![("prompt".into(), Bytes::from("x"))], &D).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("image"));
    }
}
