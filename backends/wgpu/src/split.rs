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
    inputs: Vec<Operand<'a>>,
}

impl<'a> Split<'a> {
    /// `op` (named in errors) over `units` units.
    pub(crate) fn new(op: &'static str, units: usize) -> Split<'a> {
        Split { op, units, out: None, inputs: Vec::new() }
    }

    /// The output: `per_unit` elements of `span` per unit.
    pub(crate) fn out(mut self, span: Span<'a>, per_unit: usize) -> Split<'a> {
        self.out = Some((span, per_unit));
        self
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

    /// The unit ranges of the pieces: one piece when every window of all the units fits a binding;
    /// else pieces of a common number of units, a multiple of the count that keeps every window's
    /// start aligned, as many as fit the tightest operand.
    fn ranges(&self, be: &WgpuBackend) -> Result<Vec<Range<usize>>> {
        let gpu = be.gpu();
        let (limit, align) = (gpu.max_binding, gpu.offset_alignment);
        let unit_bytes = |span: Span, n: usize| (n * span.dtype.size()) as u64;
        if self.windowed().all(|(_, s, n)| unit_bytes(s, n) * self.units as u64 <= limit) {
            return Ok(std::iter::once(0..self.units).collect());
        }
        // Units per piece: a multiple of `step` (alignment), at most `fit` (binding limit).
        let (mut step, mut fit) = (1u64, u64::MAX);
        for (_, s, n) in self.windowed() {
            let b = unit_bytes(s, n);
            if b > 0 {
                step = lcm(step, align / gcd(align, b));
                fit = fit.min(limit / b);
            }
        }
        let per_piece = fit / step * step;
        if per_piece == 0 {
            let (what, s, n) = self
                .windowed()
                .max_by_key(|&(_, s, n)| unit_bytes(s, n) * step)
                .expect("a windowed operand past the limit");
            return Err(Error::backend(
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
            ));
        }
        let per_piece = per_piece as usize;
        Ok((0..self.units).step_by(per_piece).map(|u| u..(u + per_piece).min(self.units)).collect())
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
                let out = self.out.map(|(s, n)| window(s, n).0).unwrap_or(dummy);
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
