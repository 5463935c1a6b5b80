//! External tools some tests use. Under CI (`CI=true`) a missing tool fails the test;
//! elsewhere the test says why it did nothing.

use std::path::PathBuf;

pub fn required_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} is required in CI but not on PATH");
        eprintln!("SKIPPED: {name} is not installed (CI installs it)");
    }
    found
}
