//! `medchain research` on the clinic example's ledger: the CLI runs the one research policy
//! (the same release as the example's chapter 8, after Alice's revocation), writes NDJSON rows
//! and the release log, and refuses what does not hold.

use std::path::Path;
use std::process::{Command, Output};

use medchain_core::encoding::Decode;
use medchain_core::tx::TxBody;

fn clinic(dir: &Path) -> String {
    let ledger = dir.join("clinic.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_clinic"))
        .arg(&ledger)
        .output()
        .expect("run the clinic example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let story = String::from_utf8_lossy(&out.stdout);
    assert!(
        story.contains("one ResearchReleased for the whole dataset"),
        "{story}"
    );
    ledger.display().to_string()
}

fn research(ledger: &str, request: &str, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medchain"))
        .args(["research", ledger, "--releaser"])
        .arg(format!("{ledger}.st-marys.id"))
        .args(["--request", request, "--out"])
        .arg(dir.join("rows.ndjson"))
        .arg("--log")
        .arg(dir.join("release.log"))
        .env("MEDCHAIN_PASSPHRASE", "clinic-demo")
        .env("MEDCHAIN_RELEASER_PASSPHRASE", "clinic-demo")
        .output()
        .expect("run medchain")
}

#[test]
fn the_cli_releases_by_the_one_policy_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = clinic(dir.path());
    let out = research(&ledger, &format!("{ledger}.request"), dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = std::fs::read_to_string(dir.path().join("rows.ndjson")).expect("rows");
    // Alice revoked after the example's release: the programme's 12 patients, two rows each.
    assert_eq!(rows.lines().count(), 24);
    for line in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(row["pseudonym"].as_str().map(str::len), Some(32));
        assert!(
            !line.contains("dm-") && !line.contains("Hemoglobin"),
            "{line}"
        );
    }
    let log = std::fs::read(dir.path().join("release.log")).expect("log");
    match TxBody::from_bytes(&log).expect("a transaction body") {
        TxBody::ResearchReleased(log) => {
            assert_eq!(log.request.study.id, "northgate-dm2-2026");
            assert_eq!(log.patients % 10, 0);
        }
        other => panic!("not a release log: {other:?}"),
    }
    // A request whose signature does not verify: refused (exit 1), nothing written.
    std::fs::remove_file(dir.path().join("rows.ndjson")).expect("rm");
    let mut forged = std::fs::read(format!("{ledger}.request")).expect("request");
    *forged.last_mut().expect("non-empty") ^= 1;
    let forged_path = dir.path().join("forged.request");
    std::fs::write(&forged_path, forged).expect("write");
    let out = research(&ledger, &forged_path.display().to_string(), dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REFUSED: the research request is not valid")
    );
    assert!(!dir.path().join("rows.ndjson").exists());
    // Bytes that are not a request: a usage error, nothing written.
    let out = research(&ledger, &format!("{ledger}.key"), dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("rows.ndjson").exists());
}
