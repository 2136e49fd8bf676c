//! A resident session: the three networks loaded once onto one backend and kept for many edits
//! (`joyrt serve`). Edits run one at a time on the session's device; nothing of one edit outlives
//! it (its tensors are dropped with it, and an error the device reported late is taken before the
//! next edit starts), so a failed or cancelled request never changes the next one. Tested in
//! `core/tests/session.rs` (the CPU backend is a dev-dependency, so the tests live outside).

use super::{load_text_encoder, load_transformer, load_vae, run, Clock, Held, Networks};
use super::{EditOutput, EditParams, Progress, Stage};
use crate::image::RgbImage;
use crate::model_folder::ModelFolder;
use crate::models::dit::Dit;
use crate::models::qwen::Qwen;
use crate::models::vae::Vae;
use crate::{Backend, DType, Error, Result};
use std::time::Duration;

pub struct Session<'a, B: Backend> {
    backend: &'a B,
    model: ModelFolder,
    dtype: DType,
    qwen: Qwen<B>,
    vae: Vae<B>,
    dit: Dit<B>,
    load_timings: Vec<(Stage, Duration)>,
}

impl<'a, B: Backend> Session<'a, B> {
    /// Loads the text encoder, the VAE and the transformer of `model` onto `backend` in `dtype`.
    /// `on_progress` sees the three load stages; returning `false` cancels the load.
    pub fn load(
        backend: &'a B,
        model: ModelFolder,
        dtype: DType,
        on_progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Self> {
        let mut clock = Clock { on: on_progress, timings: Vec::new() };
        let qwen = clock.run(Stage::LoadTextEncoder, |_| load_text_encoder(backend, &model, dtype))?;
        let vae = clock.run(Stage::LoadVae, |_| load_vae(backend, &model, dtype))?;
        let dit = clock.run(Stage::LoadTransformer, |_| load_transformer(backend, &model, dtype))?;
        Ok(Session { backend, model, dtype, qwen, vae, dit, load_timings: clock.timings })
    }

    pub fn model(&self) -> &ModelFolder {
        &self.model
    }

    /// The dtype the networks are held in; every edit runs in it.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// How long each network took to load.
    pub fn load_timings(&self) -> &[(Stage, Duration)] {
        &self.load_timings
    }

    /// Runs one edit with the resident networks, as [`super::edit`] does (without its load
    /// stages). `params.dtype` must be the session's dtype.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn edit(
        &self,
        image: &RgbImage,
        params: &EditParams,
        on_progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EditOutput> {
        pollster::block_on(self.edit_async(image, params, on_progress))
    }

    /// [`Session::edit`] as a future (see [`super::edit_async`]).
    pub async fn edit_async(
        &self,
        image: &RgbImage,
        params: &EditParams,
        on_progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EditOutput> {
        if params.dtype != self.dtype {
            return Err(Error::Input(format!(
                "this session holds its networks in {}; the edit asks for {}",
                self.dtype, params.dtype
            )));
        }
        // A device error raised by the previous edit's last work, reported after that edit ended,
        // belongs to it: it must not fail this one.
        let _ = self.backend.take_late_error();
        run(self.backend, &self.model, image, params, on_progress, self).await
    }
}

impl<B: Backend> Networks<B> for Session<'_, B> {
    fn text_encoder(&self, _: &mut Clock<'_>) -> Result<Held<'_, Qwen<B>>> {
        Ok(Held::Lent(&self.qwen))
    }
    fn vae(&self, _: &mut Clock<'_>) -> Result<Held<'_, Vae<B>>> {
        Ok(Held::Lent(&self.vae))
    }
    fn transformer(&self, _: &mut Clock<'_>) -> Result<Held<'_, Dit<B>>> {
        Ok(Held::Lent(&self.dit))
    }
}
