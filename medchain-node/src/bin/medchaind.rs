//! `medchaind`: the node a member institution runs (`docs/node.md`).
//!
//! ```text
//! medchaind keygen --name NAME --out DIR            a new identity: DIR/identity.backup, DIR/identity.pub
//! medchaind genesis --validator FILE… --out DIR     a genesis from public identity files; prints its hash
//! medchaind run --config node.toml                  runs the node until SIGTERM or Ctrl-C
//! medchaind status [--config node.toml | --api [https://]ADDR [--ca FILE]] [--json]
//! medchaind local-net --nodes N --dir DIR [--start] N nodes on loopback, for demos and tests
//! ```
//!
//! Passphrases come from `--passphrase-file` (or the configuration's `passphrase_file`), else
//! from `MEDCHAIND_PASSPHRASE`, else from a prompt on the terminal. Exit status: 0 on success,
//! 1 when the node stopped on an error or a request failed, 2 on a usage, configuration or key
//! file error.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use getrandom::SysRng;
use medchain_core::encoding::Encode;
use medchain_core::genesis::{FhirProfile, Timing};
use medchain_core::keys::BackupParams;
use medchain_node::client::ApiClient;
use medchain_node::config::{LogFormat, NodeConfig, DEFAULT_API};
use medchain_node::keyfile::{self, GenesisSpec, PublicIdentityFile};
use medchain_node::localnet::{self, LocalClient, LocalNetSpec};
use medchain_node::service::{now_ms, Service};
use rand_core::UnwrapErr;

#[derive(Parser)]
#[command(
    name = "medchaind",
    version,
    about = "The medchain node: keys, genesis, run, status, a local network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates a member identity: DIR/identity.backup (Argon2id) and DIR/identity.pub.
    Keygen {
        /// The member's name in genesis.
        #[arg(long)]
        name: String,
        /// The directory to write into (created; existing files are never replaced).
        #[arg(long)]
        out: PathBuf,
        /// Read the new passphrase from this file instead of MEDCHAIND_PASSPHRASE or a prompt.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Builds a genesis from the members' public identity files and wraps a fresh network key
    /// to each member: DIR/genesis.bin and DIR/<member>.network.key. Prints the genesis hash.
    Genesis {
        /// A validator's identity.pub (repeat for each).
        #[arg(long = "validator", value_name = "FILE", required = true)]
        validators: Vec<PathBuf>,
        /// A non-voting member's identity.pub (repeat for each).
        #[arg(long = "member", value_name = "FILE")]
        members: Vec<PathBuf>,
        /// The chain's name.
        #[arg(long, default_value = "medchain")]
        chain_name: String,
        /// How long a miner gathers transactions, in milliseconds.
        #[arg(long, default_value_t = Timing::DEFAULT.gather_ms)]
        gather_ms: u64,
        /// How long a validator waits in a round before the next-ranked miner takes over.
        #[arg(long, default_value_t = Timing::DEFAULT.round_timeout_ms)]
        round_timeout_ms: u64,
        /// Most transactions in one block.
        #[arg(long, default_value_t = 10_000)]
        max_block_txs: u32,
        /// The FHIR profile writers validate against: r4 or us-core.
        #[arg(long, default_value = "r4")]
        fhir_profile: String,
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs a node until SIGTERM or Ctrl-C.
    Run {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Overrides the configuration's log format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Asks a running node for its status.
    Status {
        /// Reads the API address (and its TLS certificate) from this configuration file.
        #[arg(long, conflicts_with = "api")]
        config: Option<PathBuf>,
        /// The API: host:port, http://host:port or https://host:port (default 127.0.0.1:7700).
        #[arg(long)]
        api: Option<String>,
        /// With TLS: the certificates to trust (PEM), a CA's or the node's own self-signed one
        /// (default with --config: the node's configured certificate).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Prints the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Creates a clinician whose key this node holds, for the FHIR API: an identity backup
    /// under the node's passphrase and the credential this member issues it, in DIR (default
    /// `clinicians` beside node.toml). Prints the `[[clinicians]]` entry to add to node.toml.
    Clinician {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The clinician's name (what X-Medchain-Clinician names; `A-Za-z0-9._-`).
        #[arg(long)]
        name: String,
        /// How many days the credential is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Where to write (default: `clinicians` beside the configuration).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Writes keys, a genesis and configurations for N nodes on loopback (and starts them).
    LocalNet {
        /// How many nodes (all validators).
        #[arg(long)]
        nodes: usize,
        /// The directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// Node i listens on BASE+2(i-1) and serves its API on the next port (default: free
        /// ports).
        #[arg(long)]
        base_port: Option<u16>,
        /// How long a miner gathers transactions, in milliseconds.
        #[arg(long, default_value_t = 200)]
        gather_ms: u64,
        /// The round timeout, in milliseconds.
        #[arg(long, default_value_t = 2_000)]
        round_timeout_ms: u64,
        /// A clinician every node holds for the FHIR API (repeat for each).
        #[arg(long = "clinician", value_name = "NAME")]
        clinicians: Vec<String>,
        /// A client registered at every node, ID=JWKS_FILE: every system scope, acting for
        /// every clinician, operator (repeat for each). With any, every node requires tokens.
        #[arg(long = "client", value_name = "ID=JWKS_FILE", value_parser = parse_client)]
        clients: Vec<LocalClient>,
        /// Starts the nodes (logs in DIR/node-i/node.log) and stops them on SIGTERM or Ctrl-C.
        #[arg(long)]
        start: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// A failure and the exit status it gives.
struct Failure {
    code: u8,
    message: String,
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: e.to_string(),
    }
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen {
            name,
            out,
            passphrase_file,
        } => keygen(&name, &out, passphrase_file.as_deref()),
        Command::Genesis {
            validators,
            members,
            chain_name,
            gather_ms,
            round_timeout_ms,
            max_block_txs,
            fhir_profile,
            out,
        } => genesis(
            &validators,
            &members,
            GenesisArgs {
                chain_name,
                gather_ms,
                round_timeout_ms,
                max_block_txs,
                fhir_profile,
            },
            &out,
        ),
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Clinician {
            config,
            name,
            days,
            dir,
        } => clinician(&config, &name, days, dir),
        Command::Status {
            config,
            api,
            ca,
            json,
        } => status(config.as_deref(), api.as_deref(), ca.as_deref(), json),
        Command::LocalNet {
            nodes,
            dir,
            base_port,
            gather_ms,
            round_timeout_ms,
            clinicians,
            clients,
            start,
        } => local_net(
            LocalNetSpec {
                nodes,
                dir,
                base_port,
                timing: Timing {
                    gather_ms,
                    round_timeout_ms,
                    ..Timing::DEFAULT
                },
                max_block_txs: 10_000,
                backup: BackupParams::RECOMMENDED,
                created_at_ms: now_ms(),
                clinicians,
                clients,
            },
            start,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("medchaind: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn keygen(name: &str, out: &Path, passphrase_file: Option<&Path>) -> Result<(), Failure> {
    let passphrase = keyfile::read_passphrase(
        passphrase_file,
        "Passphrase for the new identity backup: ",
        true,
    )
    .map_err(usage)?;
    let (identity, _) = keyfile::keygen(
        out,
        name,
        passphrase.as_bytes(),
        BackupParams::RECOMMENDED,
        &mut UnwrapErr(SysRng),
    )
    .map_err(usage)?;
    println!("identity  {}", identity.public().to_text());
    println!("key       {}", identity.verify_key());
    println!("wrote     {}", out.join("identity.backup").display());
    println!(
        "          {} (send this one to the network's founder)",
        out.join("identity.pub").display()
    );
    Ok(())
}

fn clinician(
    config_path: &Path,
    name: &str,
    days: u64,
    dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let config = NodeConfig::load(config_path).map_err(usage)?;
    let passphrase = keyfile::read_passphrase(
        config.passphrase_file.as_deref(),
        "Passphrase for the identity backup: ",
        false,
    )
    .map_err(usage)?;
    let member = keyfile::load_identity(&config.identity, passphrase.as_bytes()).map_err(usage)?;
    let genesis = keyfile::load_genesis(&config.genesis).map_err(usage)?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let dir = dir.unwrap_or_else(|| base.join("clinicians"));
    let expires = medchain_node::service::now_ms().saturating_add(days.saturating_mul(86_400_000));
    let entry = medchain_node::people::create_clinician(
        &dir,
        name,
        medchain_node::people::Issuer {
            member: &member,
            chain: genesis.chain_id(),
            expires_ms: expires,
        },
        passphrase.as_bytes(),
        BackupParams::RECOMMENDED,
        &mut UnwrapErr(SysRng),
    )
    .map_err(usage)?;
    println!("# add to {}:", config_path.display());
    println!("[[clinicians]]");
    println!("name = {:?}", entry.name);
    println!("identity = {:?}", entry.identity.display().to_string());
    println!("credential = {:?}", entry.credential.display().to_string());
    Ok(())
}

struct GenesisArgs {
    chain_name: String,
    gather_ms: u64,
    round_timeout_ms: u64,
    max_block_txs: u32,
    fhir_profile: String,
}

fn genesis(
    validators: &[PathBuf],
    members: &[PathBuf],
    args: GenesisArgs,
    out: &Path,
) -> Result<(), Failure> {
    let fhir_profile = FhirProfile::from_name(&args.fhir_profile).ok_or_else(|| {
        usage(format!(
            "unknown FHIR profile {:?} (r4, us-core)",
            args.fhir_profile
        ))
    })?;
    let mut entries = Vec::new();
    for (paths, validator) in [(validators, true), (members, false)] {
        for path in paths {
            entries.push((PublicIdentityFile::load(path).map_err(usage)?, validator));
        }
    }
    let spec = GenesisSpec {
        chain_name: args.chain_name,
        created_at_ms: now_ms(),
        timing: Timing {
            gather_ms: args.gather_ms,
            round_timeout_ms: args.round_timeout_ms,
            ..Timing::DEFAULT
        },
        max_block_txs: args.max_block_txs,
        fhir_profile,
    };
    let founded = keyfile::found(&spec, &entries, &mut UnwrapErr(SysRng)).map_err(usage)?;
    std::fs::create_dir_all(out).map_err(usage)?;
    keyfile::write_new(&out.join("genesis.bin"), &founded.genesis.to_bytes(), false)
        .map_err(usage)?;
    for (name, envelope) in &founded.envelopes {
        let path = out.join(format!("{}.network.key", keyfile::file_stem(name)));
        keyfile::write_new(&path, &envelope.to_bytes(), true).map_err(usage)?;
        println!("member    {name}: {}", path.display());
    }
    println!("genesis   {}", founded.genesis.hash());
    println!("          compare this hash with every member out of band before starting");
    Ok(())
}

fn init_logging(format: LogFormat, level: tracing::Level) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("medchaind")
        .enable_all()
        .build()
        .map_err(failed)
}

fn run(config_path: &Path, log_format: Option<LogFormatArg>) -> Result<(), Failure> {
    let config = NodeConfig::load(config_path).map_err(usage)?;
    let format = match log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    init_logging(format, config.log_level().map_err(usage)?);
    let passphrase = keyfile::read_passphrase(
        config.passphrase_file.as_deref(),
        "Passphrase for the identity backup: ",
        false,
    )
    .map_err(usage)?;
    let service_config = config
        .service_config(passphrase.as_bytes())
        .map_err(usage)?;
    drop(passphrase);
    runtime()?.block_on(async move {
        let mut service = Service::start(service_config).await.map_err(usage)?;
        let by_signal = tokio::select! {
            () = stop_signal() => true,
            () = service.stopped() => false,
        };
        if by_signal {
            tracing::info!("stop requested: finishing the current step");
        }
        service.shutdown().await.map_err(failed)
    })
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn status(
    config: Option<&Path>,
    api: Option<&str>,
    ca: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let client = match (config, api) {
        (Some(path), _) => {
            let config = NodeConfig::load(path).map_err(usage)?;
            match &config.api_tls {
                None => ApiClient::new(config.api),
                Some(tls) => ApiClient::new(config.api)
                    .with_ca(ca.unwrap_or(&tls.cert))
                    .map_err(usage)?,
            }
        }
        (None, Some(url)) => ApiClient::from_url(url, ca).map_err(usage)?,
        (None, None) => ApiClient::from_url(DEFAULT_API, ca).map_err(usage)?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let s = rt.block_on(client.status()).map_err(failed)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(failed)?);
        return Ok(());
    }
    println!("member   {} ({}), key {}", s.name, s.role, s.member);
    println!("network  {}, genesis {}", s.chain, s.genesis);
    println!("height   {}, head {}", s.height, s.head);
    println!("round    {}", s.round);
    println!("peers    {}/{} connected", s.peers_connected, s.peers_total);
    println!(
        "pending  {} submitted here, {} in the mempool",
        s.pending_submissions, s.mempool_transactions
    );
    println!(
        "uptime   {} s{}",
        s.uptime_seconds,
        if s.running { "" } else { " (stopped)" }
    );
    Ok(())
}

/// `ID=JWKS_FILE`.
fn parse_client(arg: &str) -> Result<LocalClient, String> {
    match arg.split_once('=') {
        Some((id, jwks)) if !id.is_empty() && !jwks.is_empty() => Ok(LocalClient {
            id: id.to_owned(),
            jwks: jwks.into(),
        }),
        _ => Err("expected ID=JWKS_FILE".into()),
    }
}

fn local_net(spec: LocalNetSpec, start: bool) -> Result<(), Failure> {
    let dir = spec.dir.as_path();
    let net = localnet::write_local_net(&spec, &mut UnwrapErr(SysRng)).map_err(usage)?;
    println!("genesis  {}", net.genesis.hash());
    for node in &net.nodes {
        println!(
            "{}   p2p {}  api {}  {}",
            node.name,
            node.listen,
            node.api,
            node.config.display()
        );
    }
    if !start {
        println!(
            "start each node with: medchaind run --config {}",
            dir.join("node-1").join("node.toml").display()
        );
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(failed)?;
    let mut children: Vec<Child> = Vec::new();
    for node in &net.nodes {
        let log = std::fs::File::create(node.dir.join("node.log")).map_err(failed)?;
        let child = std::process::Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_children(&mut children);
                return Err(failed(format!("cannot start {}: {e}", node.name)));
            }
        }
    }
    println!(
        "started {} nodes (logs: {}/node-*/node.log); SIGTERM or Ctrl-C stops them",
        children.len(),
        dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    rt.block_on(stop_signal());
    stop_children(&mut children);
    Ok(())
}

/// Asks each child to stop (SIGTERM), waits up to 15 seconds, then kills what is left.
fn stop_children(children: &mut [Child]) {
    for child in children.iter() {
        terminate(child);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for child in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

#[cfg(not(unix))]
fn terminate(_: &Child) {}
