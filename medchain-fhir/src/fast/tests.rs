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
    assert!(SITE_TYPES.windows(2).all(|w| w[0] <= w[1]), "sorted");
    // `hooks` tells the sites' types apart by fingerprint alone after the first name.
    for (i, a) in SITE_TYPES.iter().enumerate() {
        for (j, b) in SITE_TYPES.iter().enumerate() {
            assert_eq!(
                a == b,
                SITE_FINGERPRINTS[i] == SITE_FINGERPRINTS[j],
                "{a} {b}"
            );
        }
    }
    for (i, b) in BINDINGS.iter().enumerate() {
        let (ty, e) = resolve(b.resource, b.path);
        assert_eq!(SITE_TYPES[i], ty, "{}", b.value_set);
        assert_eq!(b.path.last(), Some(&e.key));
        assert!(!e.list, "{}", b.value_set);
        match b.system {
            None => assert!(matches!(e.shape, Shape::Prim(Kind::Code))),
            Some(_) => {
                assert!(matches!(e.shape, Shape::Complex(t) if t.name == "CodeableConcept"))
            }
        }
        let td = all_types().into_iter().find(|t| t.name == ty).unwrap();
        assert!(hooks(td).1.iter().any(|h| std::ptr::eq(h, b)), "{ty}");
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
}

#[test]
fn extensions_are_extensions_and_references_are_strings() {
    for t in all_types() {
        assert!(
            t.elems.windows(2).all(|w| w[0].key < w[1].key),
            "{}",
            t.name
        );
        let slots = t.elems.iter().fold(0u128, |m, e| m | 1 << e.slot);
        assert_eq!(slots & t.required, t.required, "{}", t.name);
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
        let want_sites = SITE_TYPES.iter().filter(|n| **n == t.name).count();
        assert_eq!(found.len(), want_sites, "{}", t.name);
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
                let mut p = Parser::new("", &text, false);
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
            let mut p = Parser::new("", &text, false);
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
                let mut p = Parser::new("", &text, false);
                p.skip_plain_bytes();
                assert_eq!(p.pos, at, "{before} {special} {at}");
            }
        }
    }
}

// --- The tables against fhirkit itself: every element of every type, with probe values ---

/// A value fhirkit accepts for `kind` (what fills required elements).
fn canonical(kind: Kind) -> &'static str {
    match kind {
        Kind::Boolean => "true",
        Kind::Integer | Kind::PositiveInt => "1",
        Kind::UnsignedInt => "0",
        Kind::Decimal => "1.5",
        Kind::String | Kind::Code | Kind::Id | Kind::Markdown => "\"x\"",
        Kind::Uri | Kind::Url | Kind::Canonical => "\"http://x/y\"",
        Kind::Oid => "\"urn:oid:1.2.3\"",
        Kind::Uuid => "\"urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7\"",
        Kind::Base64Binary => "\"aGVsbG8=\"",
        Kind::Date | Kind::DateTime => "\"2020-01-02\"",
        Kind::Instant => "\"2020-01-02T10:00:00Z\"",
        Kind::Time => "\"10:00:00\"",
        Kind::Xhtml => "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x</div>\"",
    }
}

/// Values tried in every primitive (and plain string) position: each is valid for some kinds
/// and not for others, so a table whose kind is looser than fhirkit's is caught.
fn probes() -> Vec<String> {
    let mut p: Vec<String> = [
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-1",
        "1.5",
        "1e2",
        "2147483647",
        "2147483648",
        "-2147483648",
        "\"x\"",
        "\"a  b\"",
        "\" a\"",
        "\"a \"",
        "\"a b\"",
        "\"a\\tb\"",
        "\"a\\nb\"",
        "\"\\u00e9\"",
        "\"é\"",
        "\"\u{a0}\"",
        "\"a\u{2003}b\"",
        "\"a\u{85}b\"",
        "\"2020\"",
        "\"2020-01\"",
        "\"2020-01-02\"",
        "\"2020-01-02T10:00:00Z\"",
        "\"2020-01-02T10:00:00.5+01:00\"",
        "\"2020-01-02T10:00:00\"",
        "\"10:00:00\"",
        "\"10:00\"",
        "\"aGVsbG8=\"",
        "\"aGVs bG8=\"",
        "\"urn:oid:1.2.3\"",
        "\"urn:oid:1.02\"",
        "\"urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7\"",
        "\"http://x/y\"",
        "\"abc-1.2\"",
        "\"a_b\"",
        "\"#\"",
        "\"#x\"",
        "\"Patient/1\"",
        "\"1\"",
        "\"true\"",
        "\"<div>x</div>\"",
        "\"\\u0000\"",
        "\"\\/\"",
        "\"\"",
        "null",
        "{}",
        "[]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    p.push(format!("\"{}\"", "x".repeat(64)));
    p.push(format!("\"{}\"", "x".repeat(65)));
    p
}

/// A value of `e` of `td` as JSON text: codes of a required binding, a minimal object, ...
fn fill(td: &TypeDef, e: &Elem) -> String {
    if let Some(b) = hooks(td).1.iter().find(|b| b.path.last() == Some(&e.key)) {
        return match b.system {
            None => format!("\"{}\"", b.codes[0]),
            Some(sys) => format!(
                r#"{{"coding":[{{"system":"{sys}","code":"{}"}}]}}"#,
                b.codes[0]
            ),
        };
    }
    match e.shape {
        Shape::Str => "\"x\"".into(),
        Shape::Prim(k) => canonical(k).into(),
        Shape::Complex(t) => object(t, None, None),
        Shape::Resource => r#"{"resourceType":"Basic","id":"c","code":{"text":"x"}}"#.into(),
    }
}

fn wrap(e: &Elem, v: String) -> String {
    if e.list {
        format!("[{v}]")
    } else {
        v
    }
}

/// An object of `td`: its required elements filled, `with` (a key and its JSON text) added,
/// `without` (a required slot) left out.
fn object(td: &TypeDef, with: Option<(&Elem, &str)>, without: Option<u8>) -> String {
    let mut members: Vec<String> = Vec::new();
    if td.resource {
        members.push(format!("\"resourceType\":\"{}\"", td.name));
    }
    let mut filled = 0u128;
    if let Some((e, v)) = with {
        members.push(format!("\"{}\":{v}", e.key));
        filled |= 1u128 << e.slot;
    }
    for e in td.elems {
        let bit = 1u128 << e.slot;
        if td.required & bit != 0 && filled & bit == 0 && without != Some(e.slot) {
            filled |= bit;
            members.push(format!("\"{}\":{}", e.key, wrap(e, fill(td, e))));
        }
    }
    if td.name == "BundleEntry" && with.is_none_or(|(e, _)| e.key != "resource") {
        members.push(r#""resource":{"resourceType":"Basic","code":{"text":"x"}}"#.into());
    }
    if members.len() == usize::from(td.resource) {
        if let Some(e) = td.elems.iter().find(|e| e.key == "id") {
            members.push(format!("\"{}\":\"x\"", e.key));
        }
    }
    format!("{{{}}}", members.join(","))
}

/// Every type reachable from a resource, with the first path (resource, then elements) to it.
fn paths() -> Vec<(&'static TypeDef, Vec<(&'static TypeDef, &'static Elem)>)> {
    let mut out: Vec<(&'static TypeDef, Vec<(&'static TypeDef, &'static Elem)>)> = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    for name in medchain_core::fhir::R4_RESOURCE_TYPES {
        let td = resource_def(name).unwrap();
        out.push((td, Vec::new()));
        queue.push_back((td, Vec::new()));
    }
    while let Some((td, path)) = queue.pop_front() {
        for e in td.elems {
            if let Shape::Complex(t) = e.shape {
                if out.iter().any(|(x, _)| std::ptr::eq(*x, t)) {
                    continue;
                }
                let mut p: Vec<(&'static TypeDef, &'static Elem)> = path.clone();
                p.push((td, e));
                out.push((t, p.clone()));
                queue.push_back((t, p));
            }
        }
    }
    out
}

/// The document whose object at `path` is `inner` (JSON text of the last type on the path).
fn document(path: &[(&TypeDef, &Elem)], inner: String) -> String {
    let mut v = inner;
    for (td, e) in path.iter().rev() {
        v = object(td, Some((e, &wrap(e, v))), None);
    }
    v
}

fn sound(doc: &str, clean: &mut usize) {
    for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
        if check(doc.as_bytes(), profile) != Verdict::Unsure {
            *clean += 1;
            let r = crate::validate_exact(doc.as_bytes(), &crate::Options::new(profile));
            assert!(r.issues().is_empty(), "{profile:?} {doc}\n{r}");
        }
    }
}

#[test]
#[ignore = "slow: every element of every type with every probe (run with --release --ignored)"]
fn every_element_of_every_type_agrees_with_fhirkit() {
    let probes = probes();
    let mut clean = 0usize;
    let mut docs = 0usize;
    for (td, path) in paths() {
        // The type alone, then without each required element.
        docs += 1;
        sound(&document(&path, object(td, None, None)), &mut clean);
        for e in td.elems {
            if td.required & (1u128 << e.slot) != 0 {
                docs += 1;
                sound(&document(&path, object(td, None, Some(e.slot))), &mut clean);
            }
        }
        for e in td.elems {
            let values: Vec<String> = match e.shape {
                Shape::Prim(_) | Shape::Str => probes.clone(),
                _ => vec![fill(td, e)],
            };
            for v in values {
                for w in [wrap(e, v.clone()), v.clone(), format!("[{v},{v}]")] {
                    docs += 1;
                    sound(
                        &document(&path, object(td, Some((e, &w)), None)),
                        &mut clean,
                    );
                }
            }
        }
    }
    eprintln!("{docs} documents, {clean} clean");
    assert!(clean > 10_000, "{clean} of {docs}");
}

/// A random object of `td` (required elements filled, a few random elements with random probe
/// values, nested types down to `depth`), for the combined hunt below.
fn random_object(td: &TypeDef, rng: &mut u64, probes: &[String], depth: usize) -> String {
    let mut next = |n: usize| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng % n as u64) as usize
    };
    let mut members: Vec<String> = Vec::new();
    let mut filled = 0u128;
    if td.resource {
        members.push(format!("\"resourceType\":\"{}\"", td.name));
    }
    let picks = 1 + next(4);
    let mut chosen: Vec<(&Elem, String)> = Vec::new();
    for _ in 0..picks {
        let e = &td.elems[next(td.elems.len())];
        if filled & (1u128 << e.slot) != 0 {
            continue;
        }
        filled |= 1u128 << e.slot;
        let v = match e.shape {
            Shape::Prim(_) | Shape::Str if next(3) == 0 => fill(td, e),
            Shape::Prim(_) | Shape::Str => probes[next(probes.len())].clone(),
            Shape::Complex(t) if depth > 0 => format!("@{}", t.name),
            Shape::Complex(t) => object(t, None, None),
            Shape::Resource => {
                let id = ["c", "d", "a b", ""][next(4)];
                format!(r#"{{"resourceType":"Basic","id":"{id}","code":{{"text":"x"}}}}"#)
            }
        };
        chosen.push((e, v));
    }
    for (e, v) in chosen {
        let v = match (v.strip_prefix('@'), &e.shape) {
            (Some(_), Shape::Complex(t)) => random_object(t, rng, probes, depth - 1),
            _ => v,
        };
        members.push(format!("\"{}\":{}", e.key, wrap(e, v)));
    }
    for e in td.elems {
        let bit = 1u128 << e.slot;
        if td.required & bit != 0 && filled & bit == 0 {
            filled |= bit;
            members.push(format!("\"{}\":{}", e.key, wrap(e, fill(td, e))));
        }
    }
    format!("{{{}}}", members.join(","))
}

#[test]
#[ignore = "slow: random documents of every resource type (run with --release --ignored)"]
fn random_documents_of_every_type_agree_with_fhirkit() {
    let mut probes = probes();
    probes.extend(["\"#c\"", "\"#d\"", "\"final\"", "\"active\""].map(String::from));
    let rounds: usize = std::env::var("MEDCHAIN_FHIR_RANDOM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut clean, mut docs) = (0usize, 0usize);
    for _ in 0..rounds {
        for name in medchain_core::fhir::R4_RESOURCE_TYPES {
            let td = resource_def(name).unwrap();
            let doc = random_object(td, &mut rng, &probes, 4);
            docs += 1;
            sound(&doc, &mut clean);
        }
    }
    eprintln!("{docs} documents, {clean} clean");
}

/// Every element of a type at once (each slot once, the widest objects there are: the slot
/// mask's high bits and the member count), in every type reachable from a resource.
#[test]
fn every_slot_of_every_type_at_once() {
    let mut clean = 0usize;
    for (td, path) in paths() {
        let mut members: Vec<String> = Vec::new();
        if td.resource {
            members.push(format!("\"resourceType\":\"{}\"", td.name));
        }
        let mut filled = 0u128;
        for e in td.elems {
            let bit = 1u128 << e.slot;
            if filled & bit == 0 && !matches!(e.shape, Shape::Resource) {
                filled |= bit;
                members.push(format!("\"{}\":{}", e.key, wrap(e, fill(td, e))));
            }
        }
        if td.name == "BundleEntry" {
            members.push(r#""resource":{"resourceType":"Basic","code":{"text":"x"}}"#.into());
        }
        let inner = format!("{{{}}}", members.join(","));
        sound(&document(&path, inner), &mut clean);
    }
    assert!(clean > 100, "{clean}");
}
