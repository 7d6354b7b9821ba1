//! Bad configs: unknown keys (with a suggestion), bad values, bad overrides, missing files.

use trainer::config::{Config, MethodName};

fn err(text: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Config::from_toml_str(text, "test.toml", &sets)
        .expect_err("the config should be rejected")
        .to_string()
}

#[test]
fn unknown_key_names_the_path_and_suggests_the_nearest() {
    let e = err("[optim]\nweight_decy = 0.1\n", &[]);
    assert!(e.contains("test.toml"), "{e}");
    assert!(e.contains("unknown key `optim.weight_decy`"), "{e}");
    assert!(e.contains("did you mean `optim.weight_decay`"), "{e}");
    let e = err("[modle]\ndepth = 2\n", &[]);
    assert!(e.contains("did you mean `model`"), "{e}");
    let e = err("[model]\nembed = 2\n", &[]);
    assert!(e.contains("model.embed"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = err("[method]\nname = \"mixup\"\n", &[]);
    assert!(e.contains("mixup") && e.contains("spmix"), "{e}");
    let e = err("[optim]\nlr = -1.0\n", &[]);
    assert!(e.contains("optim.lr"), "{e}");
    let e = err("[run]\ndevice = \"gpu\"\n", &[]);
    assert!(e.contains("cpu` or `cuda:N"), "{e}");
    let e = err("[mix]\nalpha = 0.3\n", &[]);
    assert!(e.contains("alpha"), "{e}");
    let e = err("[run]\nepochs = \"ten\"\n", &[]);
    assert!(e.contains("epochs"), "{e}");
    let e = err("[model]\nimage_size = 40\n", &[]);
    assert!(e.contains("mix.patch_size"), "{e}");
    let e = err("[run\n", &[]);
    assert!(e.contains("malformed TOML"), "{e}");
}

#[test]
fn overrides_set_any_value_and_reject_unknown_keys() {
    let sets: Vec<String> = [
        "method.name=ce-resample",
        "optim.lr=1",
        "mix.patch=false",
        "run.name=x y",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = Config::from_toml_str("", "t", &sets).unwrap();
    assert_eq!(cfg.method.name, MethodName::CeResample);
    assert_eq!(cfg.optim.lr, 1.0);
    assert!(!cfg.mix.patch);
    assert_eq!(cfg.run.name, "x y");
    let e = err("", &["optim.lrr=1"]);
    assert!(e.contains("did you mean `optim.lr`"), "{e}");
    let e = err("", &["optim"]);
    assert!(e.contains("KEY=VALUE"), "{e}");
    let e = err("", &["optim=3"]);
    assert!(e.contains("is a table"), "{e}");
}

#[test]
fn missing_file_names_it() {
    let e = Config::from_file("no/such/config.toml".as_ref(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no/such/config.toml"), "{e}");
}

#[test]
fn reports_use_the_paper_groups() {
    use dataset::Group::*;
    // MEL, NV, BCC, AKIEC, BKL, DF, VASC
    assert_eq!(
        trainer::evaluate::paper_groups(),
        [Medium, Many, Medium, Few, Medium, Few, Few]
    );
}

/// A split folder prepared with one protocol is not silently reused by a config that asks for
/// another: the error names split.json, both protocols and the way out.
#[test]
fn a_split_prepared_with_another_protocol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = |protocol: &str| {
        format!(
            "[data]\nsplit_dir = \"{d}/split\"\nsource = \"{d}/synth\"\nsynthetic = true\n\
             synthetic_scale = 0.004\nsynthetic_size = \"64x48\"\nsynthetic_min_per_class = 10\n\
             {protocol}\n",
            d = dir.path().display()
        )
    };
    let stratified =
        Config::from_toml_str(&text("protocol = \"stratified\""), "a.toml", &[]).unwrap();
    trainer::train::ensure_split(&stratified.data).unwrap();
    // Same config again: the prepared split is reused.
    trainer::train::ensure_split(&stratified.data).unwrap();
    let balanced = Config::from_toml_str(
        &text("protocol = \"balanced\"\nval_per_class = 2\ntest_per_class = 3"),
        "b.toml",
        &[],
    )
    .unwrap();
    let e = format!(
        "{:#}",
        trainer::train::ensure_split(&balanced.data).unwrap_err()
    );
    assert!(e.contains("split.json"), "{e}");
    assert!(e.contains("Stratified") && e.contains("Balanced"), "{e}");
    assert!(e.contains("delete that folder"), "{e}");
    let other_seed = Config::from_toml_str(
        &text("protocol = \"stratified\"\nsplit_seed = 7"),
        "c.toml",
        &[],
    )
    .unwrap();
    let e = format!(
        "{:#}",
        trainer::train::ensure_split(&other_seed.data).unwrap_err()
    );
    assert!(e.contains("split_seed = 7"), "{e}");
}

/// Two runs started at once on an unprepared split (`JOBS=2 scripts/results.sh`) both get it:
/// the second waits for the first's preparation instead of generating and writing it again.
#[test]
fn runs_started_at_once_prepare_one_split_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[data]\nsplit_dir = \"{d}/split\"\nsource = \"{d}/synth\"\nsynthetic = true\n\
         synthetic_scale = 0.004\nsynthetic_size = \"64x48\"\nsynthetic_min_per_class = 10\n\
         protocol = \"stratified\"\n",
        d = dir.path().display()
    );
    let cfg = Config::from_toml_str(&text, "a.toml", &[]).unwrap();
    let results: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| trainer::train::ensure_split(&cfg.data)))
            .collect();
        runs.into_iter()
            .map(|run| match run.join().unwrap() {
                Ok(()) => String::new(),
                Err(e) => format!("{e:#}"),
            })
            .collect()
    });
    assert!(results.iter().all(String::is_empty), "{results:?}");
    let manifest = dataset::split_files::SplitManifest::read(&dir.path().join("split")).unwrap();
    assert_eq!(manifest.seed, cfg.data.split_seed);
}
