//! The command line as an operator uses it: hashing tokens, checking the
//! configuration, layering variables.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn scim_removals(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scim-removals"));
    command
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("SCIM_REMOVALS_CONFIG")
        .env_remove("GENESYSCLOUD_OAUTHCLIENT_ID")
        .env_remove("GENESYSCLOUD_OAUTHCLIENT_SECRET")
        .env_remove("GENESYSCLOUD_REGION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hash_token_prints_the_sha256_of_stdin_without_its_trailing_newline() {
    let output = scim_removals(&["hash-token"], &[], "abc\n");

    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn check_config_takes_genesys_variables_and_redacts_the_secret() {
    let envs = [
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "ecosystem-id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "very-secret-value"),
        ("GENESYSCLOUD_REGION", "eu-west-1"),
        (
            "SCIM_REMOVALS__STORE__URL",
            "postgres://scim:db-password@db/scim",
        ),
    ];
    let output = scim_removals(&["check-config"], &envs, "");

    let shown = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(shown.contains("ecosystem-id"));
    assert!(shown.contains("eu-west-1"));
    assert!(!shown.contains("very-secret-value"));
    assert!(!shown.contains("db-password"));
    assert!(shown.contains("[redacted]"));
}

#[test]
fn our_own_variables_win_over_the_genesys_ecosystem_ones() {
    let envs = [
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "ecosystem-id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        ("SCIM_REMOVALS__GENESYS__CLIENT_ID", "our-id"),
    ];
    let output = scim_removals(&["check-config"], &envs, "");

    let shown = text(&output.stdout);
    assert!(shown.contains("\"client_id\": \"our-id\""), "{shown}");
}

#[test]
fn check_config_exits_2_with_a_clear_message_on_bad_config() {
    let envs = [
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        ("GENESYSCLOUD_REGION", "atlantis-1"),
    ];
    let output = scim_removals(&["check-config"], &envs, "");

    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("atlantis-1"));
}

#[test]
fn a_config_file_is_named_by_flag_or_variable() {
    let dir = std::env::temp_dir().join(format!("scim-removals-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("custom.toml");
    std::fs::write(
        &file,
        "[genesys]\nclient_id = \"from-file\"\nclient_secret = \"s\"\n[worker]\nlease_s = 90\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let by_flag = scim_removals(&["check-config", "--config", path], &[], "");
    let by_variable = scim_removals(&["check-config"], &[("SCIM_REMOVALS_CONFIG", path)], "");

    for output in [by_flag, by_variable] {
        let shown = text(&output.stdout);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            shown.contains("from-file") && shown.contains("\"lease_s\": 90"),
            "{shown}"
        );
    }
    let missing = scim_removals(&["check-config", "--config", "/nonexistent.toml"], &[], "");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn an_unknown_setting_is_refused() {
    let envs = [
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        ("SCIM_REMOVALS__WORKER__MAX_CONCURRENT_GROUPZ", "3"),
    ];
    let output = scim_removals(&["check-config"], &envs, "");

    assert_eq!(output.status.code(), Some(2));
}
