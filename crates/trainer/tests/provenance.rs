//! A run's recorded git revision says when its code was not exactly the commit's.

use std::path::Path;
use std::process::Command;

use trainer::run_dir::git_revision_in;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn uncommitted_changes_to_tracked_files_mark_the_revision_dirty() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(git_revision_in(dir.path()), "unknown");
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("a.rs"), "fn main() {}\n").unwrap();
    git(dir.path(), &["add", "a.rs"]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    let clean = git_revision_in(dir.path());
    assert_eq!(clean.len(), 40, "{clean}");
    assert!(clean.chars().all(|c| c.is_ascii_hexdigit()), "{clean}");
    // An untracked file (a run folder, say) does not make the code differ from the commit.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    assert_eq!(git_revision_in(dir.path()), clean);
    std::fs::write(dir.path().join("a.rs"), "fn main() { loop {} }\n").unwrap();
    assert_eq!(git_revision_in(dir.path()), format!("{clean}-dirty"));
}
