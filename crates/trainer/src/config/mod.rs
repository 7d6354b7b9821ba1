//! The training configuration: one TOML file with every value of the method (docs/method.md), e.g.
//!
//! ```toml
//! [run]
//! name = "spmix"
//! seed = 0
//! epochs = 500
//! batch_size = 64
//! [method]
//! name = "spmix"          # ce | ce-resample | paco | spmix
//! [model]                 # the model crate's table, as is
//! image_size = 224
//! ```
//!
//! Missing keys take the paper's values ([`Config::default`]); unknown keys are errors that name
//! the key path and suggest the nearest valid key; a file may `extends = "../spmix.toml"` and state
//! only what differs; `--set a.b=value` overrides any value (the value is parsed as TOML, falling
//! back to a string).
//!
//! Where things are: `schema.rs` (the tables and their defaults), `load.rs` (files, `extends`
//! layers, `--set`), `overrides.rs` (merge, key checks, `--set` parsing), `validate.rs` (cross-field
//! checks, `--device`), `error.rs`.
//!
//! ```
//! let cfg = trainer::config::Config::from_toml_str(
//!     "[run]\nepochs = 3\n", "example", &["optim.lr=1e-4".to_string()]).unwrap();
//! assert_eq!(cfg.run.epochs, 3);
//! assert_eq!(cfg.optim.lr, 1e-4);
//! let err = trainer::config::Config::from_toml_str("[run]\nepoch = 3\n", "example", &[]).unwrap_err();
//! assert!(err.to_string().contains("did you mean `run.epochs`"));
//! ```

mod error;
mod load;
mod overrides;
mod schema;
mod validate;

pub use error::{ConfigError, Result};
pub use load::EXTENDS_KEY;
pub use schema::*;
pub use validate::{parse_device, DeviceSpec};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_paper_config() {
        let cfg = Config::from_toml_str("", "empty", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.optim.lr, 5e-6);
        assert_eq!(cfg.loss.queue_size, 8192);
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = Config::from_toml_str("[method]\nname = \"paco\"\n", "x", &[]).unwrap();
        let again = Config::from_toml_str(&cfg.to_toml(), "again", &[]).unwrap();
        assert_eq!(cfg, again);
        assert_eq!(again.method.name, MethodName::Paco);
    }

    /// The logit-adjustment prior follows the anchors' label distribution: the sampler's with
    /// the class-balanced foreground, the data set's otherwise, or what the config forces.
    #[test]
    fn prior_follows_the_anchor_labels() {
        let counts = [10usize, 60, 20, 0, 5, 3, 2];
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        let freq: Vec<f64> = counts.iter().map(|&n| n as f64 / 100.0).collect();
        let uniform6: Vec<f64> = counts
            .iter()
            .map(|&n| if n == 0 { 0.0 } else { 1.0 / 6.0 })
            .collect();

        let spmix = Config::default();
        assert_eq!(spmix.loss.prior, Prior::Anchors);
        let p = spmix
            .loss
            .prior_distribution(&spmix.method, &spmix.mix, &counts);
        assert!(close(&p, &uniform6), "{p:?}");

        let inst = Config::from_toml_str("[mix]\nforeground = \"instance\"\n", "x", &[]).unwrap();
        assert!(close(
            &inst
                .loss
                .prior_distribution(&inst.method, &inst.mix, &counts),
            &freq
        ));

        let paco = Config::from_toml_str("[method]\nname = \"paco\"\n", "x", &[]).unwrap();
        assert!(close(
            &paco
                .loss
                .prior_distribution(&paco.method, &paco.mix, &counts),
            &freq
        ));

        // w = 0.5: class weights n^(1/2).
        let half =
            Config::from_toml_str("[method]\nclass_weight_exponent = 0.5\n", "x", &[]).unwrap();
        let sq: Vec<f64> = counts.iter().map(|&n| (n as f64).sqrt()).collect();
        let total: f64 = sq.iter().sum();
        let want: Vec<f64> = sq.iter().map(|x| x / total).collect();
        assert!(close(
            &half
                .loss
                .prior_distribution(&half.method, &half.mix, &counts),
            &want
        ));

        let forced = Config::from_toml_str("[loss]\nprior = \"dataset\"\n", "x", &[]).unwrap();
        assert!(close(
            &forced
                .loss
                .prior_distribution(&forced.method, &forced.mix, &counts),
            &freq
        ));
        let flat = Config::from_toml_str("[loss]\nprior = \"uniform\"\n", "x", &[]).unwrap();
        let p = flat
            .loss
            .prior_distribution(&flat.method, &flat.mix, &counts);
        assert!(p.iter().all(|&x| (x - 1.0 / 7.0).abs() < 1e-12), "{p:?}");
    }
}
