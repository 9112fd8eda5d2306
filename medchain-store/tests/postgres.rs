//! PostgreSQL store against a real server (`scripts/with-postgres.sh` sets MEDCHAIN_PG_URL).
#![cfg(feature = "postgres")]

mod common;

use common::*;
use getrandom::SysRng;
use medchain_core::ledger::AuditKind;
use medchain_core::seal::NetworkKey;
use medchain_core::store::LedgerStore;
use medchain_store::{Ledger, LedgerError, PostgresStore, StoreError};
use rand_core::UnwrapErr;

#[test]
fn postgres_store_passes_the_conformance_suite() {
    let Some(url) = pg_url("postgres_store_passes_the_conformance_suite") else {
        return;
    };
    let mut schemas = Vec::new();
    medchain_core::store::conformance::run_all(|| {
        let schema = unique_schema("conf");
        schemas.push(schema.clone());
        PostgresStore::create(&url, &schema, &NetworkKey::generate(&mut UnwrapErr(SysRng)))
            .expect("create")
    });
    assert_eq!(schemas.len(), 7);
}

/// A node's read-only connection to the schema ([`PostgresStore::reader`]) passes the same
/// reader conformance test as SQLite's.
#[test]
fn a_postgres_reader_sees_what_the_store_appends() {
    let Some(url) = pg_url("a_postgres_reader_sees_what_the_store_appends") else {
        return;
    };
    let schema = unique_schema("reader");
    let mut s = story(13);
    let key = network_key(&mut s.net);
    let store = PostgresStore::create(&url, &schema, &key).expect("create");
    let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
    reader_conformance(&mut ledger, &mut s);
    let reader = ledger
        .store()
        .reader(&network_key(&mut s.net))
        .expect("reader");
    assert!(format!("{reader:?}").contains("height: 4"));
    ledger.into_store().drop_schema().expect("drop");
}

#[test]
fn postgres_ledger_reopens_verifies_and_refuses_tampering() {
    let Some(url) = pg_url("postgres_ledger_reopens_verifies_and_refuses_tampering") else {
        return;
    };
    let schema = unique_schema("ledger");
    let mut s = story(21);
    let key = network_key(&mut s.net);
    let sealed = {
        let store = PostgresStore::create(&url, &schema, &key).expect("create");
        let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
        let sealed = small_chain(&mut ledger, &mut s, "pg");
        let erase = erase_tx(&mut s.net, &s.patient, &sealed);
        commit(&mut ledger, &mut s.net, vec![erase]);
        sealed
    };
    let store = PostgresStore::open(&url, &schema, &network_key(&mut s.net)).expect("open");
    let ledger = Ledger::with_store(store, None, network_key(&mut s.net)).expect("ledger");
    assert_eq!(ledger.height(), 4);
    let rec = ledger
        .get_record(&sealed.record_id())
        .expect("get")
        .expect("record");
    assert!(rec.entry.erased && rec.sealed.is_none());
    assert!(ledger
        .store()
        .block(1)
        .expect("b1")
        .expect("b1")
        .transactions[0]
        .is_pruned());
    let kinds: Vec<_> = ledger
        .audit_of_patient(&s.patient.verify_key())
        .expect("audit")
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds,
        [AuditKind::KeyShared, AuditKind::Accessed, AuditKind::Erased]
    );
    let summary = ledger.verify(|_| {}).expect("verify");
    assert_eq!(summary.blocks, 4);
    drop(ledger);

    // Wrong key, missing schema, a schema that is not a store.
    let err = PostgresStore::open(&url, &schema, &NetworkKey::generate(&mut UnwrapErr(SysRng)))
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err}");
    let err =
        PostgresStore::open(&url, "no_such_schema_xyz", &network_key(&mut s.net)).unwrap_err();
    assert_eq!(err.to_string(), "no store at schema no_such_schema_xyz");
    let err = PostgresStore::open(&url, "public", &network_key(&mut s.net)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a medchain store: the schema holds no medchain store"
    );
    let err = PostgresStore::open(&url, "Bad;Name", &network_key(&mut s.net)).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore(_)), "{err}");

    // A tampered head is refused.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    c.batch_execute(&format!(
        "UPDATE {schema}.blocks SET timestamp_ms = timestamp_ms + 1 WHERE height = 4"
    ))
    .expect("tamper");
    let err = PostgresStore::open(&url, &schema, &network_key(&mut s.net)).unwrap_err();
    assert!(matches!(err, StoreError::HeadInvalid(_)), "{err}");
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .expect("drop");
}

#[test]
fn postgres_create_refuses_an_existing_schema() {
    let Some(url) = pg_url("postgres_create_refuses_an_existing_schema") else {
        return;
    };
    let schema = unique_schema("dup");
    let k = NetworkKey::generate(&mut UnwrapErr(SysRng));
    let a = PostgresStore::create(&url, &schema, &k).expect("create");
    let err = PostgresStore::create(&url, &schema, &k).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("a store already exists at schema {schema}")
    );
    a.drop_schema().expect("drop");
}

/// A PostgreSQL schema tampered with plain SQL by its administrator.
struct Schema {
    url: String,
    schema: String,
    client: postgres::Client,
}

impl common::attacks::Admin for Schema {
    type Store = PostgresStore;
    fn exec(&mut self, sql: &str, blob: Option<&[u8]>) {
        let sql = sql
            .replace("{s}", &format!("{}.", self.schema))
            .replace(":blob", "$1");
        match blob {
            Some(b) => self.client.execute(&sql, &[&b]).map(|_| ()),
            None => self.client.batch_execute(&sql),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn bytes(&mut self, sql: &str) -> Vec<u8> {
        let sql = sql.replace("{s}", &format!("{}.", self.schema));
        self.client.query_one(&sql, &[]).expect("query").get(0)
    }
    fn reopen(&mut self, key: NetworkKey) -> Result<Ledger<PostgresStore>, LedgerError> {
        let store = PostgresStore::open(&self.url, &self.schema, &key)?;
        Ledger::with_store(store, None, key)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
    }
}

fn pg_scene(url: &str, seed: u64) -> (Schema, common::attacks::Scene) {
    let schema = unique_schema("attack");
    let mut s = story(seed);
    let key = network_key(&mut s.net);
    let store = PostgresStore::create(url, &schema, &key).expect("create");
    let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
    let scene = common::attacks::scene(&mut ledger, seed);
    ledger.verify(|_| {}).expect("the untouched store verifies");
    drop(ledger);
    let client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    (
        Schema {
            url: url.to_owned(),
            schema,
            client,
        },
        scene,
    )
}

#[test]
fn postgres_refuses_rolled_back_moved_deleted_rows_and_stripped_payloads() {
    use common::attacks;
    let Some(url) = pg_url("postgres_refuses_rolled_back_moved_deleted_rows_and_stripped_payloads")
    else {
        return;
    };
    let (mut a, mut sc) = pg_scene(&url, 41);
    attacks::undo_a_revocation(&mut a, &mut sc);
    let (mut a, mut sc) = pg_scene(&url, 42);
    attacks::undo_a_revocation_with_an_older_head(&mut a, &mut sc);
    let (mut a, mut sc) = pg_scene(&url, 43);
    attacks::move_a_consent_to_another_patient(&mut a, &mut sc);
    let (mut a, mut sc) = pg_scene(&url, 44);
    attacks::delete_or_replace_an_audit_row(&mut a, &mut sc, true);
    let (mut a, mut sc) = pg_scene(&url, 45);
    attacks::delete_or_replace_an_audit_row(&mut a, &mut sc, false);
    let (mut a, mut sc) = pg_scene(&url, 46);
    attacks::strip_a_payload(&mut a, &mut sc, true);
    let (mut a, mut sc) = pg_scene(&url, 47);
    attacks::strip_a_payload(&mut a, &mut sc, false);
}

#[test]
fn postgres_search_spans_blocks_appends_and_cache_limits_and_refuses_a_moved_erasure() {
    let Some(url) = pg_url("postgres_search_spans_blocks_appends_and_cache_limits") else {
        return;
    };
    let schema = unique_schema("search");
    let mut s = story(48);
    let key = network_key(&mut s.net);
    let store = PostgresStore::create(&url, &schema, &key).expect("create");
    let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
    common::attacks::search_across_blocks_and_appends(&mut ledger, &mut s);
    drop(ledger);
    let client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut admin = Schema {
        url,
        schema,
        client,
    };
    let key = network_key(&mut s.net);
    common::attacks::move_an_erasure_to_another_record(&mut admin, key, &s.patient);
}

#[test]
fn postgres_keeps_the_durable_node_state() {
    use medchain_core::protocol::{DurableState, SafetyState};
    let Some(url) = pg_url("postgres_keeps_the_durable_node_state") else {
        return;
    };
    let schema = unique_schema("durable");
    let mut s = story(24);
    let key = network_key(&mut s.net);
    let state = DurableState {
        safety: SafetyState {
            highest_voted_round: 7,
            high_qc: None,
        },
        pending: Vec::new(),
    };
    {
        let store = PostgresStore::create(&url, &schema, &key).expect("create");
        let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
        assert_eq!(ledger.durable_state().expect("read"), None);
        ledger
            .save_durable_state(&DurableState::default())
            .expect("save");
        ledger.save_durable_state(&state).expect("replace");
    }
    let store = PostgresStore::open(&url, &schema, &network_key(&mut s.net)).expect("open");
    let ledger = Ledger::with_store(store, None, network_key(&mut s.net)).expect("ledger");
    assert_eq!(ledger.durable_state().expect("read"), Some(state));
}
