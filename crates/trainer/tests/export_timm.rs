//! `trainer export`: the export of a committed tiny run is the state dict timm loaded (names,
//! shapes, dtypes, values) with the preprocessing timm applied, and `trainer predict` gives timm's
//! logits on three images within 1e-4; the paper's model exports exactly the tensors of timm's
//! `vit_small_resnet50d_s16_224`; existing files are not replaced without `--force`.
//!
//! Fixtures: `tests/fixtures/user_data/` (run/, export/, export_images/,
//! timm_vit_small_resnet50d_s16_224_tensors.json), written by
//! `crates/trainer/scripts/user_data_fixtures.py` (timm 1.0.31 through docs/export_timm.py).
//!
//! The chain the tests close: the fresh export equals `export/model.safetensors` and
//! `export/preprocess.json`; timm, given exactly those, produced `export/timm_logits.json`; the
//! trainer's `predict` reproduces those logits. A wrong name, a swapped or transposed tensor, a
//! different mean/std/resize, or a permuted class order breaks one of the links.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use model::{ModelConfig, QueryNetwork};

mod timm_tensor_list;
use timm_tensor_list::timm_tensor_list;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/user_data")
}

fn trainer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.env("RUST_LOG", "warn");
    c
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    trainer()
        .args(["export", "--run"])
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn read(path: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn export_of_the_tiny_run_is_the_state_dict_timm_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp").join("model.safetensors");
    let o = export(&fixtures().join("run"), &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let fresh = read(&out);
    let committed = read(&fixtures().join("export/model.safetensors"));
    let names = |m: &BTreeMap<String, Tensor>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&fresh), names(&committed));
    for (name, t) in &committed {
        let f = &fresh[name];
        assert_eq!(f.dtype(), t.dtype(), "{name}");
        assert_eq!(f.dims(), t.dims(), "{name}");
        assert_eq!(values(f), values(t), "{name}");
    }
    for name in fresh.keys() {
        for training_only in [
            "projector.",
            "predictor.",
            "key.",
            "opt.",
            "queue",
            "query.",
        ] {
            assert!(
                !name.starts_with(training_only),
                "{name} must not be exported"
            );
        }
    }
    assert!(fresh.contains_key("head.weight") && fresh.contains_key("patch_embed.proj.weight"));
    // The checkpoint it came from does hold the training state the export leaves out.
    let ckpt = std::fs::read_dir(fixtures().join("run/checkpoints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("state.safetensors");
    let all = read(&ckpt);
    assert!(all.keys().any(|k| k.starts_with("key.")));
    assert!(all.keys().any(|k| k.starts_with("query.projector.")));

    let pp = json(&dir.path().join("exp/preprocess.json"));
    assert_eq!(pp, json(&fixtures().join("export/preprocess.json")));
    assert_eq!(pp["image_size"], 32);
    assert_eq!(pp["eval_resize"], 37); // round(32 * 256 / 224)
    assert_eq!(
        pp["class_order"],
        serde_json::json!(["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"])
    );
    assert_eq!(pp["timm_model"], serde_json::Value::Null);
}

/// Rows `(image, [C] probabilities)` of a `predict` CSV.
fn read_predict_csv(path: &Path) -> Vec<(String, Vec<f64>, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "image",
            "MEL",
            "NV",
            "BCC",
            "AKIEC",
            "BKL",
            "DF",
            "VASC",
            "predicted",
            "file",
            "error"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let p = (1..8).map(|j| rec[j].parse::<f64>().unwrap()).collect();
            (rec[0].to_string(), p, rec[8].to_string())
        })
        .collect()
}

#[test]
fn predict_gives_timms_logits_on_three_images() {
    let timm = json(&fixtures().join("export/timm_logits.json"));
    let images: Vec<PathBuf> = timm["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| fixtures().join("export_images").join(n.as_str().unwrap()))
        .collect();
    assert_eq!(images.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("p.csv");
    let o = trainer()
        .args(["predict", "--device", "cpu", "--run"])
        .arg(fixtures().join("run"))
        .arg("--out")
        .arg(&csv_path)
        .args(&images)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_predict_csv(&csv_path);
    let classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    for (i, (image, probs, predicted)) in rows.iter().enumerate() {
        assert_eq!(
            *image,
            images[i].file_stem().unwrap().to_string_lossy(),
            "row order"
        );
        let logits: Vec<f64> = timm["logits"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // Softmax drops a per-row constant: compare log-probabilities and logits centred.
        let log_p: Vec<f64> = probs.iter().map(|p| p.ln()).collect();
        let centre = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| x - m).collect::<Vec<_>>()
        };
        let (a, b) = (centre(&log_p), centre(&logits));
        for k in 0..7 {
            assert!(
                (a[k] - b[k]).abs() <= 1e-4,
                "{image} class {}: trainer {} timm {}",
                classes[k],
                a[k],
                b[k]
            );
        }
        let best = (0..7)
            .max_by(|&x, &y| logits[x].total_cmp(&logits[y]))
            .unwrap();
        assert_eq!(predicted, classes[best]);
    }
}

/// `(name, shape, dtype)` of every tensor of timm's `vit_small_resnet50d_s16_224` state dict.
fn timm_paper_tensors() -> BTreeMap<String, (Vec<usize>, DType)> {
    timm_tensors(&fixtures().join("timm_vit_small_resnet50d_s16_224_tensors.json"))
}

/// `name -> (shape, dtype)` of every tensor listed in a timm state-dict fixture.
fn timm_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, DType)> {
    timm_tensor_list(path)
        .into_iter()
        .map(|(name, shape, dtype)| (name, (shape, dtype)))
        .collect()
}

#[test]
fn the_paper_model_exports_exactly_timms_vit_small_resnet50d_s16_224_tensors() {
    let cfg = ModelConfig::full();
    assert!(trainer::export::is_timm_architecture(&cfg));
    assert_eq!(
        trainer::export::timm_model_name(&ModelConfig::resnet50()),
        Some("resnet50d")
    );
    assert!(!trainer::export::is_timm_architecture(
        &ModelConfig::resnet50()
    ));
    let query = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let exported: BTreeMap<String, (Vec<usize>, DType)> = trainer::export::timm_state_dict(&query)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, (t.dims().to_vec(), t.dtype())))
        .collect();
    let timm = timm_paper_tensors();
    assert!(timm.len() > 300);
    let missing: Vec<_> = timm.keys().filter(|k| !exported.contains_key(*k)).collect();
    let extra: Vec<_> = exported.keys().filter(|k| !timm.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (name, want) in &timm {
        assert_eq!(&exported[name], want, "{name}");
    }
}

/// `model.arch = "resnet50"` exports timm's `resnet50d` state dict (the fixture the pretrained
/// loader is tested with), with a 7-class `fc`.
#[test]
fn the_resnet50_model_exports_exactly_timms_resnet50d_tensors() {
    let cfg = ModelConfig::resnet50();
    let query = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let exported: BTreeMap<String, (Vec<usize>, DType)> = trainer::export::timm_state_dict(&query)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, (t.dims().to_vec(), t.dtype())))
        .collect();
    let mut timm = timm_tensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_resnet50d_tensors.json"),
    );
    // The fixture is timm's 1000-class ImageNet model.
    timm.get_mut("fc.weight").unwrap().0 = vec![cfg.num_classes, 2048];
    timm.get_mut("fc.bias").unwrap().0 = vec![cfg.num_classes];
    assert!(timm.len() > 300);
    assert_eq!(exported, timm);
}

#[test]
fn an_existing_export_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let pp = dir.path().join("preprocess.json");
    std::fs::write(&pp, "{\"mine\": true}").unwrap();
    let o = export(&fixtures().join("run"), &out, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(pp.to_str().unwrap()) && err.contains("--force"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written when one file is refused");
    assert_eq!(std::fs::read_to_string(&pp).unwrap(), "{\"mine\": true}");

    let o = export(&fixtures().join("run"), &out, &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&pp)["image_size"], 32);
    let o = export(&fixtures().join("run"), &out, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(out.to_str().unwrap()));

    let o = export(&fixtures().join("run"), &pp, &["--force"]);
    assert!(!o.status.success(), "--out preprocess.json is refused");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn export_of_a_missing_run_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("no-such-run");
    let o = export(&run, &dir.path().join("m.safetensors"), &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(run.to_str().unwrap()));
}

/// MiSLAS's per-class logit scale is folded into the exported classifier: timm's plain
/// `fc` on the exported rows gives the network's scaled logits, and no `logit_scale` is left.
#[test]
fn a_logit_scale_is_folded_into_the_exported_classifier() {
    let mut cfg = ModelConfig::resnet50();
    cfg.trunk_layers = vec![1, 1, 1, 1];
    cfg.trunk_channels = vec![4, 8, 8, 16];
    cfg.image_size = 32;
    let dev = Device::Cpu;
    let query = QueryNetwork::with_logit_scale(&cfg, &dev).unwrap();
    let name = query.logit_scale_name().unwrap();
    assert_eq!(name, "fc.logit_scale");
    let scale: Vec<f32> = (0..cfg.num_classes)
        .map(|k| 0.5 + 0.25 * k as f32)
        .collect();
    let var = query.varmap().data().lock().unwrap()[&name].clone();
    var.set(&Tensor::new(scale.as_slice(), &dev).unwrap())
        .unwrap();

    let features = Tensor::randn(0f32, 1.0, (3, cfg.feature_dim()), &dev).unwrap();
    let want = query.classify(&features).unwrap();
    let unscaled = query.classify_unscaled(&features).unwrap();
    assert!(values(&(&want - &unscaled).unwrap().abs().unwrap())
        .iter()
        .any(|d| *d > 1e-3));

    let sd = trainer::export::timm_state_dict(&query).unwrap();
    assert!(
        !sd.keys().any(|k| k.contains("logit_scale")),
        "{:?}",
        sd.keys()
    );
    let got = features
        .matmul(&sd["fc.weight"].t().unwrap())
        .unwrap()
        .broadcast_add(&sd["fc.bias"])
        .unwrap();
    let worst = values(&(&got - &want).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "exported classifier off by {worst}");
}
