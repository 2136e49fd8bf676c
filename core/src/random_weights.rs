//! The random weights of a synthetic model (`joyrt make-model`, the CLI's built-in tiny model, and
//! the browser demo's built-in model, which must be the CLI's to the bit): one normal stream per
//! network, drawn tensor after tensor in the networks' spec order.

use crate::model_folder::Network;
use crate::weights::{safetensors_header, ParamSpec};
use crate::{DType, Result, Rng};

/// The seed of a network's stream in a model made with `seed`.
pub fn network_seed(seed: u64, network: Network) -> u64 {
    match network {
        Network::Transformer => seed,
        Network::Vae => seed ^ 1,
        Network::TextEncoder => seed ^ 2,
    }
}

/// `(mean, std)` of a tensor's values by its role (as the fixture generator): norm gains
/// ≈ 1 ± 0.1, biases and modulation tables small, embeddings N(0, 1), weights N(0, 1/fan_in).
pub fn init_std(spec: &ParamSpec) -> (f32, f32) {
    let n = &spec.name;
    let d = spec.shape.dims();
    if n.ends_with(".gamma") || (n.ends_with(".weight") && d.len() == 1) {
        (1.0, 0.1)
    } else if n.ends_with(".bias") || n.contains("modulate_table") {
        (0.0, 0.1)
    } else if n.contains("embed_tokens") || n.contains("pos_embed") {
        (0.0, 1.0)
    } else {
        let fan_in = spec.shape.numel() / d.first().copied().unwrap_or(1).max(1);
        (0.0, 1.0 / (fan_in.max(1) as f32).sqrt())
    }
}

/// Draws the values of `spec` from `rng`, encoded as `dtype`, and hands them to `sink` in pieces
/// of at most 4 Mi values (bounded memory for any tensor size).
pub fn draw(
    spec: &ParamSpec,
    dtype: DType,
    rng: &mut Rng,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let (mean, std) = init_std(spec);
    let mut left = spec.shape.numel();
    while left > 0 {
        let chunk = left.min(1 << 22);
        let v: Vec<f32> = (0..chunk).map(|_| mean + std * rng.normal() as f32).collect();
        sink(&dtype.encode_f32(&v))?;
        left -= chunk;
    }
    Ok(())
}

/// One safetensors file in memory holding `specs` drawn from a stream seeded with `seed`.
pub fn safetensors_in_memory(specs: &[ParamSpec], dtype: DType, seed: u64) -> Result<Vec<u8>> {
    let header: Vec<_> = specs.iter().map(|s| (s.name.clone(), dtype, s.shape.clone())).collect();
    let mut out = safetensors_header(&header, &Default::default());
    let mut rng = Rng::new(seed);
    for s in specs {
        draw(s, dtype, &mut rng, |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Checkpoint;
    use std::path::{Path, PathBuf};

    #[test]
    fn in_memory_file_reads_back_the_drawn_values() {
        let specs = [ParamSpec::new("a.weight", [3, 4]), ParamSpec::new("a.bias", [3])];
        let bytes = safetensors_in_memory(&specs, DType::F32, 7).unwrap();
        let ck =
            Checkpoint::from_sources(Path::new("<mem>"), vec![(PathBuf::from("<mem>/x"), Box::new(bytes))])
                .unwrap();
        let mut rng = Rng::new(7);
        let mut want = Vec::new();
        for s in &specs {
            draw(s, DType::F32, &mut rng, |b| {
                want.push(DType::F32.decode_f32(b));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(ck.read_f32("a.weight").unwrap(), want[0]);
        assert_eq!(ck.read_f32("a.bias").unwrap(), want[1]);
        // The bias's values continue the weight's stream: different from a fresh stream's.
        assert_ne!(want[1][0], want[0][0]);
    }
}
