//! The service in process: a one-member network (a sole validator commits alone) started with
//! `Service::start` from the files `local-net` writes, driven through its client API; restarted
//! on the same ledger; and refused when its ledger belongs to another network.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use getrandom::SysRng;
use medchain_core::encoding::Decode;
use medchain_core::genesis::Timing;
use medchain_core::keys::BackupParams;
use medchain_core::light::InclusionProof;
use medchain_node::client::{metric_value, ApiClient, ClientError};
use medchain_node::config::{ApiTlsFiles, LoadError, NodeConfig};
use medchain_node::keyfile;
use medchain_node::localnet::{write_local_net, LocalNet, LocalNetSpec};
use medchain_node::service::{now_ms, Service, ServiceConfig, StartError};
use rand_core::UnwrapErr;
use support::grant;

fn one_member(dir: &std::path::Path) -> LocalNet {
    let spec = LocalNetSpec {
        nodes: 1,
        dir: dir.to_path_buf(),
        base_port: None,
        timing: Timing {
            gather_ms: 20,
            ..Timing::DEFAULT
        },
        max_block_txs: 100,
        backup: BackupParams::dangerous_test_only(),
        created_at_ms: now_ms(),
        clinicians: Vec::new(),
        clients: Vec::new(),
    };
    write_local_net(&spec, &mut UnwrapErr(SysRng)).expect("local net")
}

fn service_config(net: &LocalNet) -> ServiceConfig {
    load_service_config(net, |_| {}).expect("files load")
}

/// Node 1's configuration on free ports, changed by `edit`, with its files loaded.
fn load_service_config(
    net: &LocalNet,
    edit: impl FnOnce(&mut NodeConfig),
) -> Result<ServiceConfig, LoadError> {
    let mut config = NodeConfig::load(&net.nodes[0].config).expect("config");
    // Any free port: the test never races another process for the written one.
    config.api = "127.0.0.1:0".parse().expect("address");
    config.listen = "127.0.0.1:0".parse().expect("address");
    edit(&mut config);
    let pass =
        keyfile::read_passphrase(config.passphrase_file.as_deref(), "", false).expect("passphrase");
    config.service_config(pass.as_bytes())
}

/// A file of the fixed test certificates (`tests/data/api-tls/README.md`).
fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/api-tls")
        .join(name)
}

async fn committed(api: &ApiClient, id: &str) -> u64 {
    for _ in 0..200 {
        if let Ok(s) = api.tx_status(id).await {
            if s.status == "committed" {
                return s.height.expect("height");
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} not committed within 5 s");
}

async fn rejected(api: &ApiClient, id: &str) -> String {
    for _ in 0..200 {
        if let Ok(s) = api.tx_status(id).await {
            assert_ne!(s.status, "committed", "{id} committed");
            if s.status == "rejected" {
                return s.rule.expect("rule");
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} not refused within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_commits_serves_blocks_and_restarts_on_its_ledger() {
    let dir = tempfile::tempdir().expect("dir");
    let net = one_member(dir.path());
    let service = Service::start(service_config(&net)).await.expect("starts");
    let api = ApiClient::new(service.api_addr());
    let body = grant(&net.genesis);
    let submitted = api.submit(&body).await.expect("accepted");
    assert_eq!(submitted.status, "pending");
    let height = committed(&api, &submitted.id).await;
    let block = api.block(height).await.expect("block");
    assert!(block.txs.contains(&submitted.id));
    assert_eq!(block.height, height);
    // The light-client proof verifies against the genesis alone.
    let view = api.proof(&submitted.id).await.expect("proof");
    let proof =
        InclusionProof::from_bytes(&hex::decode(&view.proof).expect("hex")).expect("decodes");
    let proven = proof.verify(&net.genesis).expect("the proof holds");
    assert_eq!(
        (proven.tx_id.to_string(), proven.height),
        (submitted.id.clone(), height)
    );
    let status = api.status().await.expect("status");
    assert_eq!(
        (status.height, status.role.as_str(), status.peers_total),
        (height, "validator", 0)
    );
    assert_eq!(status.head, block.hash);
    // The same consent again: accepted for the network, then refused by the ledger rule on
    // top of the chain; its status names the rule, and it never commits.
    let again = api.submit(&body).await.expect("accepted");
    assert_ne!(
        again.id, submitted.id,
        "a new transaction around the same body"
    );
    let rule = rejected(&api, &again.id).await;
    assert_eq!(rule, "consent_exists");
    let metrics = api.metrics().await.expect("metrics");
    assert_eq!(
        metric_value(&metrics, "medchain_transactions_submitted_total"),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&metrics, "medchain_transactions_refused_total"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "medchain_pending_submissions"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&metrics, "medchain_commit_latency_seconds_count"),
        Some(1.0)
    );
    let at_stop = api.status().await.expect("status").height;
    service.shutdown().await.expect("clean stop");

    // Restarted on the same ledger: no committed block is lost, and the chain goes on.
    let service = Service::start(service_config(&net))
        .await
        .expect("restarts");
    let api = ApiClient::new(service.api_addr());
    assert!(api.status().await.expect("status").height >= at_stop);
    let again = api
        .tx_status(&submitted.id)
        .await
        .expect("found in the ledger");
    assert_eq!(
        (again.status.as_str(), again.height),
        ("committed", Some(height))
    );
    let next = api.submit(&grant(&net.genesis)).await.expect("accepted");
    assert!(committed(&api, &next.id).await > height);
    service.shutdown().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_of_another_network_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let first = one_member(&dir.path().join("a"));
    let service = Service::start(service_config(&first))
        .await
        .expect("starts");
    service.shutdown().await.expect("clean stop");
    // Another network whose configuration points at the first one's ledger.
    let second = one_member(&dir.path().join("b"));
    let mut config = service_config(&second);
    let ledger = NodeConfig::load(&first.nodes[0].config)
        .expect("config")
        .ledger;
    let file = ledger.sqlite_path().expect("a SQLite ledger").to_path_buf();
    let before = std::fs::read(&file).expect("ledger");
    config.ledger = ledger.clone();
    // The second identity is not a member of the first network's genesis, or the genesis
    // differs: either way the node does not start.
    let err = Service::start(config).await.expect_err("refused");
    assert!(
        matches!(err, StartError::WrongGenesis { .. } | StartError::Host(_)),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).expect("ledger"), before);
}

/// The round and the mempool size are reported by `/v1/status` and `/metrics` and agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_report_the_round_and_the_mempool() {
    let dir = tempfile::tempdir().expect("dir");
    let net = one_member(dir.path());
    let service = Service::start(service_config(&net)).await.expect("starts");
    let api = ApiClient::new(service.api_addr());
    let id = api.submit(&grant(&net.genesis)).await.expect("accepted").id;
    let height = committed(&api, &id).await;
    // A sole validator moves one round per block at least.
    let status = api.status().await.expect("status");
    assert!(
        status.round >= height,
        "round {} below height {height}",
        status.round
    );
    assert_eq!(
        status.mempool_transactions, 0,
        "the committed grant left the mempool"
    );
    let metrics = api.metrics().await.expect("metrics");
    let round = metric_value(&metrics, "medchain_round").expect("medchain_round");
    assert!(round >= status.round as f64);
    assert_eq!(
        metric_value(&metrics, "medchain_mempool_transactions"),
        Some(0.0)
    );
    service.shutdown().await.expect("clean stop");
}

/// With `[api_tls]`, the API speaks HTTPS only: a client trusting the node's certificate is
/// served (submit and commit included, and `medchaind status`); plain HTTP to the same port,
/// a client trusting another certificate, and one expecting another name all fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_tls_serves_https_and_refuses_plain_http_and_a_wrong_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let net = one_member(dir.path());
    let config = load_service_config(&net, |c| {
        c.api_tls = Some(ApiTlsFiles {
            cert: tls_file("node.crt"),
            key: tls_file("node.key"),
        });
    })
    .expect("files load");
    let service = Service::start(config).await.expect("starts");
    let addr = service.api_addr();
    let api = ApiClient::new(addr)
        .with_ca(&tls_file("node.crt"))
        .expect("trust file");
    let status = api.status().await.expect("status over TLS");
    assert!(status.running);
    let id = api.submit(&grant(&net.genesis)).await.expect("accepted").id;
    committed(&api, &id).await;
    // By name, as an operator writes it.
    let by_name = ApiClient::from_url(
        &format!("https://localhost:{}", addr.port()),
        Some(&tls_file("node.crt")),
    )
    .expect("url");
    assert_eq!(
        by_name.status().await.expect("status").member,
        status.member
    );

    // Plain HTTP to the TLS port: no answer is an HTTP one.
    let plain = ApiClient::new(addr).status().await;
    assert!(matches!(plain, Err(ClientError::Http { .. })), "{plain:?}");
    // A client that trusts another certificate (same subject and names) refuses the node.
    let wrong = ApiClient::new(addr)
        .with_ca(&tls_file("wrong.crt"))
        .expect("trust file")
        .status()
        .await;
    match wrong {
        Err(ClientError::Http { message, .. }) => {
            assert!(message.contains("certificate"), "{message}")
        }
        other => panic!("a wrong CA was accepted: {other:?}"),
    }
    // A client that expects another name refuses it too.
    let other_name = ApiClient::new(addr)
        .with_ca(&tls_file("node.crt"))
        .expect("trust file")
        .with_server_name("api.other.example")
        .expect("name")
        .status()
        .await;
    assert!(
        matches!(&other_name, Err(ClientError::Http { message, .. }) if message.contains("certificate")),
        "{other_name:?}"
    );
    // The node still serves after the failed handshakes.
    assert!(api.status().await.expect("status").running);

    // `medchaind status` over https, trusting the node's certificate.
    let url = format!("https://127.0.0.1:{}", addr.port());
    let status_cmd = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(support::MEDCHAIND)
                .args(args)
                .output()
                .expect("medchaind status runs")
        })
        .await
        .expect("joined")
    };
    let ca = tls_file("node.crt").display().to_string();
    let out = status_cmd(vec![
        "status".into(),
        "--api".into(),
        url.clone(),
        "--ca".into(),
        ca,
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("round"), "{text}");
    let out = status_cmd(vec!["status".into(), "--api".into(), url]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
    service.shutdown().await.expect("clean stop");
}

/// Bad `[api_tls]` files stop the node at start with an error that names the file.
#[test]
fn bad_api_tls_files_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let net = one_member(dir.path());
    let missing = dir.path().join("no-such-cert.pem");
    let cases = [
        (missing.clone(), tls_file("node.key"), "cannot read"),
        // The key file given as the certificate: no certificate in it.
        (tls_file("node.key"), tls_file("node.key"), "no certificate"),
        // The certificate given as the key: no key in it.
        (
            tls_file("node.crt"),
            tls_file("node.crt"),
            "no usable private key",
        ),
        // A certificate whose key is not this one.
        (tls_file("wrong.crt"), tls_file("node.key"), "refused"),
    ];
    for (cert, key, expected) in cases {
        let err = load_service_config(&net, |c| {
            c.api_tls = Some(ApiTlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        })
        .expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, LoadError::ApiTls(_)), "{text}");
        assert!(
            text.starts_with("api_tls: ") && text.contains(expected),
            "{text}"
        );
        // The key file's content is never quoted.
        let pem = std::fs::read_to_string(tls_file("node.key")).expect("key");
        let body = pem.lines().nth(1).expect("a base64 line");
        assert!(!text.contains(body), "{text}");
    }
}
