//! Search delegation: the secure-index trapdoors a consent lets a grantee have.
//!
//! A provision that permits [`Action::Search`] to an actor lets the patient's wallet hand that
//! actor a [`SearchGrant`] per writer of the patient's index entries (each hospital writes with
//! its own writer key, `IndexKey::for_writer`), covering only the data classes the consent
//! permits:
//!
//! * a provision naming resource types or codes grants exactly those keywords;
//! * a provision without data classes grants whole keyword classes: resource types, dates, and
//!   the common code systems ([`DEFAULT_CODE_SYSTEMS`]);
//! * a code system is granted whole only if no deny provision of the consent names one of its
//!   codes; otherwise only the keywords explicitly permitted are granted (a class key would
//!   derive the denied code's trapdoor too).
//!
//! Trapdoors reveal nothing of records to whoever lacks their entries; a grant is still a secret
//! and travels to the grantee encrypted (for example sealed to the grantee's agreement key).

use thiserror::Error;

use super::{evaluate_actor, Action, Consent, DataClass, Provision, ProvisionType};
use crate::credential::Role;
use crate::index::{GrantError, IndexKey, Keyword, KeywordClass, KeywordError, SearchGrant};
use crate::keys::{Identity, PartyId, VerifyKey};

/// Code systems granted whole by a provision without data classes.
pub const DEFAULT_CODE_SYSTEMS: &[&str] = &[
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://hl7.org/fhir/sid/cvx",
];

/// A search grant could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SearchDelegationError {
    /// The wallet's identity is not the consent's patient.
    #[error("only the consent's patient can delegate search over their records")]
    NotThePatient,
    /// No provision of the consent permits this grantee to search at this time.
    #[error("the consent does not permit this party to search")]
    NotPermitted,
    /// A data class does not make a valid keyword.
    #[error("a data class of the consent is not a valid keyword: {0}")]
    Keyword(#[from] KeywordError),
    /// The grant is too large.
    #[error("the search grant is too large: {0}")]
    Grant(#[from] GrantError),
}

fn keyword_of(class: &DataClass) -> Result<Keyword, KeywordError> {
    match class {
        DataClass::ResourceType(t) => Keyword::resource_type(t),
        DataClass::Code { system, code } => Keyword::code(system, code),
    }
}

fn collect_denied_systems(ps: &[Provision], out: &mut Vec<String>) {
    for p in ps {
        if p.kind == ProvisionType::Deny {
            for c in &p.classes {
                if let DataClass::Code { system, .. } = c {
                    out.push(system.clone());
                }
            }
        }
        collect_denied_systems(&p.provisions, out);
    }
}

/// The search grants `consent` gives `grantee` (holding `roles`) at `now_ms`: one per writer in
/// `writers`, made by the patient's wallet `patient`.
///
/// # Errors
/// A [`SearchDelegationError`].
pub fn search_grants(
    consent: &Consent,
    patient: &Identity,
    grantee: &VerifyKey,
    roles: &[Role],
    writers: &[PartyId],
    now_ms: u64,
) -> Result<Vec<(PartyId, SearchGrant)>, SearchDelegationError> {
    if patient.public() != consent.patient {
        return Err(SearchDelegationError::NotThePatient);
    }
    if !consent.period.contains(now_ms) {
        return Err(SearchDelegationError::NotPermitted);
    }
    let mut denied_systems = Vec::new();
    collect_denied_systems(&consent.provisions, &mut denied_systems);
    let mut keywords: Vec<Keyword> = Vec::new();
    let mut classes: Vec<KeywordClass> = Vec::new();
    let mut permitted = false;
    for p in &consent.provisions {
        let applies = p.kind == ProvisionType::Permit
            && (p.actions.is_empty() || p.actions.contains(&Action::Search))
            && p.period.is_none_or(|per| per.contains(now_ms))
            && evaluate_actor(&p.actors, grantee, roles);
        if !applies {
            continue;
        }
        permitted = true;
        if p.classes.is_empty() {
            classes.push(KeywordClass::RESOURCE_TYPE);
            classes.push(KeywordClass::DATE);
            for system in DEFAULT_CODE_SYSTEMS {
                if denied_systems.iter().all(|d| d != system) {
                    classes.push(KeywordClass::code_system(system)?);
                }
            }
        } else {
            for c in &p.classes {
                keywords.push(keyword_of(c)?);
            }
        }
    }
    if !permitted {
        return Err(SearchDelegationError::NotPermitted);
    }
    // A denied code's own keyword is never granted, even if a permit names it.
    let mut denied_codes = Vec::new();
    collect_denied_codes(&consent.provisions, &mut denied_codes);
    keywords.retain(|k| !denied_codes.contains(k));
    let base = IndexKey::for_patient(patient);
    writers
        .iter()
        .map(|w| {
            Ok((
                *w,
                base.for_writer(w).grant(classes.iter(), keywords.iter())?,
            ))
        })
        .collect()
}

fn collect_denied_codes(ps: &[Provision], out: &mut Vec<Keyword>) {
    for p in ps {
        if p.kind == ProvisionType::Deny {
            for c in &p.classes {
                if let Ok(k) = keyword_of(c) {
                    out.push(k);
                }
            }
        }
        collect_denied_codes(&p.provisions, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Actor, Period, Purpose};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn grants_only_what_the_consent_permits() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let patient = Identity::generate(&mut rng);
        let doctor = Identity::generate(&mut rng).verify_key();
        let stranger = Identity::generate(&mut rng).verify_key();
        let hospital = Identity::generate(&mut rng).id();
        let hiv = DataClass::Code {
            system: "http://loinc.org".into(),
            code: "75622-1".into(),
        };
        let consent = Consent {
            patient: patient.public(),
            issued_ms: 0,
            summary: "search".into(),
            period: Period::default(),
            emergency: None,
            provisions: vec![Provision::permit()
                .actor(Actor::Party(doctor))
                .action(Action::Search)
                .purpose(Purpose::Treat)
                .nest(Provision::deny().class(hiv))],
        };
        let grants = search_grants(&consent, &patient, &doctor, &[], &[hospital], 1).unwrap();
        assert_eq!(grants.len(), 1);
        let (_, grant) = &grants[0];
        let writer = IndexKey::for_patient(&patient).for_writer(&hospital);
        let a1c = Keyword::code("http://loinc.org", "4548-4").unwrap();
        let hiv_kw = Keyword::code("http://loinc.org", "75622-1").unwrap();
        let snomed = Keyword::code("http://snomed.info/sct", "44054006").unwrap();
        // LOINC is not granted whole because a LOINC code is denied; SNOMED is.
        assert!(grant.trapdoor(&a1c).is_none());
        assert!(grant.trapdoor(&hiv_kw).is_none());
        assert_eq!(grant.trapdoor(&snomed), Some(writer.trapdoor(&snomed)));
        assert!(grant
            .trapdoor(&Keyword::resource_type("Observation").unwrap())
            .is_some());
        // Someone the consent does not name gets nothing.
        assert_eq!(
            search_grants(&consent, &patient, &stranger, &[], &[hospital], 1).unwrap_err(),
            SearchDelegationError::NotPermitted
        );
        // Only the patient's wallet can make grants.
        let other = Identity::generate(&mut rng);
        assert_eq!(
            search_grants(&consent, &other, &doctor, &[], &[hospital], 1).unwrap_err(),
            SearchDelegationError::NotThePatient
        );
        // A provision naming classes grants exactly those keywords.
        let narrow = Consent {
            provisions: vec![Provision::permit().actor(Actor::Party(doctor)).class(
                DataClass::Code {
                    system: "http://loinc.org".into(),
                    code: "4548-4".into(),
                },
            )],
            ..consent.clone()
        };
        let grants = search_grants(&narrow, &patient, &doctor, &[], &[hospital], 1).unwrap();
        assert_eq!(grants[0].1.trapdoor(&a1c), Some(writer.trapdoor(&a1c)));
        assert!(grants[0].1.trapdoor(&snomed).is_none());
    }
}
