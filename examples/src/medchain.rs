//! `medchain`: an operator's tool for a ledger file.
//!
//! ```text
//! medchain verify  LEDGER            verify the whole chain (signatures, certificates, rules)
//! medchain inspect LEDGER [HEIGHT]   the network, the head, and the blocks (or one block)
//! medchain audit   LEDGER IDENTITY   a patient's audit trail (mcid1… identity); --json for FHIR
//! medchain research LEDGER --releaser FILE --request FILE [--out FILE] [--log FILE]
//!                                    a de-identified research release (below)
//! ```
//!
//! The ledger's network key comes from `LEDGER.key` (or `--key FILE`), a file protected by a
//! passphrase read from `MEDCHAIN_PASSPHRASE`. Exit status: 0 on success, 1 when verification
//! fails or a release is refused, 2 on a usage or I/O error.
//!
//! `research` runs the one research policy (`medchain_store::Ledger::research_release`) as the
//! releasing institution: its identity comes from an identity backup (`--releaser`, passphrase
//! from `MEDCHAIN_RELEASER_PASSPHRASE`), the researcher's signed request from `--request` (the
//! canonical bytes of a `ResearchRequest`). The rows go to `--out` (default: standard output)
//! as NDJSON, one `{"pseudonym", "resource"}` object per line; the release log — the
//! `ResearchReleased` body the institution's node submits before the rows leave — goes to
//! `--log` (default `LEDGER.release.log`). The release time and key are the library's choice.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use medchain_core::chain::Progress;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::keys::{Identity, PublicIdentity};
use medchain_core::research::ResearchRequest;
use medchain_core::seal::NetworkKey;
use medchain_store::Ledger;

const USAGE: &str = "usage: medchain (verify LEDGER | inspect LEDGER [HEIGHT] | audit LEDGER IDENTITY [--json] | research LEDGER --releaser FILE --request FILE [--out FILE] [--log FILE]) [--key FILE]";

struct Args {
    command: String,
    ledger: PathBuf,
    rest: Vec<String>,
    key: Option<PathBuf>,
    json: bool,
    releaser: Option<PathBuf>,
    request: Option<PathBuf>,
    out: Option<PathBuf>,
    log: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut words = Vec::new();
    let mut key = None;
    let mut json = false;
    let (mut releaser, mut request, mut out, mut log) = (None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(w) = it.next() {
        let mut file = |flag: &str| -> Result<Option<PathBuf>, String> {
            Ok(Some(PathBuf::from(
                it.next().ok_or(format!("{flag} needs a file"))?,
            )))
        };
        match w.as_str() {
            "--key" => key = file("--key")?,
            "--releaser" => releaser = file("--releaser")?,
            "--request" => request = file("--request")?,
            "--out" => out = file("--out")?,
            "--log" => log = file("--log")?,
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => words.push(w),
        }
    }
    if words.len() < 2 {
        return Err(USAGE.into());
    }
    let command = words.remove(0);
    let ledger = PathBuf::from(words.remove(0));
    Ok(Args {
        command,
        ledger,
        rest: words,
        key,
        json,
        releaser,
        request,
        out,
        log,
    })
}

fn open(args: &Args) -> Result<Ledger<medchain_store::SqliteStore>, String> {
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.ledger.display())));
    let file = std::fs::read(&key_path)
        .map_err(|e| format!("cannot read key file {}: {e}", key_path.display()))?;
    let pass = std::env::var("MEDCHAIN_PASSPHRASE")
        .map_err(|_| "set MEDCHAIN_PASSPHRASE to the key file's passphrase")?;
    let key = NetworkKey::import_protected(&file, pass.as_bytes())
        .map_err(|e| format!("key file {}: {e}", key_path.display()))?;
    Ledger::open_sqlite(&args.ledger, key)
        .map_err(|e| format!("cannot open {}: {e}", args.ledger.display()))
}

/// A one-line progress bar on standard error.
fn bar(total: u64) -> impl FnMut(Progress) {
    let mut last = 0u64;
    move |p: Progress| {
        let pct = (p.height * 100).checked_div(total).unwrap_or(100);
        if pct != last || p.height == total {
            last = pct;
            let filled = (pct / 4) as usize;
            eprint!(
                "\r[{}{}] {pct:>3}%  block {}/{total}  {} txs",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                p.height,
                p.transactions
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let ledger = open(args)?;
    match args.command.as_str() {
        "verify" => {
            let total = ledger.height();
            let started = std::time::Instant::now();
            let result = ledger.verify(bar(total));
            eprintln!();
            match result {
                Ok(s) => {
                    println!(
                        "ok: {} blocks, {} transactions verified in {:.2?}; head {} is proven committed: {}",
                        s.blocks, s.transactions, started.elapsed(), s.tip.hash, s.head_proven
                    );
                    Ok(true)
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    Ok(false)
                }
            }
        }
        "inspect" => {
            let g = ledger.genesis();
            println!(
                "chain {} ({}), genesis {}",
                g.chain_name,
                g.hash(),
                medchain_core::fhir::format_instant(g.created_at_ms)
            );
            for m in &g.members {
                println!(
                    "  {} {:<9} {}",
                    m.identity.sign,
                    if m.validator { "validator" } else { "member" },
                    m.name
                );
            }
            println!(
                "quorum {} of {} validators; head at height {}",
                g.quorum_size(),
                g.validators().len(),
                ledger.height()
            );
            let only: Option<u64> = args
                .rest
                .first()
                .map(|h| h.parse().map_err(|_| format!("not a height: {h}")))
                .transpose()?;
            for (i, block) in ledger.blocks_from(only.unwrap_or(1)).enumerate() {
                let block = block.map_err(|e| e.to_string())?;
                let h = &block.header;
                println!(
                    "block {:>5}  round {:>5}  {}  {}  miner {}…  {} tx",
                    h.height,
                    h.round,
                    block.hash(),
                    medchain_core::fhir::format_instant(h.timestamp_ms),
                    &h.miner.to_string()[..12],
                    block.transactions.len()
                );
                for tx in &block.transactions {
                    println!(
                        "    {:?} {} from {}…{}",
                        tx.kind(),
                        tx.id(),
                        &tx.contributor().to_string()[..12],
                        if tx.is_pruned() {
                            " (payload erased)"
                        } else {
                            ""
                        }
                    );
                }
                if only.is_some() && i == 0 {
                    break;
                }
            }
            Ok(true)
        }
        "audit" => {
            let who = args.rest.first().ok_or(USAGE)?;
            let patient = PublicIdentity::from_text(who).map_err(|e| e.to_string())?;
            if args.json {
                let events = ledger
                    .audit_events_of_patient(&patient.sign)
                    .map_err(|e| e.to_string())?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&events).map_err(|e| e.to_string())?
                );
            } else {
                for a in ledger
                    .audit_of_patient(&patient.sign)
                    .map_err(|e| e.to_string())?
                {
                    println!(
                        "{}  {:?}  record {}…  by {}  purpose {}{}{}",
                        medchain_core::fhir::format_instant(a.at_ms),
                        a.kind,
                        &a.record_id.to_string()[..12],
                        a.actor.id(),
                        a.purpose,
                        a.consent_id
                            .map(|c| format!("  consent {}…", &c.to_string()[..12]))
                            .unwrap_or_default(),
                        if a.emergency { "  EMERGENCY" } else { "" }
                    );
                }
            }
            Ok(true)
        }
        "research" => research(args, &ledger),
        other => Err(format!("unknown command {other}\n{USAGE}")),
    }
}

/// `medchain research`: the releasing institution runs the one research policy.
fn research(args: &Args, ledger: &Ledger<medchain_store::SqliteStore>) -> Result<bool, String> {
    let read = |flag: &str, path: &Option<PathBuf>| -> Result<(PathBuf, Vec<u8>), String> {
        let path = path
            .clone()
            .ok_or(format!("research needs {flag} FILE\n{USAGE}"))?;
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok((path, bytes))
    };
    let (path, backup) = read("--releaser", &args.releaser)?;
    let pass = std::env::var("MEDCHAIN_RELEASER_PASSPHRASE")
        .map_err(|_| "set MEDCHAIN_RELEASER_PASSPHRASE to the releaser backup's passphrase")?;
    let releaser = Identity::restore_backup(&backup, pass.as_bytes())
        .map_err(|e| format!("releaser {}: {e}", path.display()))?;
    let (path, bytes) = read("--request", &args.request)?;
    let request = ResearchRequest::from_bytes(&bytes)
        .map_err(|e| format!("request {}: {e}", path.display()))?;
    let release = match ledger.research_release(&releaser, &request) {
        Ok(r) => r,
        Err(e) => {
            println!("REFUSED: {e}");
            return Ok(false);
        }
    };
    let mut ndjson = Vec::new();
    for row in &release.rows {
        let line = serde_json::json!({"pseudonym": row.pseudonym, "resource": row.resource});
        serde_json::to_writer(&mut ndjson, &line).map_err(|e| e.to_string())?;
        ndjson.push(b'\n');
    }
    match &args.out {
        Some(p) => {
            std::fs::write(p, &ndjson).map_err(|e| format!("cannot write {}: {e}", p.display()))?
        }
        None => std::io::stdout()
            .write_all(&ndjson)
            .map_err(|e| e.to_string())?,
    }
    let log_path = args
        .log
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.release.log", args.ledger.display())));
    std::fs::write(&log_path, release.log_body().to_bytes())
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let log = release.log();
    eprintln!(
        "released study {} to {}: {} rows of {} patients at {}; release log {} (commitment {}, shown as about {} patients and {} rows): submit it from the releaser's node before the rows leave",
        log.request.study.id,
        log.request.researcher.to_text(),
        release.rows.len(),
        release.patients,
        medchain_core::fhir::format_instant(release.clock.time_ms()),
        log_path.display(),
        log.commitment,
        log.patients,
        log.rows
    );
    Ok(true)
}

fn main() -> ExitCode {
    match parse().and_then(|a| run(&a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
