//! The tables and the hand-kept lists checked against each other (on a build with every
//! resource group, which is what the lists name).
#![cfg(all(
    feature = "foundation",
    feature = "base",
    feature = "clinical",
    feature = "financial",
    feature = "specialized"
))]

use super::*;

fn resource_def(name: &str) -> Option<&'static TypeDef> {
    tables::resource(name.as_bytes())
}

fn all_types() -> Vec<&'static TypeDef> {
    tables::all()
}

fn resolve(resource: &str, path: &[&str]) -> (&'static str, &'static Elem) {
    let mut td = resource_def(resource).unwrap_or_else(|| panic!("{resource}"));
    let (last, init) = path.split_last().expect("a path");
    for key in init {
        let e = td
            .elem(key.as_bytes())
            .unwrap_or_else(|| panic!("{resource}.{key}"));
        let Shape::Complex(next) = e.shape else {
            panic!("{resource}.{key} is not complex")
        };
        td = next;
    }
    let e = td
        .elem(last.as_bytes())
        .unwrap_or_else(|| panic!("{resource}.{last}"));
    (td.name, e)
}

#[test]
fn binding_sites_are_where_the_bindings_lead() {
    assert_eq!(SITES.len(), BINDINGS.len());
    for (i, b) in BINDINGS.iter().enumerate() {
        let (ty, e) = resolve(b.resource, b.path);
        assert_eq!(SITES[i], (ty, e.key, i), "{}", b.value_set);
        assert!(!e.list, "{}", b.value_set);
        match b.system {
            None => assert!(matches!(e.shape, Shape::Prim(Kind::Code))),
            Some(_) => {
                assert!(matches!(e.shape, Shape::Complex(t) if t.name == "CodeableConcept"))
            }
        }
        assert!(sites(ty).contains(&SITES[i]), "{ty}");
        if let Some(rec) = b.recursive {
            // `Consent.provision.provision` is the same type: the site covers every level.
            let (_, parent) = resolve(b.resource, &b.path[..b.path.len() - 1]);
            let Shape::Complex(t) = parent.shape else {
                panic!()
            };
            assert!(
                matches!(t.elem(rec.as_bytes()).unwrap().shape, Shape::Complex(u) if u.name == t.name)
            );
        }
    }
    for t in all_types() {
        for s in sites(t.name) {
            assert_eq!(s.0, t.name);
        }
    }
}

#[test]
fn extensions_are_extensions_and_references_are_strings() {
    for t in all_types() {
        assert!(
            t.elems.windows(2).all(|w| w[0].key < w[1].key),
            "{}",
            t.name
        );
        assert!(t.required < (1u128 << t.slots) || t.slots == 128);
        for e in t.elems {
            if e.key == "extension" || e.key == "modifierExtension" {
                assert!(e.list && matches!(e.shape, Shape::Complex(x) if x.name == "Extension"));
            }
        }
    }
    let (_, url) = resolve("Basic", &["extension", "url"]);
    assert!(matches!(url.shape, Shape::Str));
}

#[test]
fn us_core_choices_are_one_element() {
    for r in US_CORE {
        let td = resource_def(r.resource).unwrap();
        match r.element.strip_suffix("[x]") {
            Some(base) => {
                let slots: Vec<u8> = td
                    .elems
                    .iter()
                    .filter(|e| {
                        e.key
                            .strip_prefix(base)
                            .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
                    })
                    .map(|e| e.slot)
                    .collect();
                assert!(
                    !slots.is_empty() && slots.iter().all(|s| *s == slots[0]),
                    "{}",
                    r.element
                );
            }
            None => assert!(td.slot(r.element).is_some(), "{}", r.element),
        }
    }
}

#[test]
fn every_r4_resource_type_is_in_the_tables_of_a_full_build() {
    for name in medchain_core::fhir::R4_RESOURCE_TYPES {
        assert_eq!(resource_def(name).map(|t| t.name), Some(*name));
    }
}

#[test]
fn hooks_find_every_hooked_type() {
    for t in all_types() {
        let (special, found) = hooks(t);
        assert_eq!(found, sites(t.name), "{}", t.name);
        let want = match t.name {
            "Bundle" => Special::Bundle,
            "BundleEntry" => Special::BundleEntry,
            "Extension" => Special::Extension,
            _ => Special::None,
        };
        assert!(special == want, "{}", t.name);
    }
}

#[test]
fn plain_byte_skipping_stops_where_a_byte_needs_attention() {
    for len in 0..20 {
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..len {
                let mut text = vec![b'a'; len];
                text[at] = stop;
                let mut p = Parser {
                    text: "",
                    b: &text,
                    pos: 0,
                    us_core: false,
                    root_bundle: false,
                    role: Role::Root,
                    in_entry: false,
                    refs: Vec::new(),
                    ids: Vec::new(),
                    full_urls: Vec::new(),
                    urn_refs: Vec::new(),
                    bundle_type: b"",
                    entry_without_request: false,
                };
                p.skip_plain_bytes();
                // Never past it; exactly at it when a whole word holds it.
                assert!(p.pos <= at, "{len} {stop} {at}: {}", p.pos);
                if at < len / 8 * 8 {
                    assert_eq!(p.pos, at, "{len} {stop}");
                }
            }
        }
        // Bytes that need nothing, ASCII or not, are skipped in whole words.
        for filler in [b'a', b' ', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b']'] {
            let text = vec![filler; len];
            let mut p = Parser {
                text: "",
                b: &text,
                pos: 0,
                us_core: false,
                root_bundle: false,
                role: Role::Root,
                in_entry: false,
                refs: Vec::new(),
                ids: Vec::new(),
                full_urls: Vec::new(),
                urn_refs: Vec::new(),
                bundle_type: b"",
                entry_without_request: false,
            };
            p.skip_plain_bytes();
            assert_eq!(p.pos, len / 8 * 8, "{filler}");
        }
    }
}

#[test]
fn every_key_is_found_by_its_hash_and_nothing_else_is() {
    for t in all_types() {
        assert!(t.index.len().is_power_of_two() && t.index.len() >= 2 * t.elems.len());
        for e in t.elems {
            assert!(
                std::ptr::eq(t.elem(e.key.as_bytes()).unwrap(), e),
                "{}.{}",
                t.name,
                e.key
            );
            // Sorted by bytes: the generated file is deterministic.
            assert!(t
                .elems
                .binary_search_by(|x| x.key.as_bytes().cmp(e.key.as_bytes()))
                .is_ok());
        }
        for absent in [
            &b""[..],
            b"resourceTyp",
            b"_id",
            b"fhir_comments",
            b"valueFoo",
            b"idx",
        ] {
            assert!(
                t.elem(absent).is_none_or(|e| e.key.as_bytes() == absent),
                "{}",
                t.name
            );
        }
    }
}

#[test]
fn plain_byte_skipping_never_skips_a_byte_that_needs_attention() {
    // Every byte value at every position of a word, after every other byte value.
    for before in 0..=255u8 {
        for special in (0..=255u8).filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\') {
            for at in 0..8 {
                let mut text = [before; 16];
                if before < 0x20 || before == b'"' || before == b'\\' {
                    text = [b'a'; 16];
                    text[..at].fill(b'a');
                }
                text[at] = special;
                for (i, c) in text.iter_mut().enumerate().skip(at + 1) {
                    *c = (i as u8).wrapping_mul(37);
                }
                let mut p = Parser {
                    text: "",
                    b: &text,
                    pos: 0,
                    us_core: false,
                    root_bundle: false,
                    role: Role::Root,
                    in_entry: false,
                    refs: Vec::new(),
                    ids: Vec::new(),
                    full_urls: Vec::new(),
                    urn_refs: Vec::new(),
                    bundle_type: b"",
                    entry_without_request: false,
                };
                p.skip_plain_bytes();
                assert_eq!(p.pos, at, "{before} {special} {at}");
            }
        }
    }
}
