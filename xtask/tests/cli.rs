//! `cargo xtask --version` names the binary and the crate version.

#[test]
fn version_names_the_binary_and_the_crate_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("xtask {}", env!("CARGO_PKG_VERSION")));
}
