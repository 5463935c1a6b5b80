//! The README's first command: relay-local on its embedded defaults delivers a signed webhook.
//! Each run starts from an empty environment, as on a newcomer's machine.

use std::process::Command;

#[test]
fn relay_local_delivers_and_verifies_the_demo_webhook() {
    let output = Command::new(env!("CARGO_BIN_EXE_relay-local"))
        .arg("--exit-after-demo")
        .env_clear()
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .output()
        .expect("relay-local runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "relay-local failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("X-Service-Token: dev-service-token"), "{stdout}");
    assert!(stdout.contains("webhook-signature verified, X-Relay-Signature verified"), "{stdout}");
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_relay-local"))
        .env_clear()
        .env("PORT", "0")
        .env("WEBHOOK_TIMEOUT", "soon")
        .output()
        .expect("relay-local runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid WEBHOOK_TIMEOUT"), "{stderr}");
}

#[test]
fn unknown_arguments_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_relay-local")).arg("--frobnicate").output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument"));
}
