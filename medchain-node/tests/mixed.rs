//! One member on PostgreSQL, three on SQLite, in one network of four `medchaind` processes on
//! loopback: transactions submitted over HTTP to every node commit, every ledger ends with the
//! same chain (verified as `medchain verify` does, the PostgreSQL one included), and the
//! PostgreSQL node survives kill -9 and rejoins on its reopened ledger.
//!
//! Needs the cluster `scripts/with-postgres.sh` starts (`MEDCHAIN_PG_URL`). Unset: the test
//! fails when `CI` is set, otherwise prints a notice and skips (as every PostgreSQL test). It
//! makes a database of its own (the ledger's schema `medchain` then clashes with no other test)
//! and drops it at the end.

mod support;

use std::time::Duration;

use medchain::LedgerLocation;
use medchain_node::client::metric_value;
use support::{grant, submit, wait_for, Net};

const CONNECT: Duration = Duration::from_secs(60);
const COMMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(20);

#[path = "../../medchain-store/tests/common/pg_env.rs"]
mod pg_env;

use pg_env::pg_url;

/// A database of its own on the test cluster, dropped (with its connections) on drop.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(url: &str) -> Self {
        let name = format!(
            "medchain_node_mixed_{}_{}",
            std::process::id(),
            medchain_node::service::now_ms()
        );
        let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        // The same server and role, another database: replace the URL's path.
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        let mut db_url = format!("{server}/{name}");
        if let Some(q) = query {
            db_url = format!("{db_url}?{q}");
        }
        Self {
            admin: url.to_owned(),
            name,
            url: db_url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn one_postgres_node_and_three_sqlite_nodes_commit_one_chain_and_survive_kill_9() {
    let Some(url) = pg_url("one_postgres_node_and_three_sqlite_nodes_commit_one_chain") else {
        return;
    };
    let db = Database::create(&url);
    let mut net = Net::write(4);
    // Node 1's ledger is the PostgreSQL database.
    net.nodes[0].config.ledger = LedgerLocation::parse(&db.url);
    std::fs::write(&net.nodes[0].config_path, net.nodes[0].config.to_toml()).expect("config");
    assert!(net.nodes[0].config.ledger.is_postgres());
    net.start_all();
    let rt = runtime();
    let submitted = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        let mut ids = Vec::new();
        for k in 0..8 {
            ids.push((k % 4, submit(&net, k % 4, &grant(&net.genesis)).await));
        }
        for (i, id) in &ids {
            net.wait_committed(*i, id, COMMIT).await;
        }
        // Every transaction at the same height on every node, the PostgreSQL one included.
        for (_, id) in &ids {
            let mut heights = Vec::new();
            for node in &net.nodes {
                heights.push(net_height(node, id).await);
            }
            assert!(
                heights.windows(2).all(|w| w[0] == w[1]),
                "{id}: {heights:?}"
            );
        }
        // The PostgreSQL node reports its round and mempool like the others.
        let metrics = net.nodes[0].api().metrics().await.expect("metrics");
        assert!(metric_value(&metrics, "medchain_round").is_some_and(|r| r >= 1.0));
        assert!(metric_value(&metrics, "medchain_mempool_transactions").is_some());
        ids
    });

    // kill -9 the PostgreSQL node while the others go on; it reopens its ledger and catches up.
    net.nodes[0].kill9();
    let after = rt.block_on(async {
        let mut ids = Vec::new();
        for k in 0..4 {
            ids.push((
                1 + k % 3,
                submit(&net, 1 + k % 3, &grant(&net.genesis)).await,
            ));
        }
        for (i, id) in &ids {
            net.wait_committed(*i, id, COMMIT).await;
        }
        ids
    });
    net.nodes[0].start();
    rt.block_on(async {
        net.wait_connected(&[0], 3, CONNECT).await;
        // Caught up by sync: what committed while it was down is in its ledger.
        for (_, id) in &after {
            net.wait_committed(0, id, COMMIT).await;
        }
        // And it commits what is submitted to it after the restart.
        let id = submit(&net, 0, &grant(&net.genesis)).await;
        for i in 0..4 {
            net.wait_committed(i, &id, COMMIT).await;
        }
        let caught_up = wait_for(COMMIT, || async {
            let mut heads = Vec::new();
            for node in &net.nodes {
                match node.api().status().await {
                    Ok(s) => heads.push((s.height, s.head)),
                    Err(_) => return false,
                }
            }
            heads.windows(2).all(|w| w[0] == w[1])
        })
        .await;
        assert!(caught_up, "nodes did not reach one head\n{}", net.logs());
    });
    for node in &mut net.nodes {
        let status = node.terminate(STOP);
        assert!(status.success(), "{status:?}\n{}", node.tail());
    }
    // Every ledger verifies and holds one chain, with everything committed.
    // (Each a prefix of the longest: a node stopped first may miss the very last commit.)
    let chains: Vec<Vec<String>> = (0..4).map(|i| net.verify_ledger(i)).collect();
    let shortest = chains.iter().map(Vec::len).min().unwrap_or(0);
    for c in &chains {
        assert_eq!(c[..shortest], chains[0][..shortest], "forked: {chains:?}");
    }
    assert!(shortest >= 3, "{chains:?}");
    assert_eq!(submitted.len() + after.len(), 12);
    drop(db);
}

async fn net_height(node: &support::Node, id: &str) -> Option<u64> {
    let s = node.api().tx_status(id).await.expect("status");
    assert_eq!(s.status, "committed", "{id} on {}", node.api_addr());
    s.height
}
