//! relay-api refuses to start, naming the variable, when what it needs is not configured.

#[test]
fn refuses_to_start_without_its_configuration() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_relay-api")).env_clear().output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started without configuration");
    assert!(stderr.contains("SERVICE_TOKENS"), "{stderr}");
}
