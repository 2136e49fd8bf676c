//! Work past the binding limit: a dispatch's operands as windows of their buffers.
//!
//! A tensor is one device buffer up to `max_buffer_size` (buffer.rs), but a kernel may bind at most
//! `max_storage_buffer_binding_size` of it. An op whose work divides into independent units (rows,
//! tokens, queries, output channels or rows of an image) describes, once, how many elements of
//! each split operand one unit covers; [`Split`] cuts the units into pieces whose windows all fit
//! one binding and start at multiples of `min_storage_buffer_offset_alignment`, and the op runs
//! its unchanged kernel on each piece as a smaller instance of itself. Operands that every unit
//! reads (weights, gains, broadcast rows, keys and values) are bound whole. Where the tensors fit,
//! there is one piece and the dispatch is exactly the unsplit one.

use crate::buffer::{Bind, Input, Span};
use crate::dispatch::Kernel;
use crate::WgpuBackend;
use joyrt_core::kernel_abi::KernelParams;
use joyrt_core::{Backend, Error, Result};
use std::ops::Range;

/// An input of a split dispatch, in binding order.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    /// Windowed: `per_unit` elements of the span per unit of work, unit `u` at element
    /// `u · per_unit`. `what` names it in errors.
    Split { what: &'static str, span: Span<'a>, per_unit: usize },
    /// Bound whole for every piece.
    Whole(Input<'a>),
}

/// One piece of a split dispatch: its units, its inputs in binding order, and its output window.
pub(crate) struct Piece<'a> {
    pub(crate) units: Range<usize>,
    pub(crate) inputs: Vec<Input<'a>>,
    pub(crate) out: Bind<'a>,
}

impl Piece<'_> {
    pub(crate) fn len(&self) -> usize {
        self.units.len()
    }
}

/// A dispatch over `units` independent units of work, with its output and inputs split by unit.
pub(crate) struct Split<'a> {
    op: &'static str,
    units: usize,
    out: Option<(Span<'a>, usize)>,
    /// Elements of the output before unit 0's (see [`Split::out_at`]).
    out_first: usize,
    inputs: Vec<Operand<'a>>,
}

impl<'a> Split<'a> {
    /// `op` (named in errors) over `units` units.
    pub(crate) fn new(op: &'static str, units: usize) -> Split<'a> {
        Split { op, units, out: None, out_first: 0, inputs: Vec::new() }
    }

    /// The output: `per_unit` elements of `span` per unit.
    pub(crate) fn out(mut self, span: Span<'a>, per_unit: usize) -> Split<'a> {
        self.out = Some((span, per_unit));
        self
    }

    /// The output: `per_unit` elements of `span` per unit, unit `u` at element
    /// `first + u · per_unit` (an op writing its rows into part of a larger output). The output's
    /// windows start at the aligned element at or below unit 0's, [`Split::out_shift`] elements
    /// before it, which the kernel adds to its output indices.
    pub(crate) fn out_at(mut self, span: Span<'a>, per_unit: usize, first: usize) -> Split<'a> {
        self.out_first = first;
        self.out(span, per_unit)
    }

    /// Elements from the start of each output window to the piece's first unit: 0 unless
    /// [`Split::out_at`] placed unit 0 at an unaligned element. The same for every piece, whose
    /// first units start at aligned offsets from unit 0.
    pub(crate) fn out_shift(&self, be: &WgpuBackend) -> usize {
        let Some((span, _)) = self.out else { return 0 };
        let size = span.dtype.size();
        (self.out_first * size) % be.gpu().offset_alignment as usize / size
    }

    /// The next input, windowed by unit.
    pub(crate) fn split(mut self, what: &'static str, span: Span<'a>, per_unit: usize) -> Split<'a> {
        self.inputs.push(Operand::Split { what, span, per_unit });
        self
    }

    /// The next input, bound whole.
    pub(crate) fn whole(mut self, input: Input<'a>) -> Split<'a> {
        self.inputs.push(Operand::Whole(input));
        self
    }

    /// The windowed operands: name, span, elements per unit (the output first).
    fn windowed(&self) -> impl Iterator<Item = (&'static str, Span<'a>, usize)> + '_ {
        let out = self.out.map(|(s, n)| ("output", s, n));
        out.into_iter().chain(self.inputs.iter().filter_map(|o| match *o {
            Operand::Split { what, span, per_unit } => Some((what, span, per_unit)),
            Operand::Whole(_) => None,
        }))
    }

    /// The unit ranges of the pieces ([`plan`] on this device's limits), or the error naming the
    /// operand whose smallest aligned piece is past the limit.
    fn ranges(&self, be: &WgpuBackend) -> Result<Vec<Range<usize>>> {
        let gpu = be.gpu();
        let (mut limit, align) = (gpu.max_binding, gpu.offset_alignment);
        if self.out_shift(be) > 0 {
            // The output's windows begin up to one alignment early.
            limit -= align;
        }
        let unit_bytes = |span: Span, n: usize| (n * span.dtype.size()) as u64;
        let bytes: Vec<u64> = self.windowed().map(|(_, s, n)| unit_bytes(s, n)).collect();
        plan(self.units, &bytes, limit, align).map_err(|step| {
            let (what, s, n) = self
                .windowed()
                .max_by_key(|&(_, s, n)| unit_bytes(s, n))
                .expect("a windowed operand past the limit");
            Error::backend(
                be.name(),
                format!(
                    "{}: {what} ({} bytes) cannot be split within the max_storage_buffer_binding_size of \
                     {limit} bytes{}: a piece is at least {step} unit(s) of {} bytes (windows start at \
                     multiples of {align} bytes)",
                    self.op,
                    s.bytes(),
                    gpu.lowered(),
                    unit_bytes(s, n)
                ),
            )
        })
    }

    /// The pieces, each with its windows bound.
    pub(crate) fn pieces(&self, be: &'a WgpuBackend) -> Result<Vec<Piece<'a>>> {
        let dummy = be.dummy().0;
        Ok(self
            .ranges(be)?
            .into_iter()
            .map(|r| {
                let window = |s: Span<'a>, n: usize| s.window(r.start * n, r.end * n);
                let inputs = self
                    .inputs
                    .iter()
                    .map(|o| match *o {
                        Operand::Split { span, per_unit, .. } => window(span, per_unit),
                        Operand::Whole(i) => i,
                    })
                    .collect();
                let base = self.out_first - self.out_shift(be);
                let out = self
                    .out
                    .map(|(s, n)| s.window(base + r.start * n, self.out_first + r.end * n).0)
                    .unwrap_or(dummy);
                Piece { units: r, inputs, out }
            })
            .collect())
    }

    /// Runs `k` once per piece with the arguments `args(piece units)` over `groups(units)`
    /// workgroups.
    pub(crate) fn run<A: KernelParams>(
        &self,
        be: &WgpuBackend,
        k: Kernel<A>,
        args: impl Fn(Range<usize>) -> A,
        groups: impl Fn(usize) -> u64,
    ) -> Result<()> {
        for p in self.pieces(be)? {
            be.run(k, &args(p.units.clone()), &p.inputs, p.out, groups(p.len()))?;
        }
        Ok(())
    }
}

/// Pieces of `units` units, where one unit covers `unit_bytes[j]` bytes of windowed operand `j`:
/// one piece when every operand fits `limit`; else pieces of a common number of units, a multiple
/// of the smallest count that keeps every window's start a multiple of `align`, as many as fit the
/// tightest operand. `Err(step)` when even `step` units (that smallest count) are past the limit.
fn plan(
    units: usize,
    unit_bytes: &[u64],
    limit: u64,
    align: u64,
) -> std::result::Result<Vec<Range<usize>>, u64> {
    if unit_bytes.iter().all(|&b| b * units as u64 <= limit) {
        return Ok(std::iter::once(0..units).collect());
    }
    let (mut step, mut fit) = (1u64, u64::MAX);
    for &b in unit_bytes.iter().filter(|&&b| b > 0) {
        step = lcm(step, align / gcd(align, b));
        fit = fit.min(limit / b);
    }
    let per_piece = (fit / step * step) as usize;
    if per_piece == 0 {
        return Err(step);
    }
    Ok((0..units).step_by(per_piece).map(|u| u..(u + per_piece).min(units)).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn one_piece_when_everything_fits() {
        let one = |r: std::ops::Range<usize>| Ok(std::iter::once(r).collect::<Vec<_>>());
        assert_eq!(plan(100, &[40, 20], 4000, 256), one(0..100));
        assert_eq!(plan(0, &[40], 16, 256), one(0..0));
    }

    #[test]
    fn pieces_fit_the_limit_and_start_aligned() {
        // Rows of 72 f32 (288 bytes) in, 72 bf16 (144 bytes) out, under 8 KiB and 256-byte alignment.
        let (bytes, limit, align) = ([288u64, 144], 8192u64, 256u64);
        let pieces = plan(200, &bytes, limit, align).unwrap();
        assert!(pieces.len() > 1);
        assert_eq!(pieces.first().unwrap().start, 0);
        assert_eq!(pieces.last().unwrap().end, 200);
        for w in pieces.windows(2) {
            assert_eq!(w[0].end, w[1].start, "contiguous");
        }
        for p in &pieces {
            for b in bytes {
                assert_eq!(p.start as u64 * b % align, 0, "{p:?} starts aligned");
                assert!(p.len() as u64 * b <= limit, "{p:?} fits");
            }
        }
    }

    #[test]
    fn a_unit_past_the_limit_is_refused_with_the_smallest_step() {
        // One row of 300 f32 is over 1 KiB (and aligned starts need 16 rows: 1200 = 16 · 75).
        assert_eq!(plan(2, &[1200], 1024, 256), Err(16));
        // Aligned steps of 64 single f32 elements fit; of 128 packed 16-bit too; mixed need 128.
        assert_eq!(plan(1000, &[4, 2], 256, 256), Err(128));
        assert!(plan(1000, &[4, 2], 512, 256).is_ok());
    }
}
