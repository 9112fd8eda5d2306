//! The cross-hospital read (issue #16) on four real `medchaind` processes, driven over their
//! HTTP APIs: St. Mary's adds Alice's HbA1c, Alice consents for Dr. Okafor of City General,
//! Dr. Okafor signs a key request on his own device and City General's node relays it; St.
//! Mary's releases the key; Dr. Okafor fetches the release from City General and opens the
//! record himself. Then the refusals: a doctor without consent, a replayed request, a tampered
//! one, a bad record. Every process is stopped by its pid; every wait is bounded.

mod support;

use std::time::{Duration, Instant};

use getrandom::SysRng;
use medchain::{
    Actor, Consent, Identity, Provision, Purpose, SealedRecord, SealedWriterKey, VerifyKey,
};
use medchain_core::consent::{Action, Period};
use medchain_core::credential::{Credential, Role};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::domain;
use medchain_core::hash::{ChainId, RecordId};
use medchain_core::seal::KeyEnvelope;
use medchain_core::sharing::KeyRequest;
use medchain_core::tx::{PatientSignature, TxBody};
use medchain_node::api::KeyRequestView;
use medchain_node::client::{metric_value, ApiClient};
use medchain_node::service::now_ms;
use rand_core::UnwrapErr;
use support::{refusal, submit, Net};

const CONNECT: Duration = Duration::from_secs(60);
const COMMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(20);
const DAY: u64 = 86_400_000;

const ST_MARYS: usize = 0;
const CITY_GENERAL: usize = 1;
const RIVERSIDE: usize = 2;

const HBA1C: &str = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},
 "effectiveDateTime":"2026-10-14T09:30:00Z",
 "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},
 "valueQuantity":{"value":7.9,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}"#;

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// Polls the request `id` at `api` until it is answered (and, with `committed`, a release is
/// committed).
async fn wait_answered(net: &Net, api: &ApiClient, id: &str, committed: bool) -> KeyRequestView {
    let end = Instant::now() + COMMIT;
    loop {
        let view = api.key_request(id).await.expect("key request status");
        let done = view.status == "answered"
            && (!committed
                || view.answer.as_deref() != Some("released")
                || view.committed == Some(true));
        if done {
            return view;
        }
        assert!(
            Instant::now() < end,
            "request {id} not answered in time: {view:?}\n{}",
            net.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `name{answer="answer"}` in Prometheus text (0 when absent).
fn answer_count(text: &str, name: &str, answer: &str) -> f64 {
    let key = format!("{name}{{answer=\"{answer}\"}}");
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// City General's credential for a clinician, valid for a year.
/// `who` signs a treatment key request to `holder` for `record`, at `at_ms`.
fn treat(
    chain: &ChainId,
    who: &Identity,
    holder: VerifyKey,
    record: RecordId,
    credential: Option<Credential>,
    at_ms: u64,
) -> KeyRequest {
    KeyRequest::sign(
        who,
        chain,
        holder,
        record,
        credential,
        Purpose::Treat,
        at_ms,
        &mut rng(),
    )
    .expect("request")
}

fn clinician(
    city_general: &Identity,
    chain: &medchain_core::hash::ChainId,
    doctor: &Identity,
) -> Credential {
    Credential::issue(
        city_general,
        chain,
        doctor.verify_key(),
        Role::Clinician {
            institution: city_general.verify_key(),
        },
        now_ms() + 365 * DAY,
    )
}

#[test]
fn a_clinician_reads_another_hospitals_record_over_http_and_the_refusals_hold() {
    let started = Instant::now();
    let mut net = Net::write(4);
    net.start_all();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        let chain = net.genesis.chain_id();
        let st_marys = net.nodes[ST_MARYS].identity();
        let city_general = net.nodes[CITY_GENERAL].identity();
        let (holder_api, relay_api) = (net.nodes[ST_MARYS].api(), net.nodes[CITY_GENERAL].api());
        let alice = Identity::generate(&mut rng());
        let okafor = Identity::generate(&mut rng());
        let fhir: serde_json::Value = serde_json::from_str(HBA1C).expect("FHIR JSON");

        // Alice enrols at St. Mary's (her wallet seals her writer key to it).
        let enrolment = SealedWriterKey::export(&alice, &chain, &st_marys.public(), &mut rng())
            .expect("enrolment")
            .to_bytes();

        // Refused records submit nothing: an invalid resource (its issue paths come back), an
        // enrolment made for another hospital, a reader that is not an identity.
        let submitted = |text: &str| metric_value(text, "medchain_transactions_submitted_total");
        let before = submitted(&holder_api.metrics().await.expect("metrics"));
        let mut invalid = fhir.clone();
        invalid.as_object_mut().expect("object").remove("status");
        let (status, code, _) = refusal(holder_api.add_record(&invalid, &enrolment, &[]).await);
        assert_eq!((status, code.as_str()), (422, "invalid_fhir"));
        match holder_api.add_record(&invalid, &enrolment, &[]).await {
            Err(medchain_node::client::ClientError::Api { body, .. }) => {
                assert!(
                    body.error
                        .issues
                        .iter()
                        .any(|i| i.path == "Observation.status"),
                    "{:?}",
                    body.error.issues
                );
                // Paths and fixed texts only: nothing of the record's values.
                assert!(!serde_json::to_string(&body).unwrap().contains("4548-4"));
            }
            other => panic!("expected invalid_fhir, got {other:?}"),
        }
        let elsewhere = SealedWriterKey::export(&alice, &chain, &city_general.public(), &mut rng())
            .expect("enrolment")
            .to_bytes();
        let (status, code, _) = refusal(holder_api.add_record(&fhir, &elsewhere, &[]).await);
        assert_eq!((status, code.as_str()), (422, "bad_enrolment"));
        let (status, code, _) = refusal(
            holder_api
                .add_record(&fhir, &enrolment, &[vec![1, 2, 3]])
                .await,
        );
        assert_eq!((status, code.as_str()), (400, "bad_reader"));
        let after = submitted(&holder_api.metrics().await.expect("metrics"));
        assert_eq!(before, after, "a refused record submitted something");

        // St. Mary's adds Alice's HbA1c over HTTP; Alice's consent for Dr. Okafor is submitted
        // at City General.
        let added = holder_api
            .add_record(&fhir, &enrolment, &[])
            .await
            .expect("record added");
        let record =
            RecordId::from_bytes(&hex::decode(&added.record).expect("hex")).expect("record id");
        let grant = Consent {
            patient: alice.public(),
            issued_ms: now_ms(),
            summary: "Dr. Okafor may read my results for my treatment".into(),
            period: Period::default(),
            emergency: None,
            provisions: vec![Provision::permit()
                .actor(Actor::Party(okafor.verify_key()))
                .action(Action::Read)
                .purpose(Purpose::Treat)],
        }
        .grant_body(&alice, &chain)
        .expect("grant")
        .to_bytes();
        let consent = submit(&net, CITY_GENERAL, &grant).await;
        net.wait_committed(CITY_GENERAL, &added.id, COMMIT).await;
        net.wait_committed(CITY_GENERAL, &consent, COMMIT).await;

        // Before any release, nothing is handed to Dr. Okafor.
        let okafor_id = okafor.public().to_bytes();
        let (status, code, _) = refusal(relay_api.release(&added.record, &okafor_id).await);
        assert_eq!((status, code.as_str()), (404, "not_found"));

        // Dr. Okafor signs the request on his own device; City General relays it.
        let credential = clinician(&city_general, &chain, &okafor);
        let request = treat(
            &chain,
            &okafor,
            st_marys.verify_key(),
            record,
            Some(credential),
            now_ms(),
        )
        .to_bytes();
        let relayed = relay_api
            .relay_key_request(&request)
            .await
            .expect("relayed");
        assert_eq!(relayed.status, "pending");
        let answered = wait_answered(&net, &relay_api, &relayed.id, false).await;
        assert_eq!(answered.answer.as_deref(), Some("released"), "{answered:?}");

        // The same signed request replayed through Riverside (within the holder's 30 s window):
        // relayed (it checks out), answered `replayed` by St. Mary's, which releases nothing
        // twice.
        let riverside = net.nodes[RIVERSIDE].api();
        let replay = riverside
            .relay_key_request(&request)
            .await
            .expect("relayed at Riverside");
        assert_eq!(
            replay.id, relayed.id,
            "the same signed request, the same id"
        );
        let view = wait_answered(&net, &riverside, &replay.id, true).await;
        assert_eq!(
            (view.answer.as_deref(), view.committed),
            (Some("replayed"), Some(false))
        );

        let answered = wait_answered(&net, &relay_api, &relayed.id, true).await;
        assert_eq!(answered.committed, Some(true));
        for tx in [&answered.key_shared, &answered.access_logged] {
            let tx = tx.as_deref().expect("release transactions");
            net.wait_committed(CITY_GENERAL, tx, COMMIT).await;
        }

        // He fetches what was released to him and opens it with his own key.
        let release = relay_api
            .release(&added.record, &okafor_id)
            .await
            .expect("release");
        let sealed = SealedRecord::from_bytes(&hex::decode(&release.sealed).unwrap()).unwrap();
        let envelope = KeyEnvelope::from_bytes(&hex::decode(&release.envelope).unwrap()).unwrap();
        let opened = sealed
            .open_with(&okafor, std::slice::from_ref(&envelope))
            .expect("Dr. Okafor opens the record");
        assert_eq!(opened.payload(), serde_json::to_vec(&fhir).unwrap());
        let read: serde_json::Value = serde_json::from_slice(opened.payload()).unwrap();
        assert_eq!(read, fhir);
        // The same release is served by every node (it is on the shared ledger), and only to him.
        let at_riverside = net.nodes[RIVERSIDE]
            .api()
            .release(&added.record, &okafor_id)
            .await
            .expect("release at Riverside");
        assert_eq!(at_riverside.envelope, release.envelope);
        let stranger = Identity::generate(&mut rng());
        let stranger_id = stranger.public().to_bytes();
        let (status, code, _) = refusal(relay_api.release(&added.record, &stranger_id).await);
        assert_eq!((status, code.as_str()), (404, "not_found"));
        let (status, code, _) = refusal(relay_api.release(&added.record, b"no").await);
        assert_eq!((status, code.as_str()), (400, "bad_reader"));
        let (status, code, _) = refusal(relay_api.release("zz", &okafor_id).await);
        assert_eq!((status, code.as_str()), (400, "bad_id"));

        // A doctor of City General without Alice's consent is denied; nothing is released.
        let denied_request = treat(
            &chain,
            &stranger,
            st_marys.verify_key(),
            record,
            Some(clinician(&city_general, &chain, &stranger)),
            now_ms(),
        )
        .to_bytes();
        let relayed_denied = relay_api
            .relay_key_request(&denied_request)
            .await
            .expect("relayed");
        let view = wait_answered(&net, &relay_api, &relayed_denied.id, true).await;
        assert_eq!(view.answer.as_deref(), Some("denied"), "{view:?}");
        assert_eq!(
            (view.committed, view.key_shared.as_ref()),
            (Some(false), None)
        );
        let (status, code, _) = refusal(relay_api.release(&added.record, &stranger_id).await);
        assert_eq!((status, code.as_str()), (404, "not_found"));

        // Hostile: a request altered after signing (another purpose) is refused at relay time
        // and nothing is sent; bytes that are not a request, a request for an unknown record,
        // research, and an unknown id get their own codes.
        // (The holder counts an answer just after sending it: wait for all three.)
        let name = "medchain_key_requests_answered_total";
        let counted = support::wait_for(COMMIT, || async {
            let text = holder_api.metrics().await.unwrap_or_default();
            metric_value(&text, name) == Some(3.0)
        })
        .await;
        assert!(
            counted,
            "the holder did not count its three answers\n{}",
            net.logs()
        );
        let holder_before = holder_api.metrics().await.expect("metrics");
        let mut tampered = KeyRequest::from_bytes(&request).expect("decodes");
        tampered.purpose = Purpose::from_code("ETREAT", None);
        let (status, code, _) = refusal(relay_api.relay_key_request(&tampered.to_bytes()).await);
        assert_eq!((status, code.as_str()), (422, "bad_signature"));
        let (status, code, _) = refusal(relay_api.relay_key_request(&[0xff, 0, 1]).await);
        assert_eq!((status, code.as_str()), (400, "malformed_key_request"));
        let unknown = treat(
            &chain,
            &okafor,
            st_marys.verify_key(),
            RecordId::from_byte_array([7; 32]),
            None,
            now_ms(),
        );
        let (status, code, _) = refusal(relay_api.relay_key_request(&unknown.to_bytes()).await);
        assert_eq!((status, code.as_str()), (404, "not_found"));
        let other_holder = treat(
            &chain,
            &okafor,
            city_general.verify_key(),
            record,
            None,
            now_ms(),
        );
        let (status, code, _) =
            refusal(relay_api.relay_key_request(&other_holder.to_bytes()).await);
        assert_eq!((status, code.as_str()), (422, "not_addressed_here"));
        let old = treat(
            &chain,
            &okafor,
            st_marys.verify_key(),
            record,
            None,
            now_ms() - 30 * DAY,
        );
        let (status, code, _) = refusal(relay_api.relay_key_request(&old.to_bytes()).await);
        assert_eq!((status, code.as_str()), (422, "stale"));
        // Research never receives keys, whoever signs and relays it.
        let mut research = KeyRequest::from_bytes(&request).expect("decodes");
        research.purpose = Purpose::from_code("HRESCH", None);
        let (status, code, _) = refusal(relay_api.relay_key_request(&research.to_bytes()).await);
        assert_eq!((status, code.as_str()), (403, "research"));
        let (status, code, _) = refusal(relay_api.key_request(&"00".repeat(32)).await);
        assert_eq!((status, code.as_str()), (404, "not_found"));
        let (status, code, _) = refusal(relay_api.key_request("nope").await);
        assert_eq!((status, code.as_str()), (400, "bad_id"));

        // The holder logged and counted exactly what it answered; the relay what it received.
        let holder_text = holder_api.metrics().await.expect("metrics");
        for (answer, n) in [("released", 1.0), ("denied", 1.0), ("replayed", 1.0)] {
            assert_eq!(answer_count(&holder_text, name, answer), n, "{answer}");
            assert_eq!(answer_count(&holder_before, name, answer), n, "{answer}");
        }
        assert_eq!(
            metric_value(&holder_text, name),
            Some(3.0),
            "nothing more was answered"
        );
        let relay_text = relay_api.metrics().await.expect("metrics");
        let received = "medchain_key_answers_received_total";
        assert_eq!(answer_count(&relay_text, received, "released"), 1.0);
        assert_eq!(answer_count(&relay_text, received, "denied"), 1.0);
        let log = std::fs::read_to_string(&net.nodes[ST_MARYS].log).unwrap_or_default();
        assert!(log.contains("key request answered"), "{log}");
        assert!(!log.contains("4548-4") && !log.contains("Hemoglobin"));

        // Alice erases the record: no request is relayed for it and no release is served.
        let erasure = TxBody::RecordErased {
            record_id: record,
            patient: PatientSignature::sign(
                &alice,
                &chain,
                domain::ERASURE_SIG,
                record.as_byte_array(),
            ),
        }
        .to_bytes();
        let erased = submit(&net, RIVERSIDE, &erasure).await;
        net.wait_committed(CITY_GENERAL, &erased, COMMIT).await;
        let after = treat(
            &chain,
            &okafor,
            st_marys.verify_key(),
            record,
            None,
            now_ms(),
        );
        let (status, code, _) = refusal(relay_api.relay_key_request(&after.to_bytes()).await);
        assert_eq!((status, code.as_str()), (410, "erased"));
        let (status, code, _) = refusal(relay_api.release(&added.record, &okafor_id).await);
        assert_eq!((status, code.as_str()), (410, "erased"));
    });
    for node in &mut net.nodes {
        let status = node.terminate(STOP);
        assert!(status.success(), "a node exited with {status}");
    }
    println!("cross-hospital read over HTTP: {:?}", started.elapsed());
}
