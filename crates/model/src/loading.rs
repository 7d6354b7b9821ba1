//! Loading timm-named safetensors into a [`VarMap`], with one error listing every problem.
//!
//! Names are normalised first: leading `module.` / `base_encoder.` prefixes (DataParallel,
//! MoCo) are stripped, `num_batches_tracked` is dropped. Then each file tensor is matched to
//! a variable by name; the error (if any) lists the missing, unexpected and mis-shaped ones.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{ModelError, Result};

/// Prefixes stripped from file names (repeatedly, in any order).
pub const STRIPPED_PREFIXES: [&str; 2] = ["module.", "base_encoder."];

/// How strict a load is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Accept (and ignore) file tensors that match no variable.
    pub allow_unexpected: bool,
    /// Variables whose names start with one of these may be absent from the file (they keep
    /// their current values), e.g. `["projector.", "predictor.", "head."]` for an encoder-only
    /// timm state dict.
    pub optional_prefixes: Vec<String>,
    /// Only variables starting with this prefix are expected (the others are left alone),
    /// e.g. `patch_embed.backbone.` for a trunk-only load.
    pub only_prefix: Option<String>,
}

/// What a successful load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Variables set from the file.
    pub loaded: Vec<String>,
    /// Optional variables the file did not hold (left unchanged).
    pub kept: Vec<String>,
    /// File tensors ignored (only with `allow_unexpected`, or layer4/fc of a resnet50d).
    pub ignored: Vec<String>,
    /// Classifier tensors of the file whose shape differs from the model's, not loaded (the
    /// model's keep their values), as `name: file [..], model [..]`: the 1000-class `fc` of an
    /// ImageNet `resnet50d` loaded whole into a 7-class `resnet50` ([`load_resnet50d`]).
    pub mismatched: Vec<String>,
}

/// Strips [`STRIPPED_PREFIXES`] from a file name.
pub fn normalise_name(name: &str) -> &str {
    let mut n = name;
    loop {
        match STRIPPED_PREFIXES.iter().find_map(|p| n.strip_prefix(p)) {
            Some(rest) => n = rest,
            None => return n,
        }
    }
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| ModelError::SafetensorsIo {
        path: path.to_path_buf(),
        source,
    })
}

/// Normalises names of a raw tensor map (prefix stripping, `num_batches_tracked` dropped).
/// Two raw names that normalise to the same name are an error.
pub fn normalise_tensors(
    raw: HashMap<String, Tensor>,
    origin: &str,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let mut clashes = Vec::new();
    for (name, t) in raw {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let n = normalise_name(&name).to_string();
        if out.insert(n.clone(), t).is_some() {
            clashes.push(n);
        }
    }
    if !clashes.is_empty() {
        clashes.sort();
        return Err(ModelError::WeightsMismatch {
            origin: origin.to_string(),
            report: format!(
                "names repeated after stripping prefixes: {}",
                clashes.join(", ")
            ),
        });
    }
    Ok(out)
}

/// Sets variables of `varmap` from `tensors` (already normalised); all checks happen before
/// any variable is written, so a failed load changes nothing.
pub fn load_tensors(
    varmap: &VarMap,
    tensors: &BTreeMap<String, Tensor>,
    opts: &LoadOptions,
    origin: &str,
) -> Result<LoadReport> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let expected: BTreeMap<&String, &Var> = data
        .iter()
        .filter(|(n, _)| {
            opts.only_prefix
                .as_ref()
                .is_none_or(|p| n.starts_with(p.as_str()))
        })
        .collect();
    let mut report = LoadReport::default();
    let (mut missing, mut unexpected, mut misshaped) = (Vec::new(), Vec::new(), Vec::new());
    for (name, var) in &expected {
        match tensors.get(name.as_str()) {
            None if opts
                .optional_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str())) =>
            {
                report.kept.push(name.to_string())
            }
            None => missing.push(format!("{name} {:?}", var.dims())),
            Some(t) if t.dims() != var.dims() => misshaped.push(format!(
                "{name}: file {:?}, model {:?}",
                t.dims(),
                var.dims()
            )),
            Some(_) => report.loaded.push(name.to_string()),
        }
    }
    for (name, t) in tensors {
        if !expected.contains_key(name) {
            if opts.allow_unexpected {
                report.ignored.push(name.clone());
            } else {
                unexpected.push(format!("{name} {:?}", t.dims()));
            }
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let mut r = String::new();
        for (title, list) in [
            ("missing from the file", &missing),
            ("unexpected (not in the model)", &unexpected),
            ("wrong shape", &misshaped),
        ] {
            if !list.is_empty() {
                r.push_str(&format!("  {} tensors {title}:\n", list.len()));
                for item in list {
                    r.push_str(&format!("    {item}\n"));
                }
            }
        }
        return Err(ModelError::WeightsMismatch {
            origin: origin.to_string(),
            report: r.trim_end().to_string(),
        });
    }
    for name in &report.loaded {
        let var = expected[name];
        let t = tensors[name]
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)?;
    }
    Ok(report)
}

/// Reads a safetensors file and loads it into `varmap` (see [`load_tensors`]).
pub fn load_safetensors(
    varmap: &VarMap,
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let tensors = normalise_tensors(read_safetensors(path)?, &origin)?;
    load_tensors(varmap, &tensors, opts, &origin)
}

/// Loads a plain timm `resnet50d` state dict (`conv1.0.weight`, `layer1.0.bn1.running_var`, ..)
/// into the trunk variables `patch_embed.backbone.*`; `layer4.*` and `fc.*` are ignored. Every
/// trunk variable must be in the file.
pub fn load_resnet_trunk(varmap: &VarMap, path: impl AsRef<Path>) -> Result<LoadReport> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let raw = normalise_tensors(read_safetensors(path)?, &origin)?;
    let mut ignored = Vec::new();
    let mut tensors = BTreeMap::new();
    for (name, t) in raw {
        if name.starts_with("layer4.") || name.starts_with("fc.") {
            ignored.push(name);
        } else {
            tensors.insert(format!("{TRUNK_PREFIX}{name}"), t);
        }
    }
    let opts = LoadOptions {
        only_prefix: Some(TRUNK_PREFIX.to_string()),
        ..LoadOptions::default()
    };
    let mut report = load_tensors(varmap, &tensors, &opts, &origin)?;
    report.ignored.extend(ignored);
    Ok(report)
}

/// Name prefix of the trunk's variables in the encoder.
pub const TRUNK_PREFIX: &str = "patch_embed.backbone.";

/// Prefix of the plain ResNet-50's classifier (timm's `fc`).
pub const RESNET_CLASSIFIER_PREFIX: &str = "fc.";

/// Loads a timm `resnet50d` state dict (`conv1.0.weight`, .., `layer4.2.bn3.running_var`,
/// `fc.weight`), or a saved `arch = "resnet50"` query network, into the whole `resnet50` network
/// of `varmap`. Every backbone variable must be in the file with its shape, and the file must hold
/// nothing else but `projector.*` / `predictor.*` (optional: absent ones keep their values).
/// The classifier `fc.*` loads when its shape fits; a file's `fc.*` of another shape (1000
/// ImageNet classes against 7) is listed in [`LoadReport::mismatched`] and not loaded, as is an
/// absent one in [`LoadReport::kept`].
pub fn load_resnet50d(varmap: &VarMap, path: impl AsRef<Path>) -> Result<LoadReport> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let mut tensors = normalise_tensors(read_safetensors(path)?, &origin)?;
    let mut mismatched = Vec::new();
    let mut mismatched_names = Vec::new();
    {
        let data = varmap.data().lock().expect("VarMap lock poisoned");
        tensors.retain(|name, t| {
            if !name.starts_with(RESNET_CLASSIFIER_PREFIX) {
                return true;
            }
            match data.get(name) {
                Some(var) if var.dims() != t.dims() => {
                    mismatched.push(format!(
                        "{name}: file {:?}, model {:?}",
                        t.dims(),
                        var.dims()
                    ));
                    mismatched_names.push(name.clone());
                    false
                }
                _ => true,
            }
        });
    }
    let opts = LoadOptions {
        optional_prefixes: ["projector.", "predictor.", RESNET_CLASSIFIER_PREFIX]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..LoadOptions::default()
    };
    let mut report = load_tensors(varmap, &tensors, &opts, &origin)?;
    // A mismatched classifier is reported once, as mismatched, not also as absent.
    report.kept.retain(|n| !mismatched_names.contains(n));
    report.mismatched = mismatched;
    Ok(report)
}
