//! The FHIR R4 API (issue #16) on four real `medchaind` processes, driven over HTTP with SMART
//! Backend Services tokens: Alice enrols at St. Mary's and City General with her own token; St.
//! Mary's EHR posts her transaction Bundle; her wallet's signed consent for Dr. Okafor is
//! created as a FHIR Consent; Dr. Okafor's EHR at City General searches and reads her HbA1c
//! (released by St. Mary's under the consent, logged on chain); Dr. Reed at Riverside is denied,
//! then reads in an emergency; Alice's audit trail shows every read; after her revocation Dr.
//! Okafor is denied. Then the hostile requests: each refused with an OperationOutcome and
//! nothing written. Every process is stopped by its pid; every wait is bounded.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::Method;
use medchain::{Actor, Consent, Identity, Provision, Purpose};
use medchain_core::consent::DataClass;
use medchain_core::consent::{Action, Period};
use medchain_core::credential::{Credential, Role};
use medchain_core::encoding::Encode;
use medchain_core::research::{ResearchRequest, Study};
use medchain_node::client::ApiClient;
use medchain_node::service::now_ms;
use serde_json::{json, Value};
use support::fhir::{
    alice_bundle, audience, code, connect_ehrs, ehr_token, enrolment_parameters, fhir,
    fhir_with_headers, header_text, hex_key, json_body, patient_token, register, rng, submitted,
    treatment_consent, wait_until,
};
use support::Net;

const STOP: Duration = Duration::from_secs(20);
const DAY: u64 = 86_400_000;

const ST_MARYS: usize = 0;
const CITY_GENERAL: usize = 1;
const RIVERSIDE: usize = 2;

const LOINC_HBA1C: &str = "http://loinc.org|4548-4";

#[test]
fn the_clinic_story_over_the_fhir_api_on_four_processes() {
    let started = Instant::now();
    let mut net = Net::write(4);
    let st_marys_ehr = Identity::generate(&mut rng());
    let city_ehr = Identity::generate(&mut rng());
    let riverside_ehr = Identity::generate(&mut rng());
    register(&mut net, ST_MARYS, "stmarys-ehr", &st_marys_ehr, &["hale"]);
    let okafor = register(&mut net, CITY_GENERAL, "city-ehr", &city_ehr, &["okafor"])
        .pop()
        .expect("okafor");
    register(
        &mut net,
        RIVERSIDE,
        "riverside-ehr",
        &riverside_ehr,
        &["reed"],
    );
    net.start_all();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let chain = net.genesis.chain_id();
        let connected = connect_ehrs(
            &net,
            &[
                (ST_MARYS, "stmarys-ehr", &st_marys_ehr),
                (CITY_GENERAL, "city-ehr", &city_ehr),
                (RIVERSIDE, "riverside-ehr", &riverside_ehr),
            ],
        )
        .await;
        let raw: Vec<ApiClient> = connected.iter().map(|(raw, _, _)| raw.clone()).collect();
        let [(_, stm, stm_token), (_, city, city_token), (_, river, river_token)] =
            <[_; 3]>::try_from(connected).expect("three");
        let alice = Identity::generate(&mut rng());
        let alice_key = hex_key(&alice);

        // Unauthenticated: metadata only.
        let (status, _, capability) = fhir(&raw[0], Method::GET, "/fhir/metadata", None, &[], None).await;
        assert_eq!(status, 200);
        assert_eq!(capability["resourceType"], "CapabilityStatement");
        assert_eq!(capability["fhirVersion"], "4.0.1");
        // The SMART token URI is absolute: the token endpoint clients sign their assertions for.
        let token_uri = &capability["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"];
        assert_eq!(token_uri.as_str(), Some(audience(&raw[0]).as_str()), "{capability}");
        let (status, _, outcome) = fhir(&raw[0], Method::GET, &format!("/fhir/AuditEvent?patient={alice_key}"), None, &[], None).await;
        assert_eq!(status, 401, "{outcome}");

        // Alice enrols at St. Mary's and City General with her own token.
        for (api, i) in [(&stm, ST_MARYS), (&city, CITY_GENERAL)] {
            let token = patient_token(api, &alice).await;
            let (status, _, answer) = fhir(api, Method::POST, "/fhir/Patient/$enrol", Some(&token), &[],
                json_body(&enrolment_parameters(&alice, &net, i))).await;
            assert_eq!(status, 200, "{answer}");
        }

        // Refused writes submit nothing: an invalid Observation (its path comes back), a cycle.
        let before = submitted(&stm.metrics().await.expect("metrics"));
        let mut invalid = alice_bundle(&alice_key);
        invalid["entry"][0]["resource"].as_object_mut().expect("object").remove("status");
        let (status, _, outcome) = fhir(&stm, Method::POST, "/fhir", Some(&stm_token), &[], json_body(&invalid)).await;
        assert_eq!((status, code(&outcome).as_str()), (422, "invalid_fhir"), "{outcome}");
        assert!(outcome.to_string().contains("Bundle.entry[0].resource.status"), "{outcome}");
        assert!(!outcome.to_string().contains("4548-4"), "an error echoed the record");
        let mut cycle = alice_bundle(&alice_key);
        cycle["entry"][1]["resource"]["partOf"] = json!({"reference": "urn:uuid:0b7a4ad8-7d3e-4b0e-9f59-0d7f0f3c9e01"});
        let (status, _, outcome) = fhir(&stm, Method::POST, "/fhir", Some(&stm_token), &[], json_body(&cycle)).await;
        assert_eq!((status, code(&outcome).as_str()), (422, "reference_cycle"), "{outcome}");
        assert_eq!(before, submitted(&stm.metrics().await.expect("metrics")), "a refused write submitted");

        // St. Mary's EHR posts Alice's bundle (to the base with a trailing slash, as some FHIR
        // clients do; the research cohort below posts to `/fhir`).
        let (status, _, response) = fhir(&stm, Method::POST, "/fhir/", Some(&stm_token), &[], json_body(&alice_bundle(&alice_key))).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["type"], "transaction-response");
        let locations: Vec<String> = response["entry"].as_array().expect("entries").iter()
            .map(|e| { assert_eq!(e["response"]["status"], "201 Created", "{e}"); e["response"]["location"].as_str().expect("location").to_owned() })
            .collect();
        assert_eq!(locations.len(), 4);
        let hba1c = locations[0].split('/').nth(1).expect("id").to_owned();

        // Alice's wallet signs her consent for Dr. Okafor; it is created as a FHIR Consent.
        let alice_token = patient_token(&city, &alice).await;
        let (consent, grant) = treatment_consent(&alice, &okafor, &chain);
        let (status, headers, created) = fhir_with_headers(&city, Method::POST, "/fhir/Consent", Some(&alice_token), &[], json_body(&consent)).await;
        assert_eq!(status, 201, "{created}");
        let consent_id = header_text(&headers, "location").expect("location").trim_start_matches("Consent/").to_owned();
        // The grant's transaction is named, for the wallet to prove it committed.
        let grant_tx = header_text(&headers, medchain_node::fhir::TRANSACTION_HEADER).expect("the transaction header");
        let committed = wait_until(STOP, || async {
            city.tx_status(&grant_tx).await.is_ok_and(|s| s.status == "committed")
        })
        .await;
        assert!(committed, "the consent's transaction {grant_tx} did not commit");
        let (status, _, read_back) = fhir(&city, Method::GET, &format!("/fhir/Consent/{consent_id}"), Some(&city_token), &[], None).await;
        assert_eq!((status, read_back["status"].as_str()), (200, Some("active")), "{read_back}");

        // Dr. Okafor's EHR at City General searches Alice's HbA1c: St. Mary's releases it.
        let okafor_treat = [("x-medchain-clinician", "okafor"), ("x-medchain-purpose-of-use", "TREAT")];
        let query = format!("/fhir/Observation?patient=Patient/{alice_key}&code={}", LOINC_HBA1C.replace('|', "%7C"));
        let (status, _, found) = fhir(&city, Method::GET, &query, Some(&city_token), &okafor_treat, None).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["type"], "searchset");
        let entries = found["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{found}");
        assert_eq!(entries[0]["resource"]["id"], hba1c.as_str());
        assert_eq!(entries[0]["resource"]["valueQuantity"]["value"], 7.9);
        assert_eq!(entries[0]["resource"]["subject"]["reference"], format!("Patient/{alice_key}"));
        // Another code finds nothing; a read by id works the same way.
        let other = format!("/fhir/Observation?patient={alice_key}&code=http://loinc.org%7C2345-7");
        let (status, _, none) = fhir(&city, Method::GET, &other, Some(&city_token), &okafor_treat, None).await;
        assert_eq!((status, none["entry"].as_array().map(Vec::len)), (200, Some(0)), "{none}");
        let (status, _, read) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&city_token), &okafor_treat, None).await;
        assert_eq!((status, read["code"]["coding"][0]["code"].as_str()), (200, Some("4548-4")), "{read}");

        // Dr. Reed at Riverside has no consent: denied, with a stable code, nothing of the record.
        let reed_treat = [("x-medchain-clinician", "reed"), ("x-medchain-purpose-of-use", "TREAT")];
        let (status, _, denied) = fhir(&river, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&river_token), &reed_treat, None).await;
        assert_eq!((status, code(&denied).as_str()), (403, "denied"), "{denied}");
        assert!(!denied.to_string().contains("4548-4"));
        // In an emergency he reads it, and the read is flagged.
        let reed_emergency = [("x-medchain-clinician", "reed"), ("x-medchain-purpose-of-use", "ETREAT")];
        let (status, _, emergency) = fhir(&river, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&river_token), &reed_emergency, None).await;
        assert_eq!(status, 200, "{emergency}");

        // Alice's audit trail, with her own token, at any node: every read is there.
        let (status, _, trail) = fhir(&city, Method::GET, &format!("/fhir/AuditEvent?patient={alice_key}"), Some(&alice_token), &[], None).await;
        assert_eq!(status, 200, "{trail}");
        let events = trail["entry"].as_array().expect("entries");
        let text = trail.to_string();
        assert!(events.len() >= 6, "two reads by Okafor and one by Reed, each released and logged: {trail}");
        assert!(text.contains("ETREAT") && text.contains("urn:medchain:break-glass"), "{trail}");
        // Dr. Reed's refusal is on chain too: St. Mary's logged it (the rule's name, never the
        // consent's detail), and Alice sees it at any node as a failed read.
        let refused = |trail: &serde_json::Value| {
            trail["entry"].as_array().into_iter().flatten().any(|e| {
                let event = &e["resource"];
                event["outcome"] == "4"
                    && event["outcomeDesc"] == "refused: denied"
                    && event["agent"][0]["purposeOfUse"].to_string().contains("TREAT")
            })
        };
        let mut seen = refused(&trail);
        if !seen {
            seen = wait_until(Duration::from_secs(20), || async {
                let (_, _, trail) = fhir(&river, Method::GET, &format!("/fhir/AuditEvent?patient={alice_key}"), Some(&alice_token), &[], None).await;
                refused(&trail)
            })
            .await;
        }
        assert!(seen, "the refusal is in Alice's trail");
        // Alice's token does not reach another patient's trail.
        let stranger = hex_key(&Identity::generate(&mut rng()));
        let (status, _, outcome) = fhir(&city, Method::GET, &format!("/fhir/AuditEvent?patient={stranger}"), Some(&alice_token), &[], None).await;
        assert_eq!((status, code(&outcome).as_str()), (403, "other_patient"), "{outcome}");

        // Research: eleven patients with a diabetes HbA1c at St. Mary's consent to research (a
        // cell needs 11); Dr. Chen's signed request is exported de-identified, logged first.
        let mut cohort = vec![alice.duplicate()];
        for _ in 0..10 {
            let patient = Identity::generate(&mut rng());
            let token = patient_token(&stm, &patient).await;
            let (status, _, answer) = fhir(&stm, Method::POST, "/fhir/Patient/$enrol", Some(&token), &[],
                json_body(&enrolment_parameters(&patient, &net, ST_MARYS))).await;
            assert_eq!(status, 200, "{answer}");
            let (status, _, answer) = fhir(&stm, Method::POST, "/fhir", Some(&stm_token), &[], json_body(&alice_bundle(&hex_key(&patient)))).await;
            assert_eq!(status, 200, "{answer}");
            cohort.push(patient);
        }
        for patient in &cohort {
            let token = patient_token(&stm, patient).await;
            let research = Consent {
                patient: patient.public(),
                issued_ms: now_ms(),
                summary: "Any credentialed researcher may use my data for research".into(),
                period: Period::default(),
                emergency: None,
                provisions: vec![Provision::permit()
                    .actor(Actor::AnyResearcher)
                    .action(Action::ResearchUse)
                    .purpose(Purpose::Research { topic: None })],
            }
            .grant_body(patient, &chain)
            .expect("grant");
            let resource = json!({"resourceType": "Consent", "sourceAttachment": {"contentType": "application/vnd.medchain.signed-body",
                "data": base64::engine::general_purpose::STANDARD.encode(research.to_bytes())}});
            let (status, _, created) = fhir(&stm, Method::POST, "/fhir/Consent", Some(&token), &[], json_body(&resource)).await;
            assert_eq!(status, 201, "{created}");
        }
        let chen = Identity::generate(&mut rng());
        let st_marys_member = net.nodes[ST_MARYS].identity();
        let credential = Credential::issue(&st_marys_member, &chain, chen.verify_key(),
            Role::Researcher { institution: st_marys_member.verify_key() }, now_ms() + DAY);
        let study = Study {
            id: "dm2-2026".into(),
            purpose: "HRESCH".into(),
            topic: Some("diabetes".into()),
            classes: vec![
                DataClass::Code { system: "http://loinc.org".into(), code: "4548-4".into() },
                DataClass::ResourceType("Condition".into()),
            ],
            longitudinal: false,
        };
        let request = ResearchRequest::sign(&chen, &chain, study, credential).expect("request");
        let kickoff = json!({"resourceType": "Parameters", "parameter": [{"name": "researchRequest",
            "valueBase64Binary": base64::engine::general_purpose::STANDARD.encode(request.to_bytes())}]});
        // A token that cannot read every resource type the release holds (Conditions here) gets
        // nothing, and nothing is logged.
        let before = submitted(&stm.metrics().await.expect("metrics"));
        let narrow = ehr_token(&raw[ST_MARYS], "stmarys-ehr", &st_marys_ehr, "system/Observation.rs").await;
        let (status, _, o) = fhir(&raw[ST_MARYS], Method::POST, "/fhir/$export", Some(&narrow), &[("prefer", "respond-async")], json_body(&kickoff)).await;
        assert_eq!((status, code(&o).as_str()), (403, "insufficient_scope"), "{o}");
        assert_eq!(before, submitted(&stm.metrics().await.expect("metrics")), "a refused export submitted its log");
        let raw = stm
            .call_with(Method::POST, "/fhir/$export", "application/fhir+json", &[("prefer", "respond-async")],
                json_body(&kickoff).expect("body"))
            .await
            .expect("kick-off");
        let (status, headers, bytes) = (raw.status, raw.headers, raw.body);
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&bytes));
        // Bulk Data URLs are absolute, on the node's FHIR base (its token endpoint's URL).
        let stm_base = format!("http://{}/fhir/", net.nodes[ST_MARYS].api_addr());
        let on_base = |url: &str| -> String {
            let path = url.strip_prefix(stm_base.as_str()).unwrap_or_else(|| panic!("{url} is not on {stm_base}"));
            format!("/fhir/{path}")
        };
        let status_url = on_base(headers.get("content-location").and_then(|v| v.to_str().ok()).expect("content-location"));
        // Another client does not see the job.
        let (status, _, _) = fhir(&city, Method::GET, &status_url, Some(&city_token), &[], None).await;
        assert_eq!(status, 404);
        let end = Instant::now() + Duration::from_secs(60);
        let manifest = loop {
            let (status, _, manifest) = fhir(&stm, Method::GET, &status_url, Some(&stm_token), &[], None).await;
            if status == 200 {
                break manifest;
            }
            assert_eq!(status, 202, "{manifest}");
            assert!(Instant::now() < end, "the export did not complete\n{}", net.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(on_base(manifest["request"].as_str().expect("request")), "/fhir/$export");
        let instant = manifest["transactionTime"].as_str().expect("transactionTime, an instant");
        assert!(instant.ends_with('Z') && medchain_core::fhir::parse_datetime_ms(instant).is_some(), "{instant}");
        let outputs = manifest["output"].as_array().expect("output");
        let mut lines = 0;
        for output in outputs {
            let url = on_base(output["url"].as_str().expect("url"));
            let raw = stm.call(Method::GET, &url, "application/json", Vec::new()).await.expect("output");
            let (status, bytes) = (raw.status, raw.body);
            assert_eq!(status, 200);
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
            for line in text.lines() {
                let row: Value = serde_json::from_str(line).expect("NDJSON line");
                assert!(matches!(row["resourceType"].as_str(), Some("Observation" | "Condition")), "{row}");
                lines += 1;
            }
            assert!(!text.contains(&alice_key) && !text.contains("Alice"), "an export row identifies a patient");
        }
        assert_eq!(lines, 22, "{manifest}");
        // The release is on chain: St. Mary's committed its log (the manifest names it).
        let log = manifest["extension"]["urn:medchain:release-log"].as_str().expect("log id");
        assert_eq!(stm.tx_status(log).await.expect("log status").status, "committed");

        // Alice revokes; Dr. Okafor's next read is denied (every read is released anew).
        let revocation = Consent::revoke_body(
            &alice,
            &chain,
            &consent_id.parse().expect("consent id"),
        );
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "revocation",
            "valueBase64Binary": base64::engine::general_purpose::STANDARD.encode(revocation.to_bytes())}]});
        let (status, headers, revoked) = fhir_with_headers(&city, Method::POST, &format!("/fhir/Consent/{consent_id}/$revoke"), Some(&alice_token), &[], json_body(&parameters)).await;
        assert_eq!((status, revoked["status"].as_str()), (200, Some("inactive")), "{revoked}");
        let revoke_tx = header_text(&headers, medchain_node::fhir::TRANSACTION_HEADER).expect("the transaction header");
        assert_ne!(revoke_tx, grant_tx);
        assert_eq!(city.tx_status(&revoke_tx).await.expect("revocation status").status, "committed");
        let (status, _, denied) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&city_token), &okafor_treat, None).await;
        assert_eq!((status, code(&denied).as_str()), (403, "denied"), "{denied}");

        // Hostile requests: each a clear OperationOutcome, nothing written.
        let before = submitted(&city.metrics().await.expect("metrics"));
        let (status, _, o) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some("not-a-token"), &okafor_treat, None).await;
        assert_eq!(status, 401, "{o}");
        let (status, _, o) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&city_token), &[("x-medchain-clinician", "hale"), ("x-medchain-purpose-of-use", "TREAT")], None).await;
        assert_eq!((status, code(&o).as_str()), (403, "clinician_not_allowed"), "{o}");
        let (status, _, o) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&city_token), &[("x-medchain-clinician", "okafor")], None).await;
        assert_eq!((status, code(&o).as_str()), (400, "purpose_required"), "{o}");
        let (status, _, o) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&city_token), &[("x-medchain-clinician", "okafor"), ("x-medchain-purpose-of-use", "HRESCH")], None).await;
        assert_eq!((status, code(&o).as_str()), (403, "research"), "{o}");
        let (status, _, o) = fhir(&city, Method::GET, &format!("/fhir/Observation/{hba1c}"), Some(&alice_token), &[], None).await;
        assert_eq!((status, code(&o).as_str()), (403, "patient_token"), "{o}");
        let (status, _, o) = fhir(&city, Method::POST, "/fhir/Observation", Some(&city_token), &[], Some(b"{not json".to_vec())).await;
        assert_eq!((status, code(&o).as_str()), (400, "bad_json"), "{o}");
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let (status, _, o) = fhir(&city, Method::POST, "/fhir", Some(&city_token), &[], Some(deep.into_bytes())).await;
        assert_eq!((status, code(&o).as_str()), (400, "bad_json"), "{o}");
        let huge = vec![b' '; medchain_node::fhir::MAX_FHIR_BODY + 1];
        let (status, _, o) = fhir(&city, Method::POST, "/fhir", Some(&city_token), &[], Some(huge)).await;
        assert_eq!(status, 413, "{o}");
        let mut foreign = alice_bundle(&alice_key);
        foreign["entry"][2]["resource"]["identifier"][0]["value"] = json!(stranger);
        let (status, _, o) = fhir(&city, Method::POST, "/fhir", Some(&city_token), &[], json_body(&foreign)).await;
        assert_eq!((status, code(&o).as_str()), (422, "not_enrolled"), "{o}");
        let (status, _, o) = fhir(&city, Method::POST, "/fhir/Consent", Some(&city_token), &[], json_body(&json!({"resourceType": "Consent", "status": "active"}))).await;
        assert_eq!((status, code(&o).as_str()), (422, "unsigned_consent"), "{o}");
        let mut tampered = grant.to_bytes();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let forged = json!({"resourceType": "Consent", "sourceAttachment": {"contentType": "application/vnd.medchain.signed-body",
            "data": base64::engine::general_purpose::STANDARD.encode(tampered)}});
        let (status, _, o) = fhir(&city, Method::POST, "/fhir/Consent", Some(&city_token), &[], json_body(&forged)).await;
        assert_eq!(status, 422, "{o}");
        // An enrolment sealed to another hospital does not open here.
        let foreign_enrolment = enrolment_parameters(&alice, &net, RIVERSIDE);
        let (status, _, o) = fhir(&city, Method::POST, "/fhir/Patient/$enrol", Some(&alice_token), &[], json_body(&foreign_enrolment)).await;
        assert_eq!((status, code(&o).as_str()), (422, "bad_enrolment"), "{o}");
        // A transaction that mixes two patients' resources.
        let mut mixed = alice_bundle(&alice_key);
        mixed["entry"][3]["resource"]["subject"]["reference"] = json!(format!("Patient/{stranger}"));
        let (status, _, o) = fhir(&city, Method::POST, "/fhir", Some(&city_token), &[], json_body(&mixed)).await;
        assert_eq!((status, code(&o).as_str()), (422, "several_patients"), "{o}");
        // A revocation posted against another consent's id.
        let other = "00".repeat(32);
        let (status, _, o) = fhir(&city, Method::POST, &format!("/fhir/Consent/{other}/$revoke"), Some(&alice_token), &[], json_body(&parameters)).await;
        assert_eq!((status, code(&o).as_str()), (422, "id_mismatch"), "{o}");
        assert_eq!(before, submitted(&city.metrics().await.expect("metrics")), "a hostile request submitted");

        for i in 0..net.nodes.len() {
            let status = net.nodes[i].terminate(STOP);
            assert!(status.success(), "node {} exited with {status}\n{}", i + 1, net.logs());
        }
        eprintln!("fhir_api: {:.1} s", started.elapsed().as_secs_f64());
    });
}
