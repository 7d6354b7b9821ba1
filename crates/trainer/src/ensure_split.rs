//! The prepared split a run trains on: made on first use from `data.source` (generating the
//! synthetic set first when asked), and refused when an existing one was made with another
//! protocol or seed than the config asks for. Preparation holds a lock inside the split folder,
//! so runs started at once on an unprepared split (`JOBS=2 scripts/results.sh`) make it once.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::DataConfig;

/// When the config prepares its own split (`data.source` set), an existing `split.json` must
/// have been made with the same protocol and seed: otherwise a changed config would silently
/// train and evaluate on an old split.
fn check_prepared_split(data: &DataConfig) -> Result<()> {
    if data.source.as_os_str().is_empty() {
        return Ok(());
    }
    let m = dataset::split_files::SplitManifest::read(&data.split_dir)
        .with_context(|| format!("reading the split in {}", data.split_dir.display()))?;
    let wanted = data.split_protocol();
    if m.protocol != wanted || m.seed != data.split_seed {
        bail!(
            "{} was prepared with {:?} and seed {}, but the config asks for {:?} and data.split_seed = {}; \
             delete that folder to prepare it again, or set data.split_dir to another folder",
            data.split_dir.join(dataset::split_files::MANIFEST_FILE).display(),
            m.protocol,
            m.seed,
            wanted,
            data.split_seed
        );
    }
    Ok(())
}

/// Makes sure `split_dir` holds a prepared split: when `split.json` is missing and `data.source`
/// is set, generates the synthetic set there first (if `data.synthetic` and it does not exist)
/// and prepares the split with saliency maps. A second process asking meanwhile waits for the
/// first and then reuses its split.
pub fn ensure_split(data: &DataConfig) -> Result<()> {
    let manifest = data.split_dir.join(dataset::split_files::MANIFEST_FILE);
    if manifest.exists() {
        return check_prepared_split(data);
    }
    if data.source.as_os_str().is_empty() {
        bail!(
            "split folder {} has no split.json: run `cargo xtask prepare-isic --root <ISIC2018> --out {}` \
             or set data.source in the config",
            data.split_dir.display(),
            data.split_dir.display()
        );
    }
    let _preparing = lock_preparation(&data.split_dir)?;
    // Another process may have prepared it while this one waited for the lock.
    if manifest.exists() {
        return check_prepared_split(data);
    }
    if !data.source.exists() {
        if !data.synthetic {
            bail!("data.source {} does not exist", data.source.display());
        }
        let (width, height) = dataset::synth::parse_size(&data.synthetic_size)?;
        let opts = dataset::synth::SynthOptions {
            scale: data.synthetic_scale,
            width,
            height,
            seed: data.split_seed,
            min_per_class: data.synthetic_min_per_class,
            ..Default::default()
        };
        tracing::info!(
            "generating the synthetic data set in {}",
            data.source.display()
        );
        let s = dataset::synth::generate_synthetic_isic(&data.source, &opts, false).with_context(
            || format!("generating the synthetic set in {}", data.source.display()),
        )?;
        tracing::info!("{} synthetic images, {} lesions", s.images, s.lesions);
    }
    let protocol = data.split_protocol();
    let opts = dataset::prepare::PrepareOptions {
        protocol,
        seed: data.split_seed,
        ..dataset::prepare::PrepareOptions::new(&data.source, &data.split_dir)
    };
    tracing::info!(
        "preparing the split and saliency maps in {}",
        data.split_dir.display()
    );
    let report = dataset::prepare::prepare_split(&opts).with_context(|| {
        format!(
            "preparing {} from {}",
            data.split_dir.display(),
            data.source.display()
        )
    })?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// File name of the preparation lock inside a split folder.
pub const PREPARE_LOCK_FILE: &str = "prepare.lock";

/// Waits for and takes an exclusive lock on `<split_dir>/prepare.lock` (creating the folder);
/// released when the returned file is dropped, or by the operating system when the process dies.
fn lock_preparation(split_dir: &Path) -> Result<File> {
    std::fs::create_dir_all(split_dir)
        .with_context(|| format!("cannot create the split folder {}", split_dir.display()))?;
    let path = split_dir.join(PREPARE_LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}
