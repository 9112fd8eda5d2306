//! `medchaind` as hospitals run it: four real processes on loopback, written by `medchaind
//! local-net`, driven over their HTTP APIs. Each test stops what it started (SIGTERM, or kill -9
//! by pid), and bounds every wait.
//!
//! The tests take turns (one network of four processes at a time on a 2-core machine).

mod support;

use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;
use medchain_node::client::metric_value;
use medchain_node::config::LogFormat;
use support::{chains, grant, one_chain, submit, verify_one_chain, wait_same_head, Net};

static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

const CONNECT: Duration = Duration::from_secs(60);
const COMMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn four_processes_commit_over_http_and_end_with_the_same_chain() {
    let _turn = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut net = Net::write(4);
    // Node 1 logs JSON (one object per line).
    net.nodes[0].config.log.format = LogFormat::Json;
    std::fs::write(&net.nodes[0].config_path, net.nodes[0].config.to_toml()).expect("config");
    net.start_all();
    let rt = runtime();
    let committed = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        // Twelve consent grants, submitted round-robin to the four nodes.
        let mut submitted = Vec::new();
        for k in 0..12 {
            let body = grant(&net.genesis);
            let id = submit(&net, k % 4, &body).await;
            submitted.push((k % 4, id, body));
        }
        for (i, id, _) in &submitted {
            net.wait_committed(*i, id, COMMIT).await;
        }
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        assert!(height >= 1);
        // Every node places every transaction at the same height.
        for (_, id, _) in &submitted {
            let mut heights = Vec::new();
            for node in &net.nodes {
                let s = node.api().tx_status(id).await.expect("status");
                assert_eq!(s.status, "committed", "{id} on {}", node.api_addr());
                heights.push(s.height);
            }
            assert!(
                heights.windows(2).all(|w| w[0] == w[1]),
                "{id}: {heights:?}"
            );
        }
        one_chain(&chains(&net).await);

        // The same consent again, at another node: accepted for the network, then refused by
        // the ledger rule on top of the chain; its status names the rule.
        let api = net.nodes[1].api();
        let again = submit(&net, 1, &submitted[0].2).await;
        let end = std::time::Instant::now() + COMMIT;
        loop {
            let s = api.tx_status(&again).await.expect("status");
            assert_ne!(s.status, "committed");
            if s.status == "rejected" {
                assert_eq!(s.rule.as_deref(), Some("consent_exists"));
                break;
            }
            assert!(std::time::Instant::now() < end, "not refused in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Malformed requests get typed errors and change nothing.
        let before = api.metrics().await.expect("metrics");
        let bad: Vec<(Method, &str, Option<&str>, u16, &str)> = vec![
            (
                Method::POST,
                "/v1/transactions",
                Some(r#"{"hex":"zz"}"#),
                400,
                "bad_hex",
            ),
            (Method::POST, "/v1/transactions", Some("{"), 400, "bad_json"),
            (
                Method::POST,
                "/v1/transactions",
                Some(r#"{"hex":"0102"}"#),
                400,
                "malformed_transaction",
            ),
            (
                Method::GET,
                "/v1/transactions/nothex",
                None,
                400,
                "bad_tx_id",
            ),
            (Method::GET, "/v1/transactions/00", None, 400, "bad_tx_id"),
            (Method::GET, "/v1/blocks/0", None, 400, "bad_height"),
            (Method::GET, "/v1/blocks/-1", None, 400, "bad_height"),
            (Method::GET, "/v1/blocks/999999", None, 404, "not_found"),
            (Method::GET, "/v1/nothing", None, 404, "not_found"),
            (
                Method::GET,
                "/v1/transactions",
                None,
                405,
                "method_not_allowed",
            ),
        ];
        for (method, path, body, status, code) in bad {
            let (got, bytes) = api
                .request(method, path, body.map(|b| b.as_bytes().to_vec()))
                .await
                .expect("answer");
            let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON error");
            assert_eq!(
                (got, answer["error"]["code"].as_str()),
                (status, Some(code)),
                "{path}"
            );
        }
        let after = api.metrics().await.expect("metrics");
        for metric in [
            "medchain_transactions_submitted_total",
            "medchain_pending_submissions",
        ] {
            assert_eq!(
                metric_value(&before, metric),
                metric_value(&after, metric),
                "{metric} changed"
            );
        }
        assert_eq!(metric_value(&after, "medchain_peers_connected"), Some(3.0));
        assert_eq!(metric_value(&after, "medchain_evidence_total"), Some(0.0));
        assert!(metric_value(&after, "medchain_commit_latency_seconds_count") >= Some(3.0));
        let health = api
            .request(Method::GET, "/health", None)
            .await
            .expect("health");
        assert_eq!(health.0, 200);
        height
    });
    // SIGTERM: each node finishes its step and exits cleanly.
    for node in &mut net.nodes {
        let status = node.terminate(STOP);
        assert!(status.success(), "exit {status:?}\n{}", node.tail());
    }
    // Every store verifies on its own and holds the one chain.
    verify_one_chain(&net, committed);
    // The JSON log: every line an object, the start and the clean stop among them.
    let log = std::fs::read_to_string(&net.nodes[0].log).expect("log");
    let messages: Vec<String> = log
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for expected in ["node running", "node stopped"] {
        assert!(messages.iter().any(|m| m == expected), "{messages:?}");
    }
}

#[test]
fn a_node_killed_with_sigkill_restarts_and_catches_up_without_equivocating() {
    let _turn = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut net = Net::write(4);
    net.start_all();
    let rt = runtime();
    rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        for k in 0..4 {
            let id = submit(&net, k, &grant(&net.genesis)).await;
            net.wait_committed(k, &id, COMMIT).await;
        }
    });
    // kill -9 the fourth node; three of four validators still make a quorum.
    net.nodes[3].kill9();
    let while_down = rt.block_on(async {
        let mut ids = Vec::new();
        for k in 0..6 {
            ids.push(submit(&net, k % 3, &grant(&net.genesis)).await);
        }
        for (k, id) in ids.iter().enumerate() {
            net.wait_committed(k % 3, id, COMMIT).await;
        }
        wait_same_head(&net, &[0, 1, 2]).await;
        ids
    });
    net.nodes[3].start();
    let committed = rt.block_on(async {
        net.wait_connected(&[3], 3, CONNECT).await;
        // It catches up by sync: everything committed while it was down is in its ledger.
        for id in &while_down {
            net.wait_committed(3, id, COMMIT).await;
        }
        // And it takes part again: its own submissions commit.
        for _ in 0..2 {
            let id = submit(&net, 3, &grant(&net.genesis)).await;
            net.wait_committed(3, &id, COMMIT).await;
        }
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        one_chain(&chains(&net).await);
        for node in &net.nodes {
            let m = node.api().metrics().await.expect("metrics");
            assert_eq!(
                metric_value(&m, "medchain_evidence_total"),
                Some(0.0),
                "{}",
                node.tail()
            );
        }
        height
    });
    for node in &mut net.nodes {
        assert!(node.terminate(STOP).success(), "{}", node.tail());
    }
    verify_one_chain(&net, committed);
}
