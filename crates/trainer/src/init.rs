//! Seeded initial weights: every randomly initialised variable of the query network re-drawn
//! from the law the model crate recorded for it ([`model::QueryNetwork::init_laws`]), with a
//! generator seeded by `(run seed, variable name)`.
//!
//! Why: candle's CPU generator cannot be seeded, and "same seed, same run" (and so an exact
//! resume, and step parity with a reference implementation fed the same initial weights) needs
//! the same start. Constants (norm weights and biases, zero biases, the zero-initialised last
//! BatchNorm of each bottleneck) keep the value the model gave them.

use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use candle_nn::Init;
use dataset::sampler::derive_seed;
use model::{InitLaws, QueryNetwork};
use rand::{Rng, SeedableRng};

/// Seed tag of the initial weights, so they never collide with the loader's streams.
const TAG_INIT: u64 = 0x494e_4954;

/// Re-draws every random trainable variable of `query` from its recorded law. A variable
/// without a recorded law, or with a law this function cannot draw, is an error naming it.
pub fn seeded_init(query: &QueryNetwork, seed: u64) -> Result<()> {
    seeded_init_vars(query.init_laws(), &query.trainable_vars(), seed)
}

/// [`seeded_init`] for any set of variables built through [`model::init::recording_builder`]
/// (e.g. BCL's prototype head), with the laws that builder recorded.
pub fn seeded_init_vars(laws: &InitLaws, vars: &[(String, Var)], seed: u64) -> Result<()> {
    for (name, var) in vars {
        let Some(law) = laws.get(name) else {
            bail!("the model recorded no initial-value law for variable {name}");
        };
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(&[seed, TAG_INIT, name_hash(name)]));
        let n = var.elem_count();
        let draws: Vec<f32> = match *law {
            Init::Const(_) => continue,
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * standard_normal(&mut rng)) as f32)
                .collect(),
            Init::Uniform { lo, up } => (0..n)
                .map(|_| (lo + (up - lo) * rng.random::<f64>()) as f32)
                .collect(),
            other => bail!("variable {name}: no seeded draw for the law {other:?}"),
        };
        let t = Tensor::from_vec(draws, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// FNV-1a of a variable name: each variable gets its own stream, independent of the others'
/// sizes and order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Box-Muller: two uniforms, one in (0, 1], -> one standard normal.
fn standard_normal(rng: &mut rand_chacha::ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
