//! Progress of `joyrt edit` on stderr: one line per finished stage, always; on a terminal also a
//! live bar for the denoising steps (drawn above nothing else, cleared at the end). Logs and pipes
//! get the stage lines only, with no escape codes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use joyrt_core::pipeline::{Progress, Stage};
use std::io::IsTerminal;
use std::time::Duration;

pub struct StageReporter {
    show: bool,
    bar: Option<ProgressBar>,
}

/// The line printed when `stage` finishes after `took`.
pub fn stage_line(stage: Stage, took: Duration) -> String {
    format!("  {:<18} {:>9.3} s", stage.name(), took.as_secs_f64())
}

impl StageReporter {
    /// `show: false` prints nothing at all.
    pub fn new(steps: usize, show: bool) -> StageReporter {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg:<18} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        StageReporter { show, bar }
    }

    /// Handles one progress event of the pipeline.
    pub fn on(&self, p: Progress) {
        match p {
            Progress::StageStart(s) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(s.name());
                }
            }
            Progress::StageEnd(s, took) => match &self.bar {
                Some(bar) => bar.println(stage_line(s, took)),
                None if self.show => eprintln!("{}", stage_line(s, took)),
                None => {}
            },
            Progress::Step { index, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(index as u64 + 1);
                }
            }
        }
    }

    /// Removes the bar; the stage lines stay.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lines_are_aligned() {
        assert_eq!(
            stage_line(Stage::Denoise, Duration::from_millis(1500)),
            "  denoise                1.500 s"
        );
        assert_eq!(
            stage_line(Stage::LoadTextEncoder, Duration::from_secs(12)),
            "  load text encoder     12.000 s"
        );
    }
}
