//! Nothing: this package holds the integration tests (`it/`), which use every crate of the
//! workspace; see `it/main.rs`.
