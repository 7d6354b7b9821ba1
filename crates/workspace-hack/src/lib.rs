//! Features only, no code: see this package's `Cargo.toml` for why every command of the workspace
//! depends on it.
