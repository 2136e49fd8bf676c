//! Flow-matching Euler scheduler (`x_σ = (1−σ)·x₀ + σ·ε`, `v ≈ ε − x₀`, `x ← x + (σ' − σ)·v`).
//!
//! Two σ formulas, both with the shift `f(σ) = s·σ / (1 + (s−1)·σ)`:
//! - [`SigmaSchedule::Diffusers`] (the reference, `FlowMatchEulerDiscreteScheduler`,
//!   `num_train_timesteps = 1000`, no dynamic shifting): `u = linspace(1000·σ_max, 1000·σ_min, N)/1000`
//!   with `σ_max = f(1)`, `σ_min = f(1/1000)` computed in f32 as diffusers does at construction, then
//!   `σ_i = f(u_i)` in f64, rounded to f32, and a final `σ_N = 0`. The shift is thus applied twice at
//!   the tail end (model-spec §1.9 pitfall 9).
//! - [`SigmaSchedule::Original`] (the original JoyAI release): `σ_i = f(1 − i/N)`, `i = 0…N`.
//!
//! The timestep fed to the DiT is the float `t_i = 1000·σ_i` (f32 product, as diffusers).

/// Which σ formula to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaSchedule {
    Diffusers,
    Original,
}

/// The σ and timestep tables for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `N + 1` values from 1 down to 0.
    pub sigmas: Vec<f32>,
    /// `N` values, `t_i = 1000·σ_i`.
    pub timesteps: Vec<f32>,
}

pub const NUM_TRAIN_TIMESTEPS: usize = 1000;
/// diffusers' and SGLang's flow shift for JoyAI-Image-Edit.
pub const DEFAULT_SHIFT: f32 = 1.5;

fn shift_f64(s: f64, sigma: f64) -> f64 {
    s * sigma / (1.0 + (s - 1.0) * sigma)
}

fn shift_f32(s: f32, sigma: f32) -> f32 {
    s * sigma / (1.0 + (s - 1.0) * sigma)
}

impl Schedule {
    /// The tables for `steps ≥ 1` steps with shift `shift > 0`.
    pub fn new(kind: SigmaSchedule, steps: usize, shift: f32) -> Schedule {
        assert!(steps >= 1 && shift > 0.0, "steps {steps} and shift {shift} are validated by the caller");
        let n_train = NUM_TRAIN_TIMESTEPS as f64;
        let mut sigmas: Vec<f32> = match kind {
            SigmaSchedule::Diffusers => {
                // The training table's ends, in f32 like diffusers' torch tensors.
                let sigma_max = shift_f32(shift, 1.0) as f64;
                let sigma_min = shift_f32(shift, 1.0 / NUM_TRAIN_TIMESTEPS as f32) as f64;
                let (t0, t1) = (sigma_max * n_train, sigma_min * n_train);
                (0..steps)
                    .map(|i| {
                        // numpy.linspace: start + i·step, with the last point exactly `stop`.
                        let t = if steps == 1 {
                            t0
                        } else if i == steps - 1 {
                            t1
                        } else {
                            t0 + i as f64 * ((t1 - t0) / (steps - 1) as f64)
                        };
                        shift_f64(shift as f64, t / n_train) as f32
                    })
                    .collect()
            }
            SigmaSchedule::Original => {
                (0..steps).map(|i| shift_f64(shift as f64, 1.0 - i as f64 / steps as f64) as f32).collect()
            }
        };
        let timesteps = sigmas.iter().map(|s| s * NUM_TRAIN_TIMESTEPS as f32).collect();
        sigmas.push(0.0);
        Schedule { sigmas, timesteps }
    }

    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `σ_{i+1} − σ_i` (negative), the Euler step size of step `i`.
    pub fn dt(&self, i: usize) -> f32 {
        self.sigmas[i + 1] - self.sigmas[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_40_steps_matches_spec_table() {
        // model-spec §1.9 (6 decimals, checked against diffusers by the oracle notes).
        let expect = [
            1.000000, 0.982785, 0.965270, 0.947449, 0.929313, 0.910854, 0.892063, 0.872930, 0.853447,
            0.833604, 0.813390, 0.792796, 0.771810, 0.750422, 0.728618, 0.706388, 0.683718, 0.660596,
            0.637008, 0.612939, 0.588374, 0.563299, 0.537697, 0.511551, 0.484844, 0.457558, 0.429672,
            0.401169, 0.372026, 0.342222, 0.311735, 0.280539, 0.248612, 0.215926, 0.182453, 0.148166,
            0.113035, 0.077027, 0.040109, 0.002247, 0.0,
        ];
        let s = Schedule::new(SigmaSchedule::Diffusers, 40, 1.5);
        assert_eq!(s.sigmas.len(), 41);
        for (a, b) in s.sigmas.iter().zip(expect) {
            assert!((a - b).abs() < 6e-7, "{a} vs {b}");
        }
        assert!((s.timesteps[39] - 2.247).abs() < 1e-3);
    }

    #[test]
    fn diffusers_4_steps_matches_oracle_notes() {
        let s = Schedule::new(SigmaSchedule::Diffusers, 4, 1.5);
        for (a, b) in s.sigmas.iter().zip([1.0, 0.750422, 0.429672, 0.002247, 0.0]) {
            assert!((a - b).abs() < 6e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn original_formula_ends_at_zero_without_double_shift() {
        let s = Schedule::new(SigmaSchedule::Original, 30, 4.0);
        assert_eq!(s.sigmas[0], 1.0);
        assert_eq!(s.sigmas[30], 0.0);
        let mid = 4.0 * 0.5 / (1.0 + 3.0 * 0.5);
        assert!((s.sigmas[15] - mid).abs() < 1e-6);
        assert!(s.dt(0) < 0.0);
    }
}
