//! Validates a corpus of FHIR JSON files and seals and opens every valid one.
//!
//! `cargo run --release -p medchain-fhir --example validate_corpus -- [--profile r4|us-core] DIR...`
//!
//! Every `*.json` file is one resource (usually a transaction Bundle); every `*.ndjson` file
//! holds one resource a line. Each transaction Bundle is also validated re-wrapped as a
//! collection Bundle (the same entries without `request`). Each document must validate with
//! zero errors, seal ([`medchain_fhir::seal_validated`]) and open to the same bytes. Each
//! document is also validated by the exact path alone ([`medchain_fhir::validate_exact`]): the
//! report must be the same, and a document the fast path calls clean must have no issue at
//! all. Prints the counts (with how many documents the fast path answered) and exits non-zero
//! on the first failure, naming the file and the issues (paths and codes only).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use medchain_core::genesis::FhirProfile;
use medchain_core::keys::Identity;
use medchain_fhir::{fast_path_is_clean, seal_validated, validate_exact, Options};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

struct Tally {
    documents: usize,
    bundles: usize,
    entries: usize,
    bytes: usize,
    warnings: usize,
    /// Documents without any issue (the exact path's report is empty).
    clean: usize,
    /// Documents the fast path answered (all of them clean).
    fast: usize,
}

fn check_one(
    label: &str,
    bytes: &[u8],
    options: &Options,
    patient: &Identity,
    rng: &mut ChaCha20Rng,
    tally: &mut Tally,
) -> Result<(), String> {
    let sealed = seal_validated(bytes, options, &patient.public(), &[], rng).map_err(|e| {
        let detail = match &e {
            medchain_fhir::WriteError::Invalid(i) => i
                .report
                .errors()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  "),
            other => other.to_string(),
        };
        format!("{label}: refused:\n  {detail}")
    })?;
    let opened = sealed
        .record
        .open(patient)
        .map_err(|e| format!("{label}: does not open: {e}"))?;
    if opened.payload() != bytes {
        return Err(format!("{label}: opened bytes differ from the sealed ones"));
    }
    let exact = validate_exact(bytes, options);
    if exact != sealed.report {
        return Err(format!(
            "{label}: the exact path's report differs from validate's"
        ));
    }
    tally.clean += usize::from(exact.issues().is_empty());
    if fast_path_is_clean(bytes, options) {
        if !exact.issues().is_empty() {
            return Err(format!(
                "{label}: the fast path said clean, the exact path found {exact}"
            ));
        }
        tally.fast += 1;
    }
    tally.documents += 1;
    tally.bytes += bytes.len();
    tally.warnings += sealed.report.warnings().count();
    Ok(())
}

/// The same entries in a collection Bundle (no `request`).
fn as_collection(bundle: &Value) -> Option<Vec<u8>> {
    let mut b = bundle.clone();
    if b.get("type")?.as_str()? != "transaction" {
        return None;
    }
    b["type"] = Value::String("collection".into());
    for e in b.get_mut("entry")?.as_array_mut()? {
        e.as_object_mut()?.remove("request");
    }
    serde_json::to_vec(&b).ok()
}

fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&[p]));
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("json" | "ndjson")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn run(profile: FhirProfile, dirs: &[PathBuf]) -> Result<Tally, String> {
    let options = Options::new(profile);
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let patient = Identity::generate(&mut rng);
    let mut tally = Tally {
        documents: 0,
        bundles: 0,
        entries: 0,
        bytes: 0,
        warnings: 0,
        clean: 0,
        fast: 0,
    };
    let all = files(dirs);
    if all.is_empty() {
        return Err(format!("no .json or .ndjson file under {dirs:?}"));
    }
    for path in &all {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let label = path.display().to_string();
        if path.extension().and_then(|x| x.to_str()) == Some("ndjson") {
            for (i, line) in text.split(|b| *b == b'\n').enumerate() {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    check_one(
                        &format!("{label}:{}", i + 1),
                        line,
                        &options,
                        &patient,
                        &mut rng,
                        &mut tally,
                    )?;
                }
            }
            continue;
        }
        check_one(&label, &text, &options, &patient, &mut rng, &mut tally)?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| format!("{label}: {e}"))?;
        if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            tally.bundles += 1;
            tally.entries += v.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
            if let Some(collection) = as_collection(&v) {
                check_one(
                    &format!("{label} (as a collection)"),
                    &collection,
                    &options,
                    &patient,
                    &mut rng,
                    &mut tally,
                )?;
            }
        }
    }
    Ok(tally)
}

fn main() -> ExitCode {
    let mut profile = FhirProfile::BaseR4;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--profile" {
            match args.next().as_deref().and_then(FhirProfile::from_name) {
                Some(p) => profile = p,
                None => {
                    eprintln!("--profile takes r4 or us-core");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            dirs.push(Path::new(&a).to_path_buf());
        }
    }
    let started = Instant::now();
    match run(profile, &dirs) {
        Ok(t) => {
            println!(
                "{} documents ({} bundles, {} entries, {} KiB) valid under {}, sealed and opened \
                 unchanged: 0 errors, {} warnings, in {:.1} s; {} without any issue, of which the \
                 fast path answered {} (each checked against the exact path)",
                t.documents,
                t.bundles,
                t.entries,
                t.bytes / 1024,
                profile.name(),
                t.warnings,
                started.elapsed().as_secs_f64(),
                t.clean,
                t.fast,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
