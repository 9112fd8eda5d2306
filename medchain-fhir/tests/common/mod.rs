//! What the fast path's test files share: the one property that matters.

use medchain_core::genesis::FhirProfile;
use medchain_fhir::{fast_path_is_clean, validate, validate_exact, Options};

/// Both profile levels.
pub const PROFILES: [FhirProfile; 2] = [FhirProfile::BaseR4, FhirProfile::UsCore];

/// The property, under both profiles, strict and lenient: when the fast path says clean, the
/// exact path has no issue, and `validate` always equals `validate_exact`. Returns whether the
/// fast path answered, per profile.
pub fn sound(bytes: &[u8], what: &str) -> [bool; 2] {
    let mut fast = [false; 2];
    for (i, profile) in PROFILES.into_iter().enumerate() {
        let options = Options::new(profile);
        let exact = validate_exact(bytes, &options);
        fast[i] = fast_path_is_clean(bytes, &options);
        assert!(
            !fast[i] || exact.issues().is_empty(),
            "{what}: fast path said clean under {profile:?}, exact: {exact}\n{}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(validate(bytes, &options), exact, "{what}");
        let lenient = options.lenient_for_migration();
        assert_eq!(
            validate(bytes, &lenient),
            validate_exact(bytes, &lenient),
            "{what}"
        );
    }
    fast
}
