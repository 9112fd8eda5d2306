//! The FHIR API over real sockets: four `medchaind` processes on loopback, SMART tokens, the
//! cross-institution flow of `docs/fhir-api.md`.
//!
//! ```text
//! cargo bench --locked --workspace --all-features --bench fhir
//! MEDCHAIN_BENCH_PATIENTS=50 cargo bench --locked --workspace --all-features --bench fhir
//! ```
//!
//! * **Bundle ingest**: St. Mary's EHR posts one transaction Bundle of 4 resources per patient,
//!   8 at a time; a POST answers once its records are committed. Resources per second, and
//!   each Bundle's latency.
//! * **Commit**: each patient's consent for Dr. Okafor, created as a FHIR Consent at City
//!   General (the POST answers once it is committed): the latency of one commit through the
//!   API, the floor every write and every read stands on.
//! * **Cross-institution reads**: Dr. Okafor's EHR reads every patient's HbA1c at City General,
//!   8 at a time: each read is a key request to St. Mary's, the consent judged there, the
//!   release and its access log committed, the record opened. Reads per second and latency,
//!   and the read's p50 as a multiple of the commit's p50 (a read is one round trip to the
//!   holder plus one commit: the ratio says what the flow adds to consensus).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use hyper::Method;
use medchain::Identity;
use support::fhir::{
    alice_bundle, connect_ehrs, enrolment_parameters, fhir, hex_key, json_body, patient_token,
    register, rng, treatment_consent,
};
use support::Net;

const ST_MARYS: usize = 0;
const CITY_GENERAL: usize = 1;
const CONCURRENCY: usize = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `jobs` with at most [`CONCURRENCY`] at once; each job's latency, sorted, and the total.
async fn run<F, Fut>(jobs: Vec<F>) -> (Vec<Duration>, Duration)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let mut jobs = jobs.into_iter();
    let mut latencies = Vec::new();
    loop {
        let batch: Vec<_> = jobs.by_ref().take(CONCURRENCY).collect();
        if batch.is_empty() {
            break;
        }
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|job| {
                tokio::spawn(async move {
                    let at = Instant::now();
                    job().await;
                    at.elapsed()
                })
            })
            .collect();
        for t in tasks {
            latencies.push(t.await.expect("job"));
        }
    }
    latencies.sort_unstable();
    (latencies, start.elapsed())
}

fn main() {
    let patients: usize = std::env::var("MEDCHAIN_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut net = Net::write(4);
    let st_marys_ehr = Identity::generate(&mut rng());
    let city_ehr = Identity::generate(&mut rng());
    register(&mut net, ST_MARYS, "stmarys-ehr", &st_marys_ehr, &["hale"]);
    let okafor = register(&mut net, CITY_GENERAL, "city-ehr", &city_ehr, &["okafor"])
        .pop()
        .expect("okafor");
    net.start_all();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
            ],
        )
        .await;
        let (stm, city) = (connected[0].1.clone(), connected[1].1.clone());

        // Patients, enrolled at St. Mary's (not timed).
        let cohort: Vec<Identity> = (0..patients)
            .map(|_| Identity::generate(&mut rng()))
            .collect();
        for patient in &cohort {
            let token = patient_token(&stm, patient).await;
            let (status, _, _) = fhir(
                &stm,
                Method::POST,
                "/fhir/Patient/$enrol",
                Some(&token),
                &[],
                json_body(&enrolment_parameters(patient, &net, ST_MARYS)),
            )
            .await;
            assert_eq!(status, 200);
        }

        // Bundle ingest.
        let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let jobs: Vec<_> = cohort
            .iter()
            .map(|p| {
                let (api, bundle, ids) = (stm.clone(), alice_bundle(&hex_key(p)), ids.clone());
                move || async move {
                    let (status, _, response) =
                        fhir(&api, Method::POST, "/fhir", None, &[], json_body(&bundle)).await;
                    assert_eq!(status, 200, "{response}");
                    let location = response["entry"][0]["response"]["location"]
                        .as_str()
                        .expect("location")
                        .to_owned();
                    ids.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(location.split('/').nth(1).expect("id").to_owned());
                }
            })
            .collect();
        let (ingest, ingest_total) = run(jobs).await;
        let resources = 4 * patients;
        println!(
            "bundle ingest: {resources} resources in {patients} transaction Bundles, {CONCURRENCY} at a time: \
             {:.0} resources/s ({}); per Bundle p50 {}, p99 {}",
            resources as f64 / ingest_total.as_secs_f64(),
            ms(ingest_total),
            ms(percentile(&ingest, 0.5)),
            ms(percentile(&ingest, 0.99))
        );

        // One commit through the API: each patient's consent for Dr. Okafor.
        let mut jobs = Vec::new();
        for patient in &cohort {
            let token = patient_token(&city, patient).await;
            let (resource, _) = treatment_consent(patient, &okafor, &chain);
            let api = city.clone();
            jobs.push(move || async move {
                let (status, _, created) = fhir(
                    &api,
                    Method::POST,
                    "/fhir/Consent",
                    Some(&token),
                    &[],
                    json_body(&resource),
                )
                .await;
                assert_eq!(status, 201, "{created}");
            });
        }
        let (commits, _) = run(jobs).await;
        let commit_p50 = percentile(&commits, 0.5);
        println!(
            "commit through the API (a FHIR Consent, {CONCURRENCY} at a time): p50 {}, p99 {}",
            ms(commit_p50),
            ms(percentile(&commits, 0.99))
        );

        // Cross-institution reads.
        let ids = ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let jobs: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let api = city.clone();
                move || async move {
                    let (status, _, read) = fhir(
                        &api,
                        Method::GET,
                        &format!("/fhir/Observation/{id}"),
                        None,
                        &[
                            ("x-medchain-clinician", "okafor"),
                            ("x-medchain-purpose-of-use", "TREAT"),
                        ],
                        None,
                    )
                    .await;
                    assert_eq!(status, 200, "{read}");
                }
            })
            .collect();
        let (reads, reads_total) = run(jobs).await;
        let read_p50 = percentile(&reads, 0.5);
        println!(
            "cross-institution reads (City General for Dr. Okafor, St. Mary's releasing, {CONCURRENCY} at a time): \
             {:.1} reads/s; p50 {}, p99 {}; read p50 / commit p50 = {:.2}",
            reads.len() as f64 / reads_total.as_secs_f64(),
            ms(read_p50),
            ms(percentile(&reads, 0.99)),
            read_p50.as_secs_f64() / commit_p50.as_secs_f64()
        );
        for node in &mut net.nodes {
            let _ = node.terminate(Duration::from_secs(20));
        }
    });
}
