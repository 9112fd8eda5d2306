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
//! * a code system is granted whole only if no deny provision that applies to the grantee names
//!   one of its codes; otherwise only the keywords explicitly permitted are granted (a class key
//!   would derive the denied code's trapdoor too);
//! * a deny that applies to the grantee (by key, role, action, period) and covers all data
//!   grants nothing; a denied resource type leaves only the permitted resource-type keywords;
//! * the grantee's credentials are verified against genesis before their roles count.
//!
//! Trapdoors reveal nothing of records to whoever lacks their entries; a grant is still a secret
//! and travels to the grantee encrypted (for example sealed to the grantee's agreement key).

use thiserror::Error;

use super::{evaluate_actor, Action, Consent, DataClass, Provision, ProvisionType};
use crate::credential::{Credential, CredentialError, Role};
use crate::genesis::Genesis;
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
    /// No provision of the consent permits this grantee to search at this time, or a deny
    /// provision that applies to the grantee covers all data.
    #[error("the consent does not permit this party to search")]
    NotPermitted,
    /// A credential the grantee presented does not hold (checked as validators check it).
    #[error("a credential does not hold: {0}")]
    BadCredential(#[from] CredentialError),
    /// A data class does not make a valid keyword.
    #[error("a data class of the consent is not a valid keyword: {0}")]
    Keyword(#[from] KeywordError),
    /// The grant is too large.
    #[error("the search grant is too large: {0}")]
    Grant(#[from] GrantError),
    /// The consent holds blinded codes (its on-chain form): grants are made from the patient's
    /// clear copy, which names the codes a trapdoor is for.
    #[error(
        "search grants are made from the patient's clear copy of the consent, not its blinded on-chain form"
    )]
    Blinded,
}

fn keyword_of(class: &DataClass) -> Result<Keyword, SearchDelegationError> {
    match class {
        DataClass::ResourceType(t) => Ok(Keyword::resource_type(t)?),
        DataClass::Code { system, code } => Ok(Keyword::code(system, code)?),
        DataClass::Blinded(_) => Err(SearchDelegationError::Blinded),
    }
}

fn has_blinded(ps: &[Provision]) -> bool {
    ps.iter().any(|p| {
        p.classes.iter().any(|c| matches!(c, DataClass::Blinded(_))) || has_blinded(&p.provisions)
    })
}

/// What the deny provisions that apply to a grantee take away from a search grant.
#[derive(Debug, Default)]
struct Denied {
    /// A deny covers all data: nothing may be granted.
    everything: bool,
    /// Resource types denied.
    types: Vec<String>,
    /// Codes denied.
    codes: Vec<(String, String)>,
}

/// Collects the deny provisions that apply to `grantee` (holding `roles`) for searching at
/// `now_ms`, anywhere in the provision tree, exactly as [`super::evaluate`] would let them
/// match a search by this grantee — and conservatively where a search grant cannot be narrowed:
/// a deny applies whatever its purposes (a trapdoor serves any purpose) and whatever its data
/// period (a trapdoor finds records of any date); a deny without data classes inherits its
/// nearest ancestor's, and covers all data when none has any.
fn collect_denied(
    ps: &[Provision],
    grantee: &VerifyKey,
    roles: &[Role],
    now_ms: u64,
    inherited: &[DataClass],
    out: &mut Denied,
) {
    for p in ps {
        let applies = evaluate_actor(&p.actors, grantee, roles)
            && (p.actions.is_empty() || p.actions.contains(&Action::Search))
            && p.period.is_none_or(|per| per.contains(now_ms));
        if !applies {
            // Nested provisions apply only where this one matches.
            continue;
        }
        let classes = if p.classes.is_empty() {
            inherited
        } else {
            &p.classes[..]
        };
        if p.kind == ProvisionType::Deny {
            if classes.is_empty() {
                out.everything = true;
            }
            for c in classes {
                match c {
                    DataClass::ResourceType(t) => out.types.push(t.clone()),
                    DataClass::Code { system, code } => {
                        out.codes.push((system.clone(), code.clone()));
                    }
                    // Refused before (`has_blinded`); a deny nobody can read covers all.
                    DataClass::Blinded(_) => out.everything = true,
                }
            }
        }
        collect_denied(&p.provisions, grantee, roles, now_ms, classes, out);
    }
}

/// The search grants `consent` gives `grantee` at `now_ms`: one per writer in `writers`, made
/// by the patient's wallet `patient`. The grantee's `credentials` are verified against
/// `genesis` (member institution, signature, holder, expiry) before their roles count, as
/// validators verify them for a key release: no trapdoor leaves the wallet on an unverified
/// claim.
///
/// Deny provisions apply as [`super::evaluate`] applies them, per grantee and data class:
/// a deny that applies to the grantee and covers all data grants nothing; a denied code is
/// never granted, nor its code system whole; a denied resource type leaves only explicitly
/// permitted resource-type keywords (any code or date trapdoor could find a record of the
/// denied type).
///
/// # Errors
/// A [`SearchDelegationError`].
pub fn search_grants(
    consent: &Consent,
    patient: &Identity,
    grantee: &VerifyKey,
    credentials: &[Credential],
    genesis: &Genesis,
    writers: &[PartyId],
    now_ms: u64,
) -> Result<Vec<(PartyId, SearchGrant)>, SearchDelegationError> {
    if patient.public() != consent.patient {
        return Err(SearchDelegationError::NotThePatient);
    }
    if has_blinded(&consent.provisions) {
        return Err(SearchDelegationError::Blinded);
    }
    let roles = credentials
        .iter()
        .map(|c| c.verify(genesis, grantee, now_ms).map(|()| c.role))
        .collect::<Result<Vec<Role>, _>>()?;
    if !consent.period.contains(now_ms) {
        return Err(SearchDelegationError::NotPermitted);
    }
    let mut denied = Denied::default();
    collect_denied(
        &consent.provisions,
        grantee,
        &roles,
        now_ms,
        &[],
        &mut denied,
    );
    if denied.everything {
        return Err(SearchDelegationError::NotPermitted);
    }
    let denied_keywords = denied
        .types
        .iter()
        .map(|t| Keyword::resource_type(t))
        .chain(denied.codes.iter().map(|(s, c)| Keyword::code(s, c)))
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    let types_denied = !denied.types.is_empty();
    let mut keywords: Vec<Keyword> = Vec::new();
    let mut classes: Vec<KeywordClass> = Vec::new();
    let mut permitted = false;
    for p in &consent.provisions {
        let applies = p.kind == ProvisionType::Permit
            && (p.actions.is_empty() || p.actions.contains(&Action::Search))
            && p.period.is_none_or(|per| per.contains(now_ms))
            && evaluate_actor(&p.actors, grantee, &roles);
        if !applies {
            continue;
        }
        permitted = true;
        if p.classes.is_empty() {
            if types_denied {
                // Only explicitly permitted resource types survive a denied type.
                continue;
            }
            classes.push(KeywordClass::RESOURCE_TYPE);
            classes.push(KeywordClass::DATE);
            for system in DEFAULT_CODE_SYSTEMS {
                if denied.codes.iter().all(|(s, _)| s != system) {
                    classes.push(KeywordClass::code_system(system)?);
                }
            }
        } else {
            for c in &p.classes {
                if types_denied && !matches!(c, DataClass::ResourceType(_)) {
                    continue;
                }
                keywords.push(keyword_of(c)?);
            }
        }
    }
    if !permitted {
        return Err(SearchDelegationError::NotPermitted);
    }
    // A denied keyword is never granted, even if a permit names it.
    keywords.retain(|k| !denied_keywords.contains(k));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Actor, Period, Purpose};
    use crate::genesis::tests::network;
    use rand_chacha::rand_core::SeedableRng;

    struct W {
        genesis: Genesis,
        institution: Identity,
        patient: Identity,
        doctor: Identity,
        hospital: PartyId,
    }

    fn w() -> W {
        let (genesis, mut ids) = network(2, 1, 31);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        W {
            genesis,
            institution: ids.remove(0),
            patient: Identity::generate(&mut rng),
            doctor: Identity::generate(&mut rng),
            hospital: Identity::generate(&mut rng).id(),
        }
    }

    fn consent(w: &W, provisions: Vec<Provision>) -> Consent {
        Consent {
            patient: w.patient.public(),
            issued_ms: 0,
            summary: "search".into(),
            period: Period::default(),
            emergency: None,
            provisions,
        }
    }

    fn grant(
        w: &W,
        c: &Consent,
        creds: &[Credential],
    ) -> Result<SearchGrant, SearchDelegationError> {
        search_grants(
            c,
            &w.patient,
            &w.doctor.verify_key(),
            creds,
            &w.genesis,
            &[w.hospital],
            1,
        )
        .map(|mut g| g.remove(0).1)
    }

    fn kw(s: &str) -> Keyword {
        s.parse().unwrap()
    }

    #[test]
    fn grants_only_what_the_consent_permits() {
        let w = w();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let stranger = Identity::generate(&mut rng).verify_key();
        let hiv = DataClass::Code {
            system: "http://loinc.org".into(),
            code: "75622-1".into(),
        };
        let c = consent(
            &w,
            vec![Provision::permit()
                .actor(Actor::Party(w.doctor.verify_key()))
                .action(Action::Search)
                .purpose(Purpose::Treat)
                .nest(Provision::deny().class(hiv))],
        );
        let g = grant(&w, &c, &[]).unwrap();
        let writer = IndexKey::for_patient(&w.patient).for_writer(&w.hospital);
        let a1c = kw("code:http://loinc.org|4548-4");
        let hiv_kw = kw("code:http://loinc.org|75622-1");
        let snomed = kw("code:http://snomed.info/sct|44054006");
        // LOINC is not granted whole because a LOINC code is denied; SNOMED is.
        assert!(g.trapdoor(&a1c).is_none());
        assert!(g.trapdoor(&hiv_kw).is_none());
        assert_eq!(g.trapdoor(&snomed), Some(writer.trapdoor(&snomed)));
        assert!(g.trapdoor(&kw("type:Observation")).is_some());
        // Someone the consent does not name gets nothing.
        assert_eq!(
            search_grants(&c, &w.patient, &stranger, &[], &w.genesis, &[w.hospital], 1)
                .unwrap_err(),
            SearchDelegationError::NotPermitted
        );
        // Only the patient's wallet can make grants.
        let other = Identity::generate(&mut rng);
        assert_eq!(
            search_grants(
                &c,
                &other,
                &w.doctor.verify_key(),
                &[],
                &w.genesis,
                &[w.hospital],
                1
            )
            .unwrap_err(),
            SearchDelegationError::NotThePatient
        );
        // A provision naming classes grants exactly those keywords.
        let narrow = consent(
            &w,
            vec![Provision::permit()
                .actor(Actor::Party(w.doctor.verify_key()))
                .class(DataClass::Code {
                    system: "http://loinc.org".into(),
                    code: "4548-4".into(),
                })],
        );
        let g = grant(&w, &narrow, &[]).unwrap();
        assert_eq!(g.trapdoor(&a1c), Some(writer.trapdoor(&a1c)));
        assert!(g.trapdoor(&snomed).is_none());
    }

    #[test]
    fn attack_denies_by_actor_and_by_type_are_honoured() {
        // Issue #12.6: only top-level permits were read and denies only as code-system
        // exclusions, so "deny Dr X" and "deny Observation" did not stop Dr X receiving
        // Observation trapdoors.
        let w = w();
        let permit_all = Provision::permit().action(Action::Search);
        // "Everyone may search, except Dr X."
        let c = consent(
            &w,
            vec![
                permit_all.clone(),
                Provision::deny().actor(Actor::Party(w.doctor.verify_key())),
            ],
        );
        assert_eq!(
            grant(&w, &c, &[]).unwrap_err(),
            SearchDelegationError::NotPermitted
        );
        // "Everyone may search, but no Observation": no type class, no code or date class
        // (each could find an Observation), no Observation keyword.
        let c = consent(
            &w,
            vec![
                permit_all.clone(),
                Provision::deny().class(DataClass::ResourceType("Observation".into())),
            ],
        );
        let g = grant(&w, &c, &[]).unwrap();
        for k in [
            "type:Observation",
            "type:Condition",
            "code:http://loinc.org|4548-4",
            "code:http://snomed.info/sct|44054006",
            "date:2024",
        ] {
            assert!(g.trapdoor(&kw(k)).is_none(), "{k} granted");
        }
        // With types named explicitly, the permitted ones survive, the denied one does not.
        let c = consent(
            &w,
            vec![
                permit_all
                    .clone()
                    .class(DataClass::ResourceType("Condition".into()))
                    .class(DataClass::ResourceType("Observation".into())),
                Provision::deny().class(DataClass::ResourceType("Observation".into())),
            ],
        );
        let g = grant(&w, &c, &[]).unwrap();
        assert!(g.trapdoor(&kw("type:Condition")).is_some());
        assert!(g.trapdoor(&kw("type:Observation")).is_none());
        // A nested deny for the grantee's role, and a deny of another actor, which does not
        // apply to Dr X.
        let role = Role::Clinician {
            institution: w.institution.verify_key(),
        };
        let cred = Credential::issue(
            &w.institution,
            &w.genesis.chain_id(),
            w.doctor.verify_key(),
            role,
            10,
        );
        let c = consent(
            &w,
            vec![permit_all
                .clone()
                .nest(Provision::deny().actor(Actor::AnyClinician))],
        );
        assert_eq!(
            grant(&w, &c, std::slice::from_ref(&cred)).unwrap_err(),
            SearchDelegationError::NotPermitted
        );
        let c = consent(
            &w,
            vec![
                permit_all.clone(),
                Provision::deny()
                    .actor(Actor::AnyResearcher)
                    .class(DataClass::ResourceType("Observation".into())),
            ],
        );
        assert!(grant(&w, &c, std::slice::from_ref(&cred))
            .unwrap()
            .trapdoor(&kw("type:Observation"))
            .is_some());
    }

    #[test]
    fn attack_credentials_are_verified_before_roles_count() {
        // Issue #12.3 for search: a forged "clinician" credential must not unlock trapdoors.
        let w = w();
        let role = Role::Clinician {
            institution: w.institution.verify_key(),
        };
        let c = consent(
            &w,
            vec![Provision::permit()
                .actor(Actor::Role(role))
                .action(Action::Search)],
        );
        // Signed by the doctor, claiming the institution.
        let forged = Credential::issue(
            &w.doctor,
            &w.genesis.chain_id(),
            w.doctor.verify_key(),
            role,
            10,
        );
        assert_eq!(
            grant(&w, &c, &[forged]).unwrap_err(),
            SearchDelegationError::BadCredential(CredentialError::BadSignature)
        );
        // Another party's real credential.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let other = Identity::generate(&mut rng);
        let theirs = Credential::issue(
            &w.institution,
            &w.genesis.chain_id(),
            other.verify_key(),
            role,
            10,
        );
        assert_eq!(
            grant(&w, &c, &[theirs]).unwrap_err(),
            SearchDelegationError::BadCredential(CredentialError::WrongHolder)
        );
        // Expired.
        let old = Credential::issue(
            &w.institution,
            &w.genesis.chain_id(),
            w.doctor.verify_key(),
            role,
            0,
        );
        assert_eq!(
            grant(&w, &c, &[old]).unwrap_err(),
            SearchDelegationError::BadCredential(CredentialError::Expired)
        );
        // The real one works.
        let real = Credential::issue(
            &w.institution,
            &w.genesis.chain_id(),
            w.doctor.verify_key(),
            role,
            10,
        );
        assert!(grant(&w, &c, &[real]).is_ok());
    }
}
