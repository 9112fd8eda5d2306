//! SHIM (branch `fhir` only; replaced by the `auth` branch at merge): the interface agreed
//! with the authentication layer.
#![allow(missing_docs)]
use medchain::VerifyKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    pub patient: Option<VerifyKey>,
    pub clinicians: Vec<String>,
    pub operator: bool,
}

impl Principal {
    pub fn allows(&self, _resource_type: &str, _permission: Permission) -> bool {
        true
    }
    pub fn may_act_for(&self, clinician: &str) -> bool {
        self.clinicians.iter().any(|c| c == clinician)
    }
}
