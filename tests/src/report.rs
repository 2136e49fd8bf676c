//! Error metrics and the per-check table the suite (and `joyrt conformance`) prints.

use crate::tolerance::Tolerance;
use std::fmt::Write;

/// How far `out` is from `reference`, computed in f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    pub max_abs: f64,
    /// `max |out − ref| / max(|ref|, 1e-6)` over elements.
    pub max_rel: f64,
    /// `‖out − ref‖₂ / ‖ref‖₂` (the error ‖out−ref‖/‖ref‖ of the issues).
    pub rel_l2: f64,
    pub cosine: f64,
    /// Elements violating `|out − ref| ≤ abs + rel·|ref|` of the tolerance checked.
    pub violations: usize,
    pub len: usize,
}

impl Metrics {
    pub fn compare(out: &[f32], reference: &[f32], tol: &Tolerance) -> Metrics {
        assert_eq!(out.len(), reference.len(), "compare: lengths differ (the caller checks shapes)");
        let (mut d2, mut r2, mut o2, mut dot) = (0f64, 0f64, 0f64, 0f64);
        let mut m = Metrics { len: out.len(), ..Default::default() };
        for (&o, &r) in out.iter().zip(reference) {
            let (o, r) = (o as f64, r as f64);
            let d = (o - r).abs();
            // NaN compares false, so it counts as a violation.
            if d.is_nan() || d > tol.abs + tol.rel * r.abs() {
                m.violations += 1;
            }
            m.max_abs = m.max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
            m.max_rel = m.max_rel.max(d / r.abs().max(1e-6));
            d2 += d * d;
            r2 += r * r;
            o2 += o * o;
            dot += o * r;
        }
        m.rel_l2 = if r2 > 0.0 { (d2 / r2).sqrt() } else { d2.sqrt() };
        m.cosine =
            if r2 > 0.0 && o2 > 0.0 { dot / (r2.sqrt() * o2.sqrt()) } else { f64::from(u8::from(d2 == 0.0)) };
        if m.rel_l2.is_nan() {
            m.rel_l2 = f64::INFINITY;
        }
        m
    }

    pub fn passes(&self, tol: &Tolerance) -> bool {
        self.violations == 0 && self.rel_l2 <= tol.rel_l2 && tol.min_cosine.is_none_or(|c| self.cosine >= c)
    }
}

/// PSNR in dB of two 8-bit images (∞ when identical).
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse =
        a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.len().max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// The outcome of one check.
#[derive(Clone, Debug)]
pub enum Outcome {
    Compared {
        metrics: Metrics,
        tol: Tolerance,
    },
    /// A check with its own criterion (exact equality, PSNR, ...).
    Checked {
        pass: bool,
        detail: String,
    },
    /// Not run, with the reason (printed loudly, never counted as a pass).
    Skipped(String),
    /// The code under test returned an error.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Row {
    pub layer: &'static str,
    pub check: String,
    pub outcome: Outcome,
}

impl Row {
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Outcome::Compared { metrics, tol } => metrics.passes(tol),
            Outcome::Checked { pass, .. } => *pass,
            Outcome::Skipped(_) | Outcome::Failed(_) => false,
        }
    }
    pub fn skipped(&self) -> bool {
        matches!(self.outcome, Outcome::Skipped(_))
    }
}

/// Rows of one backend's run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub backend: String,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(backend: impl Into<String>) -> Report {
        Report { backend: backend.into(), rows: Vec::new() }
    }

    /// Compares `out` with `reference` under `tol` (a length mismatch is a failure).
    pub fn compare(
        &mut self,
        layer: &'static str,
        check: impl Into<String>,
        out: &[f32],
        reference: &[f32],
        tol: Tolerance,
    ) {
        let check = check.into();
        let outcome = if out.len() != reference.len() {
            Outcome::Failed(format!("{} values vs {} in the reference", out.len(), reference.len()))
        } else {
            Outcome::Compared { metrics: Metrics::compare(out, reference, &tol), tol }
        };
        self.rows.push(Row { layer, check, outcome });
    }

    pub fn check(
        &mut self,
        layer: &'static str,
        check: impl Into<String>,
        pass: bool,
        detail: impl Into<String>,
    ) {
        self.rows.push(Row {
            layer,
            check: check.into(),
            outcome: Outcome::Checked { pass, detail: detail.into() },
        });
    }

    pub fn skip(&mut self, layer: &'static str, check: impl Into<String>, why: impl Into<String>) {
        self.rows.push(Row { layer, check: check.into(), outcome: Outcome::Skipped(why.into()) });
    }

    /// Records `Err` as a failed row; returns the value on `Ok`.
    pub fn attempt<T, E: std::fmt::Display>(
        &mut self,
        layer: &'static str,
        check: &str,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.rows.push(Row { layer, check: check.into(), outcome: Outcome::Failed(e.to_string()) });
                None
            }
        }
    }

    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.passed() && !r.skipped()).collect()
    }

    /// The error table, one line per check.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "backend {}\n{:<9} {:<44} {:>10} {:>10} {:>10} {:>10}  {:<10} result",
            self.backend, "layer", "check", "max_abs", "max_rel", "rel_l2", "cosine", "tolerance"
        );
        for r in &self.rows {
            let verdict = if r.skipped() {
                "SKIPPED"
            } else if r.passed() {
                "ok"
            } else {
                "FAIL"
            };
            match &r.outcome {
                Outcome::Compared { metrics: m, tol } => {
                    let _ = writeln!(
                        s,
                        "{:<9} {:<44} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.7} {:<10} {verdict}",
                        r.layer, r.check, m.max_abs, m.max_rel, m.rel_l2, m.cosine, tol.name
                    );
                }
                Outcome::Checked { detail, .. } => {
                    let _ = writeln!(s, "{:<9} {:<44} {:<55} {verdict}", r.layer, r.check, detail);
                }
                Outcome::Skipped(why) => {
                    let _ = writeln!(s, "{:<9} {:<44} SKIPPED: {why}", r.layer, r.check);
                }
                Outcome::Failed(e) => {
                    let _ = writeln!(s, "{:<9} {:<44} ERROR: {e}  FAIL", r.layer, r.check);
                }
            }
        }
        let (pass, skip) = (
            self.rows.iter().filter(|r| r.passed()).count(),
            self.rows.iter().filter(|r| r.skipped()).count(),
        );
        let _ = writeln!(s, "{pass} passed, {} failed, {skip} skipped", self.rows.len() - pass - skip);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tolerance::*;

    #[test]
    fn metrics_detect_errors_and_nan() {
        let r = [1.0f32, -2.0, 3.0];
        assert!(Metrics::compare(&r, &r, &OP_F32).passes(&OP_F32));
        let off = [1.0f32, -2.0, 3.1];
        let m = Metrics::compare(&off, &r, &OP_F32);
        assert!(!m.passes(&OP_F32) && (m.max_abs - 0.1).abs() < 1e-6 && m.violations == 1);
        let nan = [1.0f32, f32::NAN, 3.0];
        assert!(!Metrics::compare(&nan, &r, &NET_F32).passes(&NET_F32));
    }

    #[test]
    fn psnr_of_one_level_off_is_48db() {
        assert!((psnr_u8(&[10, 20], &[11, 21]) - 48.13).abs() < 0.01);
        assert_eq!(psnr_u8(&[1], &[1]), f64::INFINITY);
    }

    #[test]
    fn skipped_rows_are_not_passes() {
        let mut rep = Report::new("x");
        rep.skip("ops", "all", "backend x not available");
        assert!(!rep.rows[0].passed() && rep.failures().is_empty());
        assert!(rep.table().contains("SKIPPED"));
    }
}
