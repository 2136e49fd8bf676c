//! A checkpoint of random quantized weights made on demand: a full-size network in int8 is
//! 16 GB, so neither a file nor a second copy in memory is affordable on a 24 GB host. Each
//! tensor is generated when it is read and handed over as an owned buffer, so a loader that
//! uploads tensor by tensor holds only what it uploaded plus one tensor.
//!
//! The values are what `joyrt quantize` would write for [`Checkpoint::synthetic`]-like weights:
//! uniform with standard deviation 0.02, drawn per row from a seed, then quantized with the codec.

use super::{fill_uniform, ByteSource, Checkpoint, Entry, File, ParamSpec, TensorInfo};
use crate::quant::{codec, QuantFormat};
use crate::{DType, Error, Result, StoredDType};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

impl Checkpoint {
    /// Random weights for `specs`: the matrices `quantize` names (and whose K fits `format`) as
    /// `format` codes with their `.weight_scale`, every other tensor as `dtype`. Nothing is held:
    /// each read generates its tensor again from `seed`, the same bytes every time.
    pub fn synthetic_quantized(
        label: &str,
        specs: &[ParamSpec],
        dtype: DType,
        format: QuantFormat,
        quantize: impl Fn(&str) -> bool,
        seed: u64,
    ) -> Result<Checkpoint> {
        let path = PathBuf::from(format!("<synthetic {} {label}>", format.name()));
        let last = Arc::new(Mutex::new(None));
        let mut entries = BTreeMap::new();
        let mut add = |name: String, info: TensorInfo, bytes: Box<dyn ByteSource>| {
            let end = bytes.size() as usize;
            let file = Arc::new(File { path: path.clone(), bytes, data_start: 0 });
            entries.insert(name, Entry { file, info, begin: 0, end });
        };
        for (i, p) in specs.iter().enumerate() {
            let tensor_seed = seed.wrapping_mul(0x0100_0000_01b3).wrapping_add(i as u64);
            match p.shape.dims() {
                &[rows, k] if quantize(&p.name) && format.check_cols(k).is_ok() => {
                    let weight =
                        Arc::new(Weight { index: i, format, rows, k, seed: tensor_seed, last: last.clone() });
                    let codes = if matches!(format, QuantFormat::Int4 { .. }) {
                        TensorInfo { dtype: StoredDType::U8, shape: [rows, k / 2].into() }
                    } else {
                        let code = if format == QuantFormat::Fp8E4M3 {
                            StoredDType::F8E4M3
                        } else {
                            StoredDType::I8
                        };
                        TensorInfo { dtype: code, shape: [rows, k].into() }
                    };
                    let scale_dtype = codec::stored_scale_dtype(format);
                    let scales = TensorInfo {
                        dtype: scale_dtype.into(),
                        shape: [rows, format.scales_per_row(k)].into(),
                    };
                    let code_bytes = (rows * format.row_bytes(k)) as u64;
                    let scale_bytes = (rows * format.scales_per_row(k) * scale_dtype.size()) as u64;
                    add(
                        format!("{}_scale", p.name),
                        scales,
                        Box::new(WeightPart { weight: weight.clone(), scales: true, size: scale_bytes }),
                    );
                    add(
                        p.name.clone(),
                        codes,
                        Box::new(WeightPart { weight, scales: false, size: code_bytes }),
                    );
                }
                _ => {
                    let info = TensorInfo { dtype: dtype.into(), shape: p.shape.clone() };
                    let size = (p.shape.numel() * dtype.size()) as u64;
                    add(p.name.clone(), info, Box::new(FloatTensor { dtype, size, seed: tensor_seed }));
                }
            }
        }
        Ok(Checkpoint { origin: path, entries })
    }
}

/// A float tensor's bytes, generated whole at each read.
struct FloatTensor {
    dtype: DType,
    size: u64,
    seed: u64,
}

impl ByteSource for FloatTensor {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let range = super::checked_range(self.size, offset, len)?;
        let mut bytes = vec![0u8; self.size as usize];
        fill_uniform(&mut bytes, self.dtype, self.seed);
        bytes.truncate(range.end);
        bytes.drain(..range.start);
        Ok(Cow::Owned(bytes))
    }
}

/// The most recently made weight (its index, code bytes, stored scale bytes): the loader reads a
/// weight's scales and then its codes, so keeping the last one makes each weight once.
type MadeWeight = Option<(usize, Arc<(Vec<u8>, Vec<u8>)>)>;

/// One quantized matrix of the checkpoint.
struct Weight {
    index: usize,
    format: QuantFormat,
    rows: usize,
    k: usize,
    seed: u64,
    last: Arc<Mutex<MadeWeight>>,
}

impl Weight {
    /// Its code and scale bytes, made now unless it is the last one made.
    fn bytes(&self) -> Result<Arc<(Vec<u8>, Vec<u8>)>> {
        let mut last =
            self.last.lock().map_err(|_| Error::Input("synthetic weights: a reader panicked".into()))?;
        if let Some((i, made)) = last.as_ref() {
            if *i == self.index {
                return Ok(made.clone());
            }
        }
        *last = None;
        let made = Arc::new(self.make()?);
        *last = Some((self.index, made.clone()));
        Ok(made)
    }

    /// Draws the dense rows (one seed per row, rows split over the cores) and quantizes them.
    fn make(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let (rows, k, format) = (self.rows, self.k, self.format);
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let per = rows.div_ceil(threads).max(1);
        let parts: Vec<Result<codec::QuantizedRows>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..rows)
                .step_by(per)
                .map(|r0| {
                    scope.spawn(move || {
                        let n = per.min(rows - r0);
                        let mut values = vec![0f32; n * k];
                        for (r, row) in values.chunks_exact_mut(k).enumerate() {
                            let row_seed = self.seed.wrapping_mul(0x9e37_79b9).wrapping_add((r0 + r) as u64);
                            fill_uniform(bytemuck::cast_slice_mut(row), DType::F32, row_seed);
                        }
                        codec::quantize_rows(format, k, &values)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Input("quantizer panicked".into()))))
                .collect()
        });
        let sdt = codec::stored_scale_dtype(format);
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        for part in parts {
            let part = part?;
            codes.extend_from_slice(&part.codes);
            scales.extend_from_slice(&sdt.encode_f32(&part.scales));
        }
        Ok((codes, scales))
    }
}

/// The codes or the scales of one [`Weight`].
struct WeightPart {
    weight: Arc<Weight>,
    scales: bool,
    size: u64,
}

impl ByteSource for WeightPart {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let range = super::checked_range(self.size, offset, len)?;
        let made = self.weight.bytes()?;
        let bytes = if self.scales { &made.1 } else { &made.0 };
        Ok(Cow::Owned(bytes[range].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::read_quantized;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("blocks.0.fc.weight", [8, 64]),
            ParamSpec::new("blocks.0.fc.bias", [8]),
            ParamSpec::new("blocks.0.odd.weight", [8, 40]),
            ParamSpec::new("head.weight", [4, 64]),
        ]
    }

    #[test]
    fn quantizes_the_named_matrices_that_fit_and_is_repeatable() {
        for format in
            [QuantFormat::parse("int8").unwrap(), QuantFormat::parse("int4").unwrap(), QuantFormat::Fp8E4M3]
        {
            let ck = Checkpoint::synthetic_quantized(
                "t",
                &specs(),
                DType::BF16,
                format,
                |n| n.starts_with("blocks."),
                3,
            )
            .unwrap();
            let q = read_quantized(&ck, "blocks.0.fc.weight").unwrap().expect("quantized");
            assert_eq!((q.format, q.rows, q.cols), (format, 8, 64));
            // K = 40 is not a multiple of the int block, so it stays dense there (fp8 takes any K).
            let odd = read_quantized(&ck, "blocks.0.odd.weight").unwrap();
            assert_eq!(odd.is_some(), format == QuantFormat::Fp8E4M3, "{format:?}");
            assert!(read_quantized(&ck, "head.weight").unwrap().is_none());
            assert_eq!(ck.info("blocks.0.fc.bias").unwrap().dtype, DType::BF16.into());
            // Reading another weight in between makes the first again, byte for byte.
            let (_, a) = ck.raw("blocks.0.fc.weight").unwrap();
            let a = a.into_owned();
            ck.raw("blocks.0.odd.weight").unwrap();
            assert_eq!(ck.raw("blocks.0.fc.weight").unwrap().1.into_owned(), a);
            assert_eq!(ck.read_f32("head.weight").unwrap(), ck.read_f32("head.weight").unwrap());
        }
    }

    #[test]
    fn values_have_the_init_scale() {
        let specs = [ParamSpec::new("w", [64, 256])];
        let ck = Checkpoint::synthetic_quantized(
            "t",
            &specs,
            DType::F32,
            QuantFormat::parse("int8").unwrap(),
            |_| true,
            5,
        )
        .unwrap();
        let q = read_quantized(&ck, "w").unwrap().unwrap();
        let w = codec::dequantize_rows(q.format, q.cols, &ck.raw("w").unwrap().1, &q.scales);
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var.sqrt() - 0.02).abs() < 0.002, "std {}", var.sqrt());
    }
}
