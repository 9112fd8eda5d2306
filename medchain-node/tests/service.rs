//! The service in process: a one-member network (a sole validator commits alone) started with
//! `Service::start` from the files `local-net` writes, driven through its client API; restarted
//! on the same ledger; and refused when its ledger belongs to another network.

mod support;

use std::time::Duration;

use getrandom::SysRng;
use medchain_core::encoding::Decode;
use medchain_core::genesis::Timing;
use medchain_core::keys::BackupParams;
use medchain_core::light::InclusionProof;
use medchain_node::client::{metric_value, ApiClient};
use medchain_node::config::NodeConfig;
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
    };
    write_local_net(&spec, &mut UnwrapErr(SysRng)).expect("local net")
}

fn service_config(net: &LocalNet) -> ServiceConfig {
    let mut config = NodeConfig::load(&net.nodes[0].config).expect("config");
    // Any free port: the test never races another process for the written one.
    config.api = "127.0.0.1:0".parse().expect("address");
    config.listen = "127.0.0.1:0".parse().expect("address");
    let pass =
        keyfile::read_passphrase(config.passphrase_file.as_deref(), "", false).expect("passphrase");
    config.service_config(pass.as_bytes()).expect("files load")
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
    let before = std::fs::read(&ledger).expect("ledger");
    config.ledger = ledger.clone();
    // The second identity is not a member of the first network's genesis, or the genesis
    // differs: either way the node does not start.
    let err = Service::start(config).await.expect_err("refused");
    assert!(
        matches!(err, StartError::WrongGenesis { .. } | StartError::Host(_)),
        "{err}"
    );
    assert_eq!(std::fs::read(&ledger).expect("ledger"), before);
}
