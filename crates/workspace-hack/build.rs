//! Empty: cargo resolves the `[build-dependencies]` of a package (here: syn's features for the
//! whole workspace's proc macros) only when the package has a build script.

fn main() {}
