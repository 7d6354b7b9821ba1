//! `run.pretrained`: timm's real `resnet50d` names and shapes fill every trunk tensor of the
//! paper's model (configs/spmix.toml) and only layer4/fc are left over; a file fitting neither
//! accepted form gets both reasons; a run of the paper's model without weights gets a warning.
//!
//! The names come from `tests/fixtures/timm_resnet50d_tensors.json`, written by
//! `scripts/timm_resnet50d_names.py` from timm 1.0.31 (names, shapes and dtypes only); the weights
//! file is built here, zero-filled.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use model::loading::TRUNK_PREFIX;
use model::{ModelConfig, QueryNetwork};
use trainer::config::Config;
use trainer::pretrained::{
    load_pretrained, missing_pretrained_warning, PretrainedError, PretrainedForm, RESNET50D_FILE,
};

mod timm_tensor_list;
use timm_tensor_list::timm_tensor_list;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_config(name: &str) -> Config {
    let p = manifest_dir().join("../../configs").join(name);
    Config::from_file(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()))
}

/// `(name, shape, dtype)` of every tensor in timm's `resnet50d` state dict.
fn timm_resnet50d_tensors() -> Vec<(String, Vec<usize>, DType)> {
    timm_tensor_list(&manifest_dir().join("tests/fixtures/timm_resnet50d_tensors.json"))
}

fn save_zeros(dir: &Path, name: &str, tensors: &[(String, Vec<usize>, DType)]) -> PathBuf {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, shape, dtype)| {
            let t = Tensor::zeros(shape.as_slice(), *dtype, &Device::Cpu).unwrap();
            (n.clone(), t)
        })
        .collect();
    let path = dir.join(name);
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn abs_sum(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn timm_resnet50d_fills_every_trunk_tensor_of_the_paper_model_and_leaves_layer4_and_fc_unused() {
    let cfg = shipped_config("spmix.toml");
    let query = QueryNetwork::new(&cfg.model, &Device::Cpu).unwrap();
    let before = query.tensors().unwrap();
    let trunk: BTreeSet<String> = before
        .keys()
        .filter(|n| n.starts_with(TRUNK_PREFIX))
        .cloned()
        .collect();
    assert!(trunk.len() > 200, "only {} trunk tensors", trunk.len());

    let timm = timm_resnet50d_tensors();
    let dir = tempfile::tempdir().unwrap();
    let path = save_zeros(dir.path(), "model.safetensors", &timm);
    let loaded = load_pretrained(&query, &path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(loaded.form, PretrainedForm::ResNet50dTrunk);
    let got: BTreeSet<String> = loaded.report.loaded.iter().cloned().collect();
    assert_eq!(got, trunk, "every trunk tensor, and only those, is set");
    let unused: BTreeSet<&str> = loaded.report.ignored.iter().map(String::as_str).collect();
    let expected_unused: BTreeSet<&str> = timm
        .iter()
        .map(|(n, _, _)| n.as_str())
        .filter(|n| n.starts_with("layer4.") || n.starts_with("fc."))
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    assert!(
        expected_unused.contains("fc.weight") && expected_unused.contains("layer4.2.conv3.weight")
    );
    assert_eq!(
        unused, expected_unused,
        "exactly layer4 and fc are reported unused"
    );

    // The values were written: the zero file zeroes the trunk, the rest keeps its random start.
    let after = query.tensors().unwrap();
    let stem = format!("{TRUNK_PREFIX}conv1.0.weight");
    assert!(abs_sum(&before[&stem]) > 0.0);
    assert_eq!(abs_sum(&after[&stem]), 0.0);
    let outside: Vec<&String> = before
        .keys()
        .filter(|n| !n.starts_with(TRUNK_PREFIX) && n.ends_with("weight"))
        .collect();
    assert!(!outside.is_empty());
    for n in outside {
        assert_eq!(
            abs_sum(&after[n]),
            abs_sum(&before[n]),
            "{n} must not change"
        );
    }
}

fn tiny() -> ModelConfig {
    ModelConfig::from_toml_str(
        "[model]\ntrunk_layers = [1, 1, 1]\ntrunk_channels = [4, 8, 16]\nstem_width = 4\n\
         embed_dim = 16\ndepth = 1\nnum_heads = 2\nmlp_ratio = 2.0\nimage_size = 32\n\
         num_classes = 3\nproj_hidden = 8\nproj_dim = 4\n",
        "tiny",
    )
    .unwrap()
}

#[test]
fn a_file_fitting_neither_form_shows_both_reasons() {
    let query = QueryNetwork::new(&tiny(), &Device::Cpu).unwrap();
    let before = query.tensors().unwrap();
    // timm's resnet50d has the wrong widths for this tiny trunk and no transformer at all.
    let dir = tempfile::tempdir().unwrap();
    let path = save_zeros(
        dir.path(),
        "resnet50d.safetensors",
        &timm_resnet50d_tensors(),
    );

    let err = load_pretrained(&query, &path).unwrap_err();
    assert!(matches!(err, PretrainedError::NeitherForm { .. }), "{err}");
    let msg = err.to_string();
    for needle in [
        path.to_str().unwrap(),
        "As a whole hybrid encoder",
        // the encoder reading: the transformer is missing, resnet names are unexpected
        "blocks.0.attn.qkv.weight",
        "unexpected",
        "As timm's resnet50d",
        // the trunk reading: the stem's shapes differ (32 vs 4 channels)
        "patch_embed.backbone.conv1.0.weight: file [32, 3, 3, 3], model [4, 3, 3, 3]",
    ] {
        assert!(msg.contains(needle), "error lacks {needle:?}:\n{msg}");
    }
    let after = query.tensors().unwrap();
    for (n, t) in &before {
        assert_eq!(abs_sum(&after[n]), abs_sum(t), "a failed load changed {n}");
    }
}

#[test]
fn a_whole_encoder_loads_as_such() {
    let source = QueryNetwork::new(&tiny(), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encoder.safetensors");
    source.save_safetensors(&path).unwrap();
    let target = QueryNetwork::new(&tiny(), &Device::Cpu).unwrap();
    let loaded = load_pretrained(&target, &path).unwrap();
    assert_eq!(loaded.form, PretrainedForm::HybridEncoder);
    assert!(loaded
        .report
        .loaded
        .iter()
        .any(|n| n.starts_with("blocks.0.")));
}

#[test]
fn an_unreadable_file_gives_one_error_naming_it() {
    let query = QueryNetwork::new(&tiny(), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-there.safetensors");
    let err = load_pretrained(&query, &path).unwrap_err();
    assert!(matches!(err, PretrainedError::Unreadable(_)), "{err}");
    let msg = err.to_string();
    assert_eq!(msg.matches(path.to_str().unwrap()).count(), 1, "{msg}");
}

#[test]
fn the_paper_model_without_weights_warns_and_the_demo_does_not() {
    let paper = shipped_config("spmix.toml");
    assert!(paper.run.pretrained.as_os_str().is_empty());
    let warning = missing_pretrained_warning(&paper.model, &paper.run.pretrained)
        .expect("spmix.toml without weights must warn");
    assert!(warning.contains(RESNET50D_FILE) && warning.contains("resnet50d.ra2_in1k"));
    assert_eq!(
        missing_pretrained_warning(&paper.model, Path::new(RESNET50D_FILE)),
        None
    );
    let demo = shipped_config("demo.toml");
    assert_eq!(
        missing_pretrained_warning(&demo.model, &demo.run.pretrained),
        None,
        "the demo's tiny trunk cannot take resnet50d weights"
    );
}

/// `model.arch = "resnet50"` (configs/resnet50.toml): timm's real `resnet50d` names and shapes
/// fill the whole network; the 1000-class `fc` is reported as mismatched and keeps its start;
/// projector and predictor keep theirs; without weights the run warns.
#[test]
fn timm_resnet50d_fills_the_whole_resnet50_and_reports_its_imagenet_fc() {
    let cfg = shipped_config("resnet50.toml");
    let query = QueryNetwork::new(&cfg.model, &Device::Cpu).unwrap();
    let before = query.tensors().unwrap();
    let timm = timm_resnet50d_tensors();
    let dir = tempfile::tempdir().unwrap();
    let path = save_zeros(dir.path(), "model.safetensors", &timm);
    let loaded = load_pretrained(&query, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.form, PretrainedForm::ResNet50d);
    let got: BTreeSet<&str> = loaded.report.loaded.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = timm
        .iter()
        .map(|(n, _, _)| n.as_str())
        .filter(|n| !n.ends_with("num_batches_tracked") && !n.starts_with("fc."))
        .collect();
    assert!(want.contains("layer4.2.conv3.weight"));
    assert_eq!(
        got, want,
        "every backbone tensor of resnet50d, and only those, is set"
    );
    assert_eq!(
        loaded.report.mismatched,
        vec![
            "fc.bias: file [1000], model [7]".to_string(),
            "fc.weight: file [1000, 2048], model [7, 2048]".to_string(),
        ]
    );
    let after = query.tensors().unwrap();
    assert_eq!(abs_sum(&after["layer4.2.conv3.weight"]), 0.0);
    for n in ["fc.weight", "projector.0.weight", "predictor.0.weight"] {
        assert!(abs_sum(&before[n]) > 0.0);
        assert_eq!(
            abs_sum(&after[n]),
            abs_sum(&before[n]),
            "{n} must not change"
        );
    }
    let warning = missing_pretrained_warning(&cfg.model, &cfg.run.pretrained)
        .expect("resnet50.toml without weights must warn");
    assert!(warning.contains("resnet50") && warning.contains(RESNET50D_FILE));
}
