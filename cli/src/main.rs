//! `joyrt`: instruction-guided image editing with JoyAI-Image-Edit.

mod backends;
mod base_size;
mod bench;
mod builtin;
mod conformance;
mod edit;
mod hf_cache;
mod hf_download;
mod info;
mod make_model;
mod output;
mod plan;
mod progress;
mod prompt_input;
mod quantize;
mod serve;
mod staged_folder;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "joyrt",
    version,
    about = "JoyAI-Image-Edit runtime: edit images with an instruction, no Python"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Edit an image following an instruction. The output has the resolution of the bucket chosen
    /// from the input's aspect ratio (as the reference pipeline), not the input's resolution.
    Edit(edit::EditArgs),
    /// Describe a model folder: components, configs, parameter counts, dtypes, sizes, and every
    /// missing, unexpected or mis-shaped tensor.
    Info(info::InfoArgs),
    /// Write a random-weight model folder in the published diffusers layout.
    MakeModel(make_model::MakeModelArgs),
    /// Write a copy of a model folder with its block linear layers quantized (int8, int4, fp8).
    Quantize(quantize::QuantizeArgs),
    /// Run the conformance layers against a backend and print the error table.
    Conformance(conformance::ConformanceArgs),
    /// The memory plan of an edit: weight and activation bytes per stage and the placement that
    /// fits a device (components in turn or resident, DiT blocks streamed, VAE tiled).
    Plan(plan::PlanArgs),
    /// Time the DiT's ops and one DiT forward on a backend.
    Bench(bench::BenchArgs),
    /// Serve the model over an OpenAI-compatible Images API (`POST /v1/images/edits`), loaded
    /// once and kept in memory.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    // Before any thread exists: it may set an environment variable for the Vulkan loader.
    joyrt_wgpu::quiet_headless_device_select();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Edit(a) => edit::run(a),
        Command::Info(a) => info::run(a),
        Command::MakeModel(a) => make_model::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Conformance(a) => conformance::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
