//! The `trainer` binary's own surface: `--version`, and plain-text logs when stderr is not a
//! terminal (no colour codes in a redirected log).

mod common;

use std::process::Command;

#[test]
fn version_names_the_binary_and_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("trainer {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_redirected_log_has_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    // Setup logs (synthetic data, split) through tracing, then fails to open a GPU that this
    // build does not have: a quick run that writes log lines to a pipe.
    let text =
        common::tiny_config_text(&tmp.path().join("data"), &tmp.path().join("runs"), "ce", 1)
            .replace("[run]\n", "[run]\ndevice = \"cuda:0\"\n");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INFO") && err.contains("synthetic"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a redirected log: {err:?}"
    );
}
