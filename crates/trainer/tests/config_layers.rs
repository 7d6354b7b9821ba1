//! Layered configs: `extends = "parent.toml"` (relative to the file) with the child's keys on top,
//! `--set` on top of both; cycles, missing parents and bad keys in a parent are errors that name
//! the file.

use std::path::Path;

use trainer::config::{Config, MethodName};

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn child_keys_override_the_parent_and_set_overrides_both() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base.toml",
        "[run]\nepochs = 7\nbatch_size = 16\n[optim]\nlr = 1e-3\n",
    );
    write(
        dir.path(),
        "rows/ce.toml",
        "extends = \"../base.toml\"\n[run]\nepochs = 3\n[method]\nname = \"ce\"\n",
    );
    let cfg =
        Config::from_file(&dir.path().join("rows/ce.toml"), &["optim.lr=2e-4".into()]).unwrap();
    assert_eq!(cfg.run.epochs, 3, "the child's value wins");
    assert_eq!(cfg.run.batch_size, 16, "the parent's value is kept");
    assert_eq!(cfg.method.name, MethodName::Ce);
    assert_eq!(cfg.optim.lr, 2e-4, "--set wins over both");
    // The resolved config stands alone: no `extends`, and it reads back equal.
    let text = cfg.to_toml();
    assert!(!text.contains("extends"), "{text}");
    assert_eq!(Config::from_toml_str(&text, "resolved", &[]).unwrap(), cfg);
}

#[test]
fn chains_resolve_and_cycles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", "[run]\nepochs = 9\n");
    write(
        dir.path(),
        "b.toml",
        "extends = \"a.toml\"\n[run]\nseed = 4\n",
    );
    write(
        dir.path(),
        "c.toml",
        "extends = \"b.toml\"\n[run]\nname = \"c\"\n",
    );
    let cfg = Config::from_file(&dir.path().join("c.toml"), &[]).unwrap();
    assert_eq!(
        (cfg.run.epochs, cfg.run.seed, cfg.run.name.as_str()),
        (9, 4, "c")
    );

    write(dir.path(), "x.toml", "extends = \"y.toml\"\n");
    write(dir.path(), "y.toml", "extends = \"x.toml\"\n");
    let e = Config::from_file(&dir.path().join("x.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cycle"), "{e}");
    write(dir.path(), "self.toml", "extends = \"self.toml\"\n");
    let e = Config::from_file(&dir.path().join("self.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn errors_name_the_file_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "missing-parent.toml",
        "extends = \"nope.toml\"\n",
    );
    let e = Config::from_file(&dir.path().join("missing-parent.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing-parent.toml") && e.contains("nope.toml"),
        "{e}"
    );

    write(
        dir.path(),
        "bad-parent.toml",
        "[optim]\nweight_decy = 0.1\n",
    );
    write(dir.path(), "child.toml", "extends = \"bad-parent.toml\"\n");
    let e = Config::from_file(&dir.path().join("child.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad-parent.toml"), "the parent is named: {e}");
    assert!(e.contains("did you mean `optim.weight_decay`"), "{e}");

    write(dir.path(), "typed.toml", "extends = 3\n");
    let e = Config::from_file(&dir.path().join("typed.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("typed.toml") && e.contains("path string"), "{e}");

    // `extends` is a file-level key only.
    let e = Config::from_toml_str("[run]\nextends = \"a.toml\"\n", "t.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.extends"), "{e}");
}

/// The shipped rows are overlays: a handful of lines each, the rest comes from another shipped
/// config (spmix.toml; for the ResNet-50 rows resnet50.toml or the hybrid row, themselves overlays).
#[test]
fn shipped_rows_are_small_overlays_of_spmix() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut stack = vec![root.join("baselines"), root.join("ablation")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let parent = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("extends = "))
                .unwrap_or_else(|| panic!("{} extends nothing", p.display()));
            // The parent is another shipped config (spmix.toml, resnet50.toml or a row of them).
            let parent_path = p.parent().unwrap().join(parent.trim_matches('"'));
            let parent_path = std::fs::canonicalize(&parent_path)
                .unwrap_or_else(|e| panic!("{} extends {parent}: {e}", p.display()));
            assert!(
                parent_path.starts_with(std::fs::canonicalize(&root).unwrap()),
                "{} extends {parent}, outside configs/",
                p.display()
            );
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
            assert!(
                lines.count() <= 12,
                "{} is more than an overlay",
                p.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 15, "only {seen} rows");
}
