//! SMART App Launch 2.x scopes: `{patient|user|system}/{ResourceType|*}.{c?r?u?d?s?}` (the
//! letters in that order, at least one), and the SMART v1 forms `.read`, `.write` and `.*`,
//! translated to v2 (`rs`, `cud`, `cruds`). Nothing else is a scope here: no `openid`, no
//! `launch`, no query parameters after a v2 scope. A token request may still name SMART's
//! non-resource scopes ([`NON_RESOURCE_SCOPES`], which SMART clients add on their own): they
//! are ignored and never granted ([`Scopes::parse_request`]).

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// The longest resource type name accepted in a scope (FHIR R4's longest is 35 characters).
const MAX_TYPE_LEN: usize = 64;

/// SMART's scopes that ask for no resource access (a launch context, the user's identity, a
/// refresh token). A token request may name them (SMART client libraries add `launch/patient`
/// or `openid` on their own); the node grants none of them (Backend Services has no launch, no
/// user and no refresh token) and grants the request's resource scopes (RFC 6749 §3.3: the
/// server may grant less than asked, and says what it granted).
pub const NON_RESOURCE_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

/// Most scopes in one request or one client's registration.
pub const MAX_SCOPES: usize = 64;

/// What a scope lets its holder do to a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Permission {
    /// `c`: create.
    Create,
    /// `r`: read one resource by id.
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Permission {
    /// The SMART v2 letter.
    pub fn letter(self) -> char {
        match self {
            Self::Create => 'c',
            Self::Read => 'r',
            Self::Update => 'u',
            Self::Delete => 'd',
            Self::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Read => 2,
            Self::Update => 4,
            Self::Delete => 8,
            Self::Search => 16,
        }
    }
}

const ALL: [Permission; 5] = [
    Permission::Create,
    Permission::Read,
    Permission::Update,
    Permission::Delete,
    Permission::Search,
];

/// Whose data a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Context {
    /// `patient/`: only the compartment of the patient the token was issued to.
    Patient,
    /// `user/`: what the acting user may reach.
    User,
    /// `system/`: any patient's data, for a registered backend client.
    System,
}

impl Context {
    /// `patient`, `user` or `system`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

/// A scope string is not a SMART v2 (or v1) resource scope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not `context/Type.permissions`: the reason says which part is wrong. The scope itself
    /// is never quoted (it is the client's input).
    #[error("not a SMART resource scope: {0}")]
    Syntax(&'static str),
    /// More than [`MAX_SCOPES`] scopes.
    #[error("more than {MAX_SCOPES} scopes")]
    TooMany,
}

/// One resource scope: a context, a resource type (`None`: `*`, every type) and permissions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    context: Context,
    resource: Option<String>,
    permissions: u8,
}

impl Scope {
    /// Parses one scope (v2, or v1 translated to v2).
    ///
    /// # Errors
    /// [`ScopeError::Syntax`].
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let (context, rest) = text.split_once('/').ok_or(ScopeError::Syntax(
            "no context (patient/, user/ or system/)",
        ))?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => {
                return Err(ScopeError::Syntax(
                    "the context is not patient, user or system",
                ))
            }
        };
        let (resource, permissions) = rest
            .split_once('.')
            .ok_or(ScopeError::Syntax("no permissions after the resource type"))?;
        let resource = match resource {
            "*" => None,
            name if is_type_name(name) => Some(name.to_owned()),
            _ => {
                return Err(ScopeError::Syntax(
                    "the resource type is not a FHIR type name or *",
                ))
            }
        };
        let permissions = match permissions {
            "read" => bits(&[Permission::Read, Permission::Search]),
            "write" => bits(&[Permission::Create, Permission::Update, Permission::Delete]),
            "*" => bits(&ALL),
            letters => v2_permissions(letters)?,
        };
        Ok(Self {
            context,
            resource,
            permissions,
        })
    }

    /// A scope from its parts; `None` if `permissions` is empty or `resource` is not a type name.
    pub fn new(
        context: Context,
        resource: Option<&str>,
        permissions: &[Permission],
    ) -> Option<Self> {
        let permissions = bits(permissions);
        if permissions == 0 || resource.is_some_and(|r| !is_type_name(r)) {
            return None;
        }
        Some(Self {
            context,
            resource: resource.map(str::to_owned),
            permissions,
        })
    }

    /// Its context.
    pub fn context(&self) -> Context {
        self.context
    }

    /// Its resource type, `None` for `*`.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Whether it grants `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
            && self.resource.as_deref().is_none_or(|r| r == resource_type)
    }

    /// What `self` (requested) and `granted` (registered) have in common: same context, the
    /// narrower resource type (a `*` on one side takes the other's type), the permissions of
    /// both; `None` when that is nothing.
    fn intersect(&self, granted: &Self) -> Option<Self> {
        if self.context != granted.context {
            return None;
        }
        let resource = match (&self.resource, &granted.resource) {
            (None, other) | (other, None) => other.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let permissions = self.permissions & granted.permissions;
        (permissions != 0).then_some(Self {
            context: self.context,
            resource,
            permissions,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.",
            self.context.name(),
            self.resource.as_deref().unwrap_or("*")
        )?;
        for p in ALL {
            if self.permissions & p.bit() != 0 {
                write!(f, "{}", p.letter())?;
            }
        }
        Ok(())
    }
}

/// A set of scopes, normalised: one entry per context and resource type, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses space-separated scopes (what `scope=` carries).
    ///
    /// # Errors
    /// [`ScopeError`] for the first scope that does not parse, or too many.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        Self::parse_all(text.split(' ').filter(|s| !s.is_empty()))
    }

    /// Parses the `scope` of a token request: the resource scopes, ignoring SMART's
    /// non-resource scopes ([`NON_RESOURCE_SCOPES`], named exactly); anything else that is not a
    /// resource scope is an error, as in [`Scopes::parse`].
    ///
    /// # Errors
    /// [`ScopeError`] for the first scope that does not parse, or too many.
    pub fn parse_request(text: &str) -> Result<Self, ScopeError> {
        Self::parse_all(
            text.split(' ')
                .filter(|s| !s.is_empty() && !NON_RESOURCE_SCOPES.contains(s)),
        )
    }

    /// Parses each of `scopes`.
    ///
    /// # Errors
    /// [`ScopeError`] for the first that does not parse, or too many.
    pub fn parse_all<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut out = Vec::new();
        for s in scopes {
            if out.len() == MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            out.push(Scope::parse(s)?);
        }
        Ok(Self::from_scopes(out))
    }

    /// The set of `scopes`, merged.
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut merged: BTreeMap<(Context, Option<String>), u8> = BTreeMap::new();
        for s in scopes {
            *merged.entry((s.context, s.resource)).or_default() |= s.permissions;
        }
        Self(
            merged
                .into_iter()
                .map(|((context, resource), permissions)| Scope {
                    context,
                    resource,
                    permissions,
                })
                .collect(),
        )
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one of them grants `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.0.iter().any(|s| s.allows(resource_type, permission))
    }

    /// What may be granted of `self` (requested) under `registered`: every requested scope
    /// narrowed to what some registered scope covers (a registered `*` covers each type; a
    /// requested `*` becomes the registered types), permissions intersected.
    pub fn granted_under(&self, registered: &Self) -> Self {
        Self::from_scopes(
            self.0
                .iter()
                .flat_map(|r| registered.0.iter().filter_map(|g| r.intersect(g))),
        )
    }

    /// Whether every scope has the context `context`.
    pub fn all_in(&self, context: Context) -> bool {
        self.0.iter().all(|s| s.context == context)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// A FHIR resource type's name: an upper-case ASCII letter, then letters and digits.
fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_TYPE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

fn bits(permissions: &[Permission]) -> u8 {
    permissions.iter().fold(0, |acc, p| acc | p.bit())
}

/// `c?r?u?d?s?`, at least one letter, in that order.
fn v2_permissions(letters: &str) -> Result<u8, ScopeError> {
    let mut out = 0;
    let mut next = ALL.iter();
    for c in letters.chars() {
        let p = next
            .by_ref()
            .find(|p| p.letter() == c)
            .ok_or(ScopeError::Syntax(
                "the permissions are not c, r, u, d, s in that order (or read, write, *)",
            ))?;
        out |= p.bit();
    }
    if out == 0 {
        return Err(ScopeError::Syntax("no permissions"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scopes(text: &str) -> Scopes {
        Scopes::parse(text).unwrap()
    }

    #[test]
    fn v2_and_v1_scopes_parse_and_print_as_v2() {
        for (text, printed) in [
            ("system/Observation.cruds", "system/Observation.cruds"),
            ("patient/*.rs", "patient/*.rs"),
            ("user/Condition.r", "user/Condition.r"),
            ("system/Consent.cs", "system/Consent.cs"),
            ("patient/Observation.read", "patient/Observation.rs"),
            ("system/*.write", "system/*.cud"),
            ("system/AuditEvent.*", "system/AuditEvent.cruds"),
        ] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), printed, "{text}");
        }
        // Duplicates merge; the order is fixed.
        assert_eq!(
            scopes("system/Observation.r  system/Condition.s system/Observation.s").to_string(),
            "system/Condition.s system/Observation.rs"
        );
    }

    #[test]
    fn malformed_scopes_are_refused_without_quoting_them() {
        for bad in [
            "",
            "openid",
            "launch/patient",
            "Observation.rs",
            "admin/Observation.rs",
            "system/observation.rs",
            "system/Obs-ervation.rs",
            "system/.rs",
            "system/Observation",
            "system/Observation.",
            "system/Observation.rc",
            "system/Observation.rr",
            "system/Observation.x",
            "system/Observation.rs?category=laboratory",
            "system/Observation.READ",
            &format!("system/{}.r", "A".repeat(65)),
        ] {
            let err = Scope::parse(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
        let many = vec!["system/*.r"; MAX_SCOPES + 1].join(" ");
        assert_eq!(Scopes::parse(&many), Err(ScopeError::TooMany));
    }

    #[test]
    fn a_request_may_name_smarts_non_resource_scopes_and_gets_none_of_them() {
        let asked = "launch/patient openid system/Observation.rs fhirUser offline_access";
        assert_eq!(
            Scopes::parse_request(asked).unwrap(),
            scopes("system/Observation.rs")
        );
        assert!(Scopes::parse_request("launch/patient openid")
            .unwrap()
            .is_empty());
        // Only the exact names: a look-alike, a typo or a wrong case is still refused.
        for bad in [
            "launch/Patient",
            "Launch",
            "openid2",
            "launch/patient/x",
            "system/Observation.x",
        ] {
            assert!(
                Scopes::parse_request(&format!("{bad} system/Observation.rs")).is_err(),
                "{bad}"
            );
        }
        // The registration is not a request: there, these names are refused.
        assert!(Scopes::parse("launch/patient system/Observation.rs").is_err());
    }

    #[test]
    fn granted_is_what_was_asked_within_what_is_registered() {
        let registered = scopes("system/Observation.cruds system/Condition.rs system/Consent.crs");
        let cases = [
            // Within the registration: granted as asked.
            ("system/Observation.rs", "system/Observation.rs"),
            // More than registered: only the intersection.
            ("system/Condition.cruds", "system/Condition.rs"),
            // A requested wildcard narrows to the registered types.
            (
                "system/*.r",
                "system/Condition.r system/Consent.r system/Observation.r",
            ),
            // Unregistered type, other context: nothing.
            ("system/Patient.r", ""),
            ("patient/Observation.rs", ""),
            ("user/Observation.rs", ""),
            (
                "system/Patient.r system/Condition.d system/Consent.c",
                "system/Consent.c",
            ),
        ];
        for (asked, granted) in cases {
            assert_eq!(
                scopes(asked).granted_under(&registered).to_string(),
                granted,
                "{asked}"
            );
        }
        // A registered wildcard covers specific types, and a wildcard.
        let wide = scopes("system/*.rs");
        assert_eq!(
            scopes("system/Observation.cruds system/*.s")
                .granted_under(&wide)
                .to_string(),
            "system/*.s system/Observation.rs"
        );
    }

    #[test]
    fn scopes_allow_what_they_name() {
        let s = scopes("system/Observation.rs patient/*.r");
        assert!(s.allows("Observation", Permission::Read));
        assert!(s.allows("Observation", Permission::Search));
        assert!(!s.allows("Observation", Permission::Create));
        assert!(s.allows("Condition", Permission::Read));
        assert!(!s.allows("Condition", Permission::Search));
        assert!(!s.all_in(Context::System));
        assert!(scopes("patient/*.rs").all_in(Context::Patient));
        assert!(Scope::new(Context::System, Some("bad name"), &[Permission::Read]).is_none());
        assert!(Scope::new(Context::System, None, &[]).is_none());
    }

    fn any_scope() -> impl Strategy<Value = Scope> {
        (
            prop_oneof![
                Just(Context::Patient),
                Just(Context::User),
                Just(Context::System)
            ],
            prop_oneof![
                Just(None),
                Just(Some("Observation")),
                Just(Some("Condition")),
                Just(Some("Consent"))
            ],
            1u8..32,
        )
            .prop_map(|(context, resource, permissions)| Scope {
                context,
                resource: resource.map(str::to_owned),
                permissions,
            })
    }

    proptest! {
        /// Whatever is asked, what is granted allows exactly what both the request and the
        /// registration allow, and prints as scopes that parse back to itself.
        #[test]
        fn grants_never_exceed_the_registration_or_the_request(
            asked in proptest::collection::vec(any_scope(), 0..6),
            registered in proptest::collection::vec(any_scope(), 0..6),
        ) {
            let (asked, registered) = (Scopes::from_scopes(asked), Scopes::from_scopes(registered));
            let granted = asked.granted_under(&registered);
            for t in ["Observation", "Condition", "Consent", "Patient"] {
                for p in ALL {
                    for c in [Context::Patient, Context::User, Context::System] {
                        let has = |s: &Scopes| s.iter().any(|s| s.context == c && s.allows(t, p));
                        prop_assert_eq!(has(&granted), has(&asked) && has(&registered));
                    }
                }
            }
            prop_assert_eq!(Scopes::parse(&granted.to_string()).unwrap(), granted);
        }
    }
}
