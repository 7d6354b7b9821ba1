//! End to end on the CPU: synthetic set -> split with saliency maps -> 2 epochs of a tiny SPMix
//! model -> test evaluation of the best checkpoint -> `predictions.csv` consistent with
//! `report.json`; then `eval --split val --checkpoint last` into its own folder.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use trainer::checkpoint::Which;
use trainer::config::Config;
use trainer::train::{Outcome, Trainer};

#[test]
fn synthetic_to_report() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = format!(
        r#"
[run]
name = "e2e"
output_dir = "{d}/runs"
epochs = 2
batch_size = 8
[data]
split_dir = "{d}/split"
source = "{d}/synth"
synthetic = true
synthetic_scale = 0.004
synthetic_size = "64x48"
synthetic_min_per_class = 10
protocol = "stratified"
[model]
trunk_layers = [1, 1, 1]
trunk_channels = [4, 8, 8]
stem_width = 4
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
image_size = 32
num_classes = 7
proj_hidden = 32
proj_dim = 16
[loss]
queue_size = 64
[optim]
lr = 1e-3
warmup_epochs = 1
"#,
        d = d.display()
    );
    let cfg = Config::from_toml_str(&text, "e2e", &[]).unwrap();
    let mut t = Trainer::create(cfg, Arc::new(AtomicBool::new(false))).unwrap();
    t.progress = false;
    assert!(d.join("split/split.json").exists() && d.join("split/saliency").is_dir());
    assert_eq!(t.fit().unwrap(), Outcome::Finished);
    let metrics = t.finish().unwrap();
    let run = t.run_dir.clone();
    for f in [
        "config.toml",
        "run.json",
        "metrics.csv",
        "report.md",
        "curves.png",
        "confusion.png",
    ] {
        assert!(run.join(f).exists(), "{f} missing from {}", run.display());
    }

    let report = trainer::report::read_report(&run.join("report.json")).unwrap();
    assert_eq!(report.context.split, "test");
    assert_eq!(report.context.method, "spmix");
    assert_eq!(report.metrics, metrics);
    let (images, probs) =
        trainer::report::read_predictions_csv(&run.join("predictions.csv")).unwrap();
    assert_eq!(images.len(), report.metrics.num_samples);
    assert!(probs
        .iter()
        .all(|p| p.len() == 7 && (p.iter().sum::<f32>() - 1.0).abs() < 1e-4));
    // The predictions' argmax against the test labels reproduces the report.
    let test = dataset::data_set::DataSet::open(&d.join("split"), "test").unwrap();
    let label_of: std::collections::HashMap<&str, usize> = test
        .items()
        .iter()
        .map(|i| (i.image.as_str(), i.label))
        .collect();
    let labels: Vec<usize> = images.iter().map(|i| label_of[i.as_str()]).collect();
    let preds = trainer::metrics::argmax_rows(&probs);
    let correct = labels.iter().zip(&preds).filter(|(a, b)| a == b).count();
    assert!((correct as f64 / labels.len() as f64 - report.metrics.total_accuracy).abs() < 1e-12);
    let total: usize = report.metrics.confusion.iter().flatten().sum();
    assert_eq!(total, images.len());

    let out = run.join("eval-val-last");
    let val = trainer::evaluate_run::evaluate_run(&run, "val", Which::Last, None, &out).unwrap();
    assert!(out.join("report.json").exists() && out.join("predictions.csv").exists());
    assert_eq!(
        val.num_samples,
        dataset::data_set::DataSet::open(&d.join("split"), "val")
            .unwrap()
            .len()
    );
}
