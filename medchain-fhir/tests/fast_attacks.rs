//! Hand-made attacks on the fast path (`src/fast/mod.rs`): each document is a place where the
//! fast path and the exact path (fhirkit, then the rules) could disagree. For every one, under
//! both profiles: when the fast path says clean, the exact path has no issue, and `validate`
//! equals `validate_exact`. The attacks that pass document where the fast path holds.

use std::time::{Duration, Instant};

use medchain_core::fhir::MAX_RESOURCE_BYTES;
use medchain_core::genesis::FhirProfile;
use medchain_fhir::{fast_path_is_clean, Options};

mod common;
use common::sound;

/// An Observation clean under both profiles, with `extra` members appended (`,"k":v...`).
fn obs(extra: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"text":"x"}},"subject":{{"reference":"Patient/p1"}},"effectiveDateTime":"2026-01-02T08:00:00Z"{extra}}}"#
    )
}

/// A Basic (no profile rules) with `extra` members.
fn basic(extra: &str) -> String {
    format!(r#"{{"resourceType":"Basic","code":{{"text":"x"}}{extra}}}"#)
}

/// Checks every case, and each again pretty-printed (whitespace between all tokens; keys
/// possibly reordered, duplicates merged: another attack); returns how many were clean.
fn run(cases: &[(&str, String)]) -> usize {
    let mut clean = 0;
    for (what, doc) in cases {
        if sound(doc.as_bytes(), what)[0] {
            clean += 1;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(doc) {
            let pretty = serde_json::to_string_pretty(&v)
                .unwrap()
                .replace("  ", "\t \r\n");
            sound(pretty.as_bytes(), what);
        }
    }
    clean
}

#[test]
fn the_baselines_are_clean() {
    // Observation is in fhirkit's `clinical` group: a build without it fails closed.
    let want = cfg!(feature = "clinical");
    assert_eq!(sound(obs("").as_bytes(), "obs"), [want, want]);
    assert_eq!(sound(basic("").as_bytes(), "basic"), [true, true]);
    // Whitespace between every token, in a binding's CodeableConcept too (re-read by `Scan`).
    let condition = r#"{"resourceType":"Condition","subject":{"reference":"Patient/1"},"code":{"text":"x"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}"#;
    let v: serde_json::Value = serde_json::from_str(condition).unwrap();
    let pretty = serde_json::to_string_pretty(&v)
        .unwrap()
        .replace("  ", "\t \r\n");
    let want = cfg!(feature = "clinical");
    assert_eq!(sound(condition.as_bytes(), "condition")[0], want);
    assert_eq!(
        sound(pretty.as_bytes(), "pretty condition")[0],
        want,
        "{pretty}"
    );
}

#[test]
fn json_numbers() {
    let mut cases = Vec::new();
    for n in [
        "-0",
        "0",
        "1",
        "01",
        "-01",
        "1.0",
        "1e5",
        "1E+2",
        "1e-2",
        ".5",
        "1.",
        "1e",
        "1e+",
        "-",
        "--1",
        "+1",
        "1e999999999",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "99999999999999999999",
        "0x10",
        "1_0",
        "NaN",
        "Infinity",
        "1 2",
        "true",
        "null",
    ] {
        cases.push((
            "integer",
            basic(&format!(
                r#","extension":[{{"url":"http://x/e","valueInteger":{n}}}]"#
            )),
        ));
        cases.push((
            "positiveInt",
            basic(&format!(
                r#","extension":[{{"url":"http://x/e","valuePositiveInt":{n}}}]"#
            )),
        ));
        cases.push((
            "unsignedInt",
            basic(&format!(
                r#","extension":[{{"url":"http://x/e","valueUnsignedInt":{n}}}]"#
            )),
        ));
        cases.push((
            "decimal",
            basic(&format!(
                r#","extension":[{{"url":"http://x/e","valueQuantity":{{"value":{n}}}}}]"#
            )),
        ));
    }
    assert!(run(&cases) > 20);
}

#[test]
fn json_strings() {
    let mut cases = Vec::new();
    let raw: &[&[u8]] = &[
        b"a\x01b",
        b"a\x1fb",
        b"a\tb",
        b"a\nb",
        b"a\x7fb",
        b"a\xffb",
        b"a\xc3b",
        b"\xed\xa0\x80",
        b"a\\u0000b",
        b"\\ud800",
        b"\\ud800\\u0041",
        b"\\udc00",
        b"\\ud83d\\ude00",
        b"\\ud83d",
        b"\\ud83d\\",
        b"\\u00",
        b"\\u00zz",
        b"\\x41",
        b"\\'",
        b"\\",
        b"\\\"",
        b"\\/",
        b"\\b",
        b"\\f",
        b"\\U0041",
        b"\\u0041",
        b"\\u000a",
        b"\\u0020",
        b"\\u00a0",
        b"\xc2\xa0",
        b"\xe2\x80\x83",
        b"\xc2\x85",
        b" ",
        b"",
        b"a  b",
        b" a",
        b"a ",
    ];
    for s in raw {
        let s = String::from_utf8_lossy(s).into_owned();
        let s = s.as_str();
        for (what, doc) in [
            (
                "string",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueString":"{s}"}}]"#
                )),
            ),
            (
                "markdown",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueMarkdown":"{s}"}}]"#
                )),
            ),
            (
                "code",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueCode":"{s}"}}]"#
                )),
            ),
            (
                "uri",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueUri":"{s}"}}]"#
                )),
            ),
            (
                "id kind",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueId":"{s}"}}]"#
                )),
            ),
            (
                "ext url",
                basic(&format!(
                    r#","extension":[{{"url":"{s}","valueBoolean":true}}]"#
                )),
            ),
            (
                "ext url suffix",
                basic(&format!(
                    r#","extension":[{{"url":"http://x/{s}","valueBoolean":true}}]"#
                )),
            ),
            (
                "element id",
                basic(&format!(
                    r#","extension":[{{"id":"{s}","url":"http://x/e","valueBoolean":true}}]"#
                )),
            ),
            ("resource id", basic(&format!(r#","id":"{s}""#))),
            ("resource id suffix", basic(&format!(r#","id":"a{s}""#))),
            (
                "reference",
                basic(&format!(r#","subject":{{"reference":"{s}"}}"#)),
            ),
            (
                "hash reference",
                basic(&format!(r##","subject":{{"reference":"#{s}"}}"##)),
            ),
            (
                "binding",
                obs("").replace(r#""status":"final""#, &format!(r#""status":"final{s}""#)),
            ),
            ("key", basic(&format!(r#","{s}":"x""#))),
            ("key suffix", basic(&format!(r#","created{s}":"2020""#))),
            (
                "narrative",
                basic(&format!(r#","text":{{"status":"generated","div":"{s}"}}"#)),
            ),
            (
                "resourceType",
                format!(r#"{{"resourceType":"Basic{s}","code":{{"text":"x"}}}}"#),
            ),
        ] {
            cases.push((what, doc));
        }
    }
    // Raw bytes that are not UTF-8 or are control characters, spliced in directly.
    for bad in [&b"\xff"[..], b"\x00", b"\x01", b"\xc3", b"\xed\xa0\x80"] {
        let mut doc =
            basic(r#","extension":[{"url":"http://x/e","valueString":"a"}]"#).into_bytes();
        let at = doc.len() - 6;
        doc.splice(at..at, bad.iter().copied());
        sound(&doc, "raw byte in a string");
    }
    assert!(run(&cases) > 50);
}

#[test]
fn json_whitespace_and_framing() {
    let b = basic("");
    let mut cases = vec![
        ("bom", format!("\u{feff}{b}")),
        ("leading ws", format!(" \t\r\n{b}")),
        ("trailing ws", format!("{b} \t\r\n")),
        ("form feed", format!("{b}\u{c}")),
        ("vertical tab", format!("\u{b}{b}")),
        ("nbsp", format!("{b}\u{a0}")),
        ("nul after", format!("{b}\0")),
        ("garbage after", format!("{b} x")),
        ("second object", format!("{b}{b}")),
        ("extra brace", format!("{b}}}")),
        ("comma after", format!("{b},")),
        ("array root", format!("[{b}]")),
        ("string root", "\"x\"".into()),
        ("empty", String::new()),
        ("open", "{".into()),
        ("unterminated", b[..b.len() - 1].to_string()),
        ("trailing comma", b.replace("}}", "},}")),
        (
            "ws everywhere",
            b.replace(':', " \t:\r\n ")
                .replace(',', " ,\n ")
                .replace('{', "{ ")
                .replace('}', " }"),
        ),
        (
            "ws before colon in nested",
            basic(r#","code" :{"text" : "y"}"#),
        ),
        ("single quotes", b.replace('"', "'")),
        ("comment", basic(r#"/* c */"#)),
        ("unquoted key", basic(r#",created:"2020""#)),
        (
            "literal prefix",
            basic(r#","extension":[{"url":"http://x/e","valueBoolean":truex}]"#),
        ),
        (
            "literal upper",
            basic(r#","extension":[{"url":"http://x/e","valueBoolean":True}]"#),
        ),
        (
            "literal then ws",
            basic(r#","extension":[{"url":"http://x/e","valueBoolean":true }]"#),
        ),
        ("null value", basic(r#","created":null"#)),
        ("null in list", basic(r#","identifier":[null]"#)),
        ("empty object", basic(r#","subject":{}"#)),
        ("empty array", basic(r#","identifier":[]"#)),
        ("ws empty array", basic(r#","identifier":[ ]"#)),
        ("ws empty object", basic(r#","subject":{ }"#)),
        (
            "list trailing comma",
            basic(r#","identifier":[{"value":"x"},]"#),
        ),
        (
            "list missing comma",
            basic(r#","identifier":[{"value":"x"} {"value":"y"}]"#),
        ),
        ("missing colon", basic(r#","created" "2020""#)),
        ("double colon", basic(r#","created"::"2020""#)),
    ];
    // Deep nesting, around every limit (rules: 64 levels; fhirkit: 256).
    for depth in [30, 58, 59, 60, 61, 62, 63, 64, 65, 70, 255, 256, 257, 300] {
        let mut ext = String::from(r#"{"url":"http://x/e","valueBoolean":true}"#);
        for _ in 0..depth {
            ext = format!(r#"{{"url":"http://x/e","extension":[{ext}]}}"#);
        }
        cases.push(("deep extension", basic(&format!(r#","extension":[{ext}]"#))));
        let arrays = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        cases.push(("deep arrays", basic(&format!(r#","created":{arrays}"#))));
        cases.push((
            "deep arrays before resourceType",
            format!(r#"{{"created":{arrays},"resourceType":"Basic","code":{{"text":"x"}}}}"#),
        ));
    }
    run(&cases);
}

#[test]
fn duplicate_and_look_alike_keys() {
    let cases = vec![
        ("duplicate", obs(r#","status":"final""#)),
        ("duplicate escaped", obs(r#","st\u0061tus":"final""#)),
        ("escaped key only", basic(r#","cr\u0065ated":"2020""#)),
        ("case", basic(r#","Created":"2020""#)),
        ("prefix", basic(r#","create":"2020""#)),
        ("longer", basic(r#","createdd":"2020""#)),
        ("other type's key", basic(r#","status":"final""#)),
        (
            "backbone key at root",
            obs(r#","referenceRange":[{"text":"x"}]"#),
        ),
        ("choice of another type", basic(r#","valueString":"x""#)),
        (
            "choice twice",
            obs(r#","valueString":"x","valueBoolean":true"#),
        ),
        (
            "choice same twice",
            obs(r#","valueString":"x","valueString":"y""#),
        ),
        (
            "choice twin alone",
            obs(r#","_valueString":{"extension":[{"url":"http://x/e","valueBoolean":true}]}"#),
        ),
        (
            "choice value and twin",
            obs(r#","valueString":"x","_valueString":{"id":"a"}"#),
        ),
        ("twin alone", basic(r#","_created":{"id":"a"}"#)),
        ("fhir_comments", basic(r#","fhir_comments":["x"]"#)),
        (
            "effective twice",
            obs(r#","effectivePeriod":{"start":"2020"}"#),
        ),
        ("choice lower case", obs(r#","valuestring":"x""#)),
        ("choice bare", obs(r#","value":"x""#)),
        ("choice bad type", obs(r#","valueFoo":"x""#)),
        ("choice wrong case type", obs(r#","valueDatetime":"2020""#)),
        ("same hash other key", basic(r#","crxated":"2020""#)),
    ];
    run(&cases);
}

#[test]
fn primitive_formats() {
    let mut cases = Vec::new();
    let ext = |t: &str, v: &str| {
        basic(&format!(
            r#","extension":[{{"url":"http://x/e","value{t}":{v}}}]"#
        ))
    };
    for (t, vs) in [
        (
            "Date",
            &[
                "\"2020\"",
                "\"2020-02-30\"",
                "\"2020-13\"",
                "\"2020-1\"",
                "\"20201\"",
                "\"2020-01-02T10:00:00Z\"",
                "\"02020\"",
                "\"2020-01-\"",
                "\"2020--01\"",
                "\"-2020\"",
            ][..],
        ),
        (
            "DateTime",
            &[
                "\"2020-01-02T10:00:00Z\"",
                "\"2020-01-02T10:00:00\"",
                "\"2020-01-02T10:00Z\"",
                "\"2020-01-02T24:00:00Z\"",
                "\"2020-01-02T10:00:00+14:00\"",
                "\"2020-01-02T10:00:00+15:00\"",
                "\"2020-01-02T10:00:00.Z\"",
                "\"2020T10:00:00Z\"",
                "\"2020-01-02T10:00:00-00:00\"",
                "\"2020-01-02t10:00:00Z\"",
                "\"2020-01-02T10:00:00z\"",
                "\"2020-01-02T10:00:00+0100\"",
            ][..],
        ),
        (
            "Instant",
            &[
                "\"2020-01-02T10:00:00Z\"",
                "\"2020-01T10:00:00Z\"",
                "\"2020-01-02\"",
                "\"2020-01-02T10:00:00.123456789+01:00\"",
            ][..],
        ),
        (
            "Time",
            &[
                "\"10:00:00\"",
                "\"24:00:00\"",
                "\"10:00\"",
                "\"10:00:60\"",
                "\"10:00:00.\"",
                "\"10:00:00Z\"",
            ][..],
        ),
        ("Id", &["\"abc\"", "\"a_b\"", "\"a b\""][..]),
        (
            "Oid",
            &[
                "\"urn:oid:1.2.3\"",
                "\"urn:oid:3.2\"",
                "\"urn:oid:1\"",
                "\"urn:oid:1.02\"",
                "\"1.2.3\"",
            ][..],
        ),
        (
            "Uuid",
            &[
                "\"urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7\"",
                "\"urn:uuid:53FEFA32-fcbb-4ff8-8a92-55ee120877b7\"",
                "\"53fefa32-fcbb-4ff8-8a92-55ee120877b7\"",
            ][..],
        ),
        (
            "Base64Binary",
            &[
                "\"aGVsbG8=\"",
                "\"aGVsbG8\"",
                "\"aGVs bG8=\"",
                "\"aGVs\\nbG8=\"",
                "\"====\"",
                "\"a-b_\"",
            ][..],
        ),
        ("Canonical", &["\"http://x|1\"", "\"a b\"", "\"a\\tb\""][..]),
        ("Url", &["\"http://x\"", "\"x y\""][..]),
        ("Boolean", &["true", "false", "\"true\"", "1", "0"][..]),
        (
            "Code",
            &[
                "\"a b\"",
                "\"a  b\"",
                "\"a\u{2003}b\"",
                "\"a\u{2003}\u{2003}b\"",
                "\"\u{2003}a\"",
                "\"a\\u0020\\u0020b\"",
            ][..],
        ),
    ] {
        for v in vs {
            cases.push((t, ext(t, v)));
        }
    }
    let long = |n: usize| "a".repeat(n);
    for n in [63, 64, 65] {
        cases.push((
            "resource id length",
            basic(&format!(r#","id":"{}""#, long(n))),
        ));
        cases.push(("id kind length", ext("Id", &format!("\"{}\"", long(n)))));
    }
    cases.push((
        "narrative",
        basic(r#","text":{"status":"generated","div":"<div>x</div>"}"#),
    ));
    cases.push((
        "narrative bad status",
        basic(r#","text":{"status":"nope","div":"<div>x</div>"}"#),
    ));
    cases.push((
        "narrative no div",
        basic(r#","text":{"status":"generated"}"#),
    ));
    cases.push((
        "div empty",
        basic(r#","text":{"status":"generated","div":""}"#),
    ));
    cases.push((
        "string list",
        r#"{"resourceType":"Patient","name":[{"given":["a","b"]}]}"#.to_string(),
    ));
    cases.push((
        "string list null",
        r#"{"resourceType":"Patient","name":[{"given":["a",null]}]}"#.to_string(),
    ));
    cases.push((
        "string list empty",
        r#"{"resourceType":"Patient","name":[{"given":[]}]}"#.to_string(),
    ));
    cases.push((
        "string list single",
        r#"{"resourceType":"Patient","name":[{"given":"a"}]}"#.to_string(),
    ));
    cases.push((
        "complex single as list",
        basic(r#","subject":[{"reference":"Patient/1"}]"#),
    ));
    cases.push((
        "complex list as single",
        basic(r#","identifier":{"value":"x"}"#),
    ));
    cases.push(("complex as string", basic(r#","subject":"Patient/1""#)));
    cases.push((
        "string as number",
        basic(r#","extension":[{"url":"http://x/e","valueString":1}]"#),
    ));
    cases.push((
        "required missing",
        r#"{"resourceType":"Basic"}"#.to_string(),
    ));
    cases.push(("required empty", basic("").replace(r#"{"text":"x"}"#, "{}")));
    run(&cases);
}

#[test]
fn resource_type_placement() {
    let cases = vec![
        ("not first", r#"{"code":{"text":"x"},"resourceType":"Basic"}"#.to_string()),
        ("last after id", r#"{"id":"a","code":{"text":"x"},"resourceType":"Basic"}"#.to_string()),
        ("twice", r#"{"resourceType":"Basic","code":{"text":"x"},"resourceType":"Basic"}"#.to_string()),
        ("twice differing", r#"{"resourceType":"Basic","code":{"text":"x"},"resourceType":"Patient"}"#.to_string()),
        ("twice not first", r#"{"code":{"text":"x"},"resourceType":"Basic","resourceType":"Basic"}"#.to_string()),
        ("twice first not first", r#"{"code":{"text":"x"},"resourceType":"Basic","resourceType":"Patient"}"#.to_string()),
        ("missing", r#"{"code":{"text":"x"}}"#.to_string()),
        ("not a string", r#"{"resourceType":1,"code":{"text":"x"}}"#.to_string()),
        ("escaped", r#"{"resourceType":"B\u0061sic","code":{"text":"x"}}"#.to_string()),
        ("unknown", r#"{"resourceType":"Basics","code":{"text":"x"}}"#.to_string()),
        ("datatype name", r#"{"resourceType":"CodeableConcept","text":"x"}"#.to_string()),
        ("backbone name", r#"{"resourceType":"BundleEntry","fullUrl":"http://x/y"}"#.to_string()),
        ("abstract", r#"{"resourceType":"DomainResource"}"#.to_string()),
        ("lower", r#"{"resourceType":"basic","code":{"text":"x"}}"#.to_string()),
        ("nested", basic(r#","subject":{"resourceType":"Patient","reference":"Patient/1"}"#)),
        ("nested in extension", basic(r#","extension":[{"resourceType":"Basic","url":"http://x/e","valueBoolean":true}]"#)),
        ("in contained not first", basic(r##","contained":[{"id":"c","code":{"text":"y"},"resourceType":"Basic"}],"subject":{"reference":"#c"}"##)),
        ("in contained twice", basic(r##","contained":[{"resourceType":"Basic","id":"c","code":{"text":"y"},"resourceType":"Basic"}],"subject":{"reference":"#c"}"##)),
        ("in contained missing", basic(r##","contained":[{"id":"c","code":{"text":"y"}}],"subject":{"reference":"#c"}"##)),
        ("in contained unknown", basic(r##","contained":[{"resourceType":"Nope","id":"c"}],"subject":{"reference":"#c"}"##)),
        ("example scenario", r#"{"resourceType":"ExampleScenario","status":"draft","instance":[{"resourceId":"a","resourceType":"Patient"}]}"#.to_string()),
        ("parameters resource", r#"{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Basic","code":{"text":"x"}}}]}"#.to_string()),
        ("parameters bad resource id", r#"{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Basic","id":"a b","code":{"text":"x"}}}]}"#.to_string()),
    ];
    run(&cases);
}

#[test]
fn contained_and_references() {
    let c = |id: &str| format!(r#"{{"resourceType":"Basic","id":"{id}","code":{{"text":"y"}}}}"#);
    let cases = vec![
        ("resolved", basic(&format!(r##","contained":[{}],"subject":{{"reference":"#c"}}"##, c("c")))),
        ("unresolved", basic(&format!(r##","contained":[{}],"subject":{{"reference":"#d"}}"##, c("c")))),
        ("hash alone", basic(r##","subject":{"reference":"#"}"##)),
        ("hash root id", basic(r##","id":"r","subject":{"reference":"#r"}"##)),
        ("contained bad id", basic(&format!(r##","contained":[{}],"subject":{{"reference":"#a b"}}"##, c("a b")))),
        ("contained long id", basic(&format!(r#","contained":[{}]"#, c(&"a".repeat(65))))),
        ("contained no id", basic(r#","contained":[{"resourceType":"Basic","code":{"text":"y"}}]"#)),
        ("contained ids equal", basic(&format!(r##","contained":[{},{}],"subject":{{"reference":"#c"}}"##, c("c"), c("c")))),
        ("sibling reference", basic(&format!(r##","contained":[{},{{"resourceType":"Basic","id":"d","code":{{"text":"y"}},"subject":{{"reference":"#c"}}}}]"##, c("c")))),
        ("sibling unresolved", basic(&format!(r##","contained":[{},{{"resourceType":"Basic","id":"d","code":{{"text":"y"}},"subject":{{"reference":"#e"}}}}]"##, c("c")))),
        ("contained hash alone", basic(r##","contained":[{"resourceType":"Basic","id":"d","code":{"text":"y"},"subject":{"reference":"#"}}]"##)),
        ("nested contained", basic(&format!(r#","contained":[{{"resourceType":"Basic","id":"d","code":{{"text":"y"}},"contained":[{}]}}]"#, c("c")))),
        ("contained bundle", basic(r#","contained":[{"resourceType":"Bundle","id":"b","type":"collection"}]"#)),
        ("contained patient us core", basic(r#","contained":[{"resourceType":"Patient","id":"p"}]"#)),
        ("contained observation bad status", basic(r#","contained":[{"resourceType":"Observation","id":"o","status":"nope","code":{"text":"x"}}]"#)),
        ("contained ext url ws", basic(r#","contained":[{"resourceType":"Basic","id":"d","code":{"text":"y"},"extension":[{"url":"a b","valueBoolean":true}]}]"#)),
        ("reference after contained id case", basic(&format!(r##","contained":[{}],"subject":{{"reference":"#C"}}"##, c("c")))),
        ("reference prefix of id", basic(&format!(r##","contained":[{}],"subject":{{"reference":"#c"}}"##, c("cc")))),
        ("reference in extension", basic(r##","extension":[{"url":"http://x/e","valueReference":{"reference":"#zz"}}]"##)),
        ("reference in twin", basic(r##","_created":{"extension":[{"url":"http://x/e","valueReference":{"reference":"#zz"}}]}"##)),
        ("urn reference outside a bundle", basic(r#","subject":{"reference":"urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7"}"#)),
        ("reference escaped hash", basic(&format!(r#","contained":[{}],"subject":{{"reference":"\u0023c"}}"#, c("c")))),
        ("contained id escaped", basic(r##","contained":[{"resourceType":"Basic","id":"\u0063","code":{"text":"y"}}],"subject":{"reference":"#c"}"##)),
        ("identifier reference", basic(r##","identifier":[{"assigner":{"reference":"#q"}}]"##)),
        ("list entry reference", r##"{"resourceType":"List","status":"current","mode":"working","entry":[{"item":{"reference":"#q"}}]}"##.to_string()),
    ];
    run(&cases);
}

fn bundle(kind: &str, entries: &[String]) -> String {
    format!(
        r#"{{"resourceType":"Bundle","type":"{kind}","entry":[{}]}}"#,
        entries.join(",")
    )
}

#[test]
fn bundles() {
    let u1 = "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7";
    let u2 = "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b8";
    let res = |r: &str| {
        format!(
            r#"{{"resourceType":"Basic","code":{{"text":"x"}},"subject":{{"reference":"{r}"}}}}"#
        )
    };
    let e = |full: &str, r: &str| format!(r#"{{"fullUrl":"{full}","resource":{}}}"#, res(r));
    let t = |full: &str, r: &str| {
        format!(
            r#"{{"fullUrl":"{full}","resource":{},"request":{{"method":"POST","url":"Basic"}}}}"#,
            res(r)
        )
    };
    let mut cases = vec![
        ("resolved", bundle("collection", &[e(u1, u2), e(u2, u1)])),
        ("unresolved", bundle("collection", &[e(u1, u2)])),
        ("duplicate fullUrl", bundle("collection", &[e(u1, "Patient/1"), e(u1, "Patient/1")])),
        ("uppercase uuid", bundle("collection", &[e(&u1.to_uppercase().replace("URN:UUID:", "urn:uuid:"), "Patient/1")])),
        ("bad fullUrl", bundle("collection", &[e("Patient/1", "Patient/1")])),
        ("ftp fullUrl", bundle("collection", &[e("ftp://x/y", "Patient/1")])),
        ("http empty", bundle("collection", &[e("http://", "Patient/1")])),
        ("oid", bundle("collection", &[e("urn:oid:1.2.3", "urn:oid:1.2.3")])),
        ("oid unresolved", bundle("collection", &[e("urn:oid:1.2.3", "urn:oid:1.2.4")])),
        ("oid bad", bundle("collection", &[e("urn:oid:1..2", "Patient/1")])),
        ("short uuid", bundle("collection", &[e("urn:uuid:53fefa32", "Patient/1")])),
        ("urn other", bundle("collection", &[e(u1, "urn:isbn:1")])),
        ("transaction", bundle("transaction", &[t(u1, u2), t(u2, u1)])),
        ("transaction no request", bundle("transaction", &[t(u1, u2), e(u2, u1)])),
        ("batch no request", bundle("batch", &[e(u1, "Patient/1")])),
        ("searchset no request", bundle("searchset", &[e(u1, "Patient/1")])),
        ("bad type", bundle("nope", &[e(u1, "Patient/1")])),
        ("bad method", bundle("transaction", &[t(u1, "Patient/1").replace("POST", "post")])),
        ("GET without resource", bundle("transaction", &[r#"{"request":{"method":"GET","url":"Basic"}}"#.to_string()])),
        ("entry without resource", bundle("collection", &[format!(r#"{{"fullUrl":"{u1}"}}"#)])),
        ("entry resource bundle", bundle("collection", &[format!(r#"{{"fullUrl":"{u1}","resource":{}}}"#, bundle("collection", &[e(u2, "Patient/1")]))])),
        ("entry resource bad id", bundle("collection", &[e(u1, "Patient/1").replace(r#""resourceType":"Basic""#, r#""resourceType":"Basic","id":"a b""#)])),
        ("entry resource not first", bundle("collection", &[format!(r#"{{"fullUrl":"{u1}","resource":{{"code":{{"text":"x"}},"resourceType":"Basic"}}}}"#)])),
        ("entry us core", bundle("collection", &[format!(r#"{{"fullUrl":"{u1}","resource":{{"resourceType":"Patient","gender":"male"}}}}"#)])),
        ("entry hash ref to other entry contained", bundle("collection", &[
            format!(r#"{{"fullUrl":"{u1}","resource":{{"resourceType":"Basic","code":{{"text":"x"}},"contained":[{{"resourceType":"Basic","id":"c","code":{{"text":"x"}}}}]}}}}"#),
            e(u2, "#c"),
        ])),
        ("entry contained urn ref", bundle("collection", &[format!(r#"{{"fullUrl":"{u1}","resource":{{"resourceType":"Basic","id":"b","code":{{"text":"x"}},"contained":[{}]}}}}"#, res(u2).replace(r#""resourceType":"Basic""#, r#""resourceType":"Basic","id":"c""#))])),
        ("urn ref outside the resource", format!(r#"{{"resourceType":"Bundle","type":"collection","link":[{{"relation":"self","url":"{u2}"}}],"entry":[{}]}}"#, e(u1, "Patient/1"))),
        ("hash ref in bundle", format!(r##"{{"resourceType":"Bundle","type":"collection","signature":[{{"type":[{{"code":"x"}}],"when":"2020-01-02T10:00:00Z","who":{{"reference":"#c"}}}}],"entry":[{}]}}"##, e(u1, "Patient/1"))),
        ("entry response outcome", bundle("transaction-response", &[format!(r#"{{"fullUrl":"{u1}","resource":{},"response":{{"status":"200","outcome":{{"resourceType":"OperationOutcome","issue":[{{"severity":"nope","code":"invalid"}}]}}}}}}"#, res("Patient/1"))])),
        ("bundle without entry", r#"{"resourceType":"Bundle","type":"transaction"}"#.to_string()),
        ("bundle type missing", r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Basic","code":{"text":"x"}}}]}"#.to_string()),
        ("fullUrl after resource", bundle("collection", &[format!(r#"{{"resource":{},"fullUrl":"{u2}"}}"#, res(u2))])),
        ("type after entry", format!(r#"{{"resourceType":"Bundle","entry":[{}],"type":"transaction"}}"#, e(u1, "Patient/1"))),
        ("resourceType last", format!(r#"{{"type":"transaction","entry":[{}],"resourceType":"Bundle"}}"#, e(u1, "Patient/1"))),
    ];
    // Entries in many shapes.
    let many: Vec<String> = (0..50)
        .map(|i| {
            e(
                &format!("http://x/Basic/{i}"),
                &format!("http://x/Basic/{}", 49 - i),
            )
        })
        .collect();
    cases.push(("many", bundle("collection", &many)));
    run(&cases);
}

#[test]
fn bindings_and_us_core() {
    let cs = |codings: &str| {
        format!(
            r#"{{"resourceType":"Condition","subject":{{"reference":"Patient/1"}},"category":[{{"text":"x"}}],"code":{{"text":"x"}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"onsetDateTime":"2020","recordedDate":"2020","clinicalStatus":{{{codings}}}}}"#
        )
    };
    let sys = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    let mut cases = vec![
        (
            "cc ok",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active"}}]"#
            )),
        ),
        (
            "cc bad code",
            cs(&format!(r#""coding":[{{"system":"{sys}","code":"nope"}}]"#)),
        ),
        (
            "cc two good",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active"}},{{"system":"{sys}","code":"resolved"}}]"#
            )),
        ),
        (
            "cc good then bad",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active"}},{{"system":"{sys}","code":"nope"}}]"#
            )),
        ),
        (
            "cc bad then good",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"nope"}},{{"system":"{sys}","code":"active"}}]"#
            )),
        ),
        (
            "cc other system",
            cs(r#""coding":[{"system":"http://x","code":"active"}]"#),
        ),
        (
            "cc other system and good",
            cs(&format!(
                r#""coding":[{{"system":"http://x","code":"nope"}},{{"system":"{sys}","code":"active"}}]"#
            )),
        ),
        ("cc no system", cs(r#""coding":[{"code":"active"}]"#)),
        (
            "cc no system and good",
            cs(&format!(
                r#""coding":[{{"code":"nope"}},{{"system":"{sys}","code":"active"}}]"#
            )),
        ),
        (
            "cc system no code",
            cs(&format!(r#""coding":[{{"system":"{sys}"}}]"#)),
        ),
        (
            "cc system no code and good",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active"}},{{"system":"{sys}","display":"x"}}]"#
            )),
        ),
        ("cc text only", cs(r#""text":"active""#)),
        (
            "cc system trailing slash",
            cs(&format!(
                r#""coding":[{{"system":"{sys}/","code":"active"}}]"#
            )),
        ),
        (
            "cc code twin",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active","_code":{{"id":"x"}}}}]"#
            )),
        ),
        (
            "cc code escaped",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"\u0061ctive"}}]"#
            )),
        ),
        (
            "cc system escaped",
            cs(&format!(
                r#""coding":[{{"system":"{}","code":"active"}}]"#,
                sys.replace('/', "\\/")
            )),
        ),
        (
            "cc coding extension",
            cs(&format!(
                r#""coding":[{{"extension":[{{"url":"http://x/e","valueString":"}}]"}}],"system":"{sys}","code":"active"}}]"#
            )),
        ),
        (
            "cc display with code text",
            cs(&format!(
                r#""coding":[{{"display":"\"code\":\"nope\"","system":"{sys}","code":"active"}}]"#
            )),
        ),
        (
            "cc code before system",
            cs(&format!(
                r#""coding":[{{"code":"active","system":"{sys}"}}]"#
            )),
        ),
        (
            "cc user selected",
            cs(&format!(
                r#""coding":[{{"system":"{sys}","code":"active","userSelected":true,"version":"1"}}]"#
            )),
        ),
    ];
    let consent = |prov: &str| {
        format!(
            r#"{{"resourceType":"Consent","status":"active","scope":{{"text":"x"}},"category":[{{"text":"x"}}],"provision":{prov}}}"#
        )
    };
    cases.extend([
        ("provision ok", consent(r#"{"type":"permit","provision":[{"type":"deny","provision":[{"type":"permit"}]}]}"#)),
        ("provision deep bad", consent(r#"{"type":"permit","provision":[{"type":"deny","provision":[{"type":"allow"}]}]}"#)),
        ("provision nested bad", consent(r#"{"type":"permit","provision":[{"type":"maybe"}]}"#)),
        ("provision second bad", consent(r#"{"provision":[{"type":"deny"},{"type":"maybe"}]}"#)),
        ("consent bad status", consent(r#"{"type":"permit"}"#).replace(r#""status":"active""#, r#""status":"Active""#)),
        ("audit action", r#"{"resourceType":"AuditEvent","type":{"code":"x"},"action":"X","recorded":"2020-01-02T10:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"reference":"Device/1"}}}"#.to_string()),
        ("audit outcome", r#"{"resourceType":"AuditEvent","type":{"code":"x"},"outcome":"1","recorded":"2020-01-02T10:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"reference":"Device/1"}}}"#.to_string()),
        ("oo severity", r#"{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"invalid"},{"severity":"bad","code":"invalid"}]}"#.to_string()),
        ("oo code", r#"{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"nope"}]}"#.to_string()),
        ("patient gender", r#"{"resourceType":"Patient","gender":"Male"}"#.to_string()),
        ("patient gender ws", r#"{"resourceType":"Patient","gender":"male "}"#.to_string()),
        ("us core patient", r#"{"resourceType":"Patient","identifier":[{"value":"1"}],"name":[{"family":"x"}],"gender":"male","birthDate":"2000"}"#.to_string()),
        ("us core patient no birthDate", r#"{"resourceType":"Patient","identifier":[{"value":"1"}],"name":[{"family":"x"}],"gender":"male"}"#.to_string()),
        ("us core patient birthDate twin", r#"{"resourceType":"Patient","identifier":[{"value":"1"}],"name":[{"family":"x"}],"gender":"male","_birthDate":{"extension":[{"url":"http://x/e","valueCode":"unknown"}]}}"#.to_string()),
        ("us core obs no effective", obs("").replace(r#","effectiveDateTime":"2026-01-02T08:00:00Z""#, "")),
        ("us core obs effective period", obs("").replace(r#""effectiveDateTime":"2026-01-02T08:00:00Z""#, r#""effectivePeriod":{"start":"2020"}"#)),
        ("us core obs effective twin", obs("").replace(r#""effectiveDateTime":"2026-01-02T08:00:00Z""#, r#""_effectiveDateTime":{"extension":[{"url":"http://x/e","valueCode":"unknown"}]}"#)),
        ("us core obs no subject", obs("").replace(r#","subject":{"reference":"Patient/p1"}"#, "")),
        ("us core practitioner", r#"{"resourceType":"Practitioner","identifier":[{"value":"1"}],"name":[{"family":"x"}]}"#.to_string()),
        ("us core practitioner no name", r#"{"resourceType":"Practitioner","identifier":[{"value":"1"}]}"#.to_string()),
        ("us core procedure", r#"{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/1"},"code":{"text":"x"},"performedString":"x"}"#.to_string()),
        ("us core procedure no performed", r#"{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/1"},"code":{"text":"x"}}"#.to_string()),
        ("us core immunization", r#"{"resourceType":"Immunization","status":"completed","vaccineCode":{"text":"x"},"patient":{"reference":"Patient/1"},"occurrenceString":"x","primarySource":true}"#.to_string()),
        ("us core medreq", r#"{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"authoredOn":"2020","requester":{"reference":"Practitioner/1"}}"#.to_string()),
        ("us core encounter", r#"{"resourceType":"Encounter","status":"finished","class":{"code":"x"},"type":[{"text":"x"}],"subject":{"reference":"Patient/1"},"period":{"start":"2020"}}"#.to_string()),
        ("us core diag", r#"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"x"},"category":[{"text":"x"}],"subject":{"reference":"Patient/1"},"effectiveDateTime":"2020","issued":"2020-01-02T10:00:00Z"}"#.to_string()),
        ("us core allergy", r#"{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"},"code":{"text":"x"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification","code":"confirmed"}]}}"#.to_string()),
    ]);
    run(&cases);
}

#[test]
fn extension_urls() {
    let mut cases = Vec::new();
    for url in [
        "http://x/e",
        "a b",
        "a\\tb",
        "a\\u0000b",
        "a\u{a0}b",
        "a\u{85}b",
        "é",
        "a\u{200b}b",
        "\u{7f}",
        "",
        "http://x/\\u00e9",
    ] {
        cases.push((
            "extension",
            basic(&format!(
                r#","extension":[{{"url":"{url}","valueBoolean":true}}]"#
            )),
        ));
        cases.push((
            "modifierExtension",
            basic(&format!(
                r#","modifierExtension":[{{"url":"{url}","valueBoolean":true}}]"#
            )),
        ));
        cases.push(("nested", basic(&format!(r#","extension":[{{"url":"http://x/e","extension":[{{"url":"{url}","valueBoolean":true}}]}}]"#))));
        cases.push((
            "in datatype",
            basic(&format!(
                r#","code":{{"text":"x","extension":[{{"url":"{url}","valueBoolean":true}}]}}"#
            ))
            .replacen(r#","code":{"text":"x"}"#, "", 1),
        ));
    }
    cases.push(("no url", basic(r#","extension":[{"valueBoolean":true}]"#)));
    cases.push(("no value", basic(r#","extension":[{"url":"http://x/e"}]"#)));
    cases.push((
        "url number",
        basic(r#","extension":[{"url":1,"valueBoolean":true}]"#),
    ));
    cases.push((
        "two values",
        basic(r#","extension":[{"url":"http://x/e","valueBoolean":true,"valueString":"x"}]"#),
    ));
    run(&cases);
}

#[test]
fn size_limit() {
    let b = basic("");
    for pad in [
        MAX_RESOURCE_BYTES - b.len(),
        MAX_RESOURCE_BYTES - b.len() + 1,
    ] {
        let doc = format!("{b}{}", " ".repeat(pad));
        let clean = sound(doc.as_bytes(), "padded");
        assert_eq!(clean[0], doc.len() <= MAX_RESOURCE_BYTES, "{}", doc.len());
    }
}

/// Time on the worst inputs stays linear: a document eight times as long takes well under the
/// 64 times a quadratic step would. A complexity check, not a speed figure (those are the
/// foundation bench's): generous bounds, and the best of five runs of each size, so a busy
/// shared CI machine inflates neither side.
#[test]
fn worst_cases_take_linear_time() {
    fn time(doc: &[u8]) -> Duration {
        let options = Options::new(FhirProfile::BaseR4);
        (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(fast_path_is_clean(doc, &options));
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    }
    let u = |i: usize| format!("urn:uuid:00000000-0000-0000-0000-{i:012}");
    type Shape = Box<dyn Fn(usize) -> String>;
    let shapes: Vec<(&str, Shape)> = vec![
        (
            "long string",
            Box::new(|n| {
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueString":"{}"}}]"#,
                    "a".repeat(n)
                ))
            }),
        ),
        (
            "many escapes",
            Box::new(|n| {
                basic(&format!(
                    r#","extension":[{{"url":"http://x/e","valueString":"{}"}}]"#,
                    "\\n".repeat(n / 2)
                ))
            }),
        ),
        (
            "many contained refs",
            Box::new(|n| {
                let k = n / 64;
                let cont: Vec<String> = (0..k)
                    .map(|i| {
                        format!(r#"{{"resourceType":"Basic","id":"c{i}","code":{{"text":"y"}}}}"#)
                    })
                    .collect();
                let refs: Vec<String> = (0..k)
                    .map(|i| {
                        format!(
                            r##"{{"url":"http://x/e","valueReference":{{"reference":"#c{i}"}}}}"##
                        )
                    })
                    .collect();
                basic(&format!(
                    r#","contained":[{}],"extension":[{}]"#,
                    cont.join(","),
                    refs.join(",")
                ))
            }),
        ),
        (
            "many entries",
            Box::new(move |n| {
                let k = n / 128;
                let es: Vec<String> = (0..k).map(|i| format!(r#"{{"fullUrl":"{}","resource":{{"resourceType":"Basic","code":{{"text":"y"}},"subject":{{"reference":"{}"}}}}}}"#, u(i), u(k - 1 - i))).collect();
                bundle("collection", &es)
            }),
        ),
        (
            "resourceType last everywhere",
            Box::new(move |n| {
                let k = n / 160;
                let es: Vec<String> = (0..k).map(|i| format!(r#"{{"resource":{{"code":{{"text":"y"}},"contained":[{{"id":"c","code":{{"text":"y"}},"resourceType":"Basic"}}],"resourceType":"Basic"}},"fullUrl":"{}"}}"#, u(i))).collect();
                format!(
                    r#"{{"type":"collection","entry":[{}],"resourceType":"Bundle"}}"#,
                    es.join(",")
                )
            }),
        ),
        (
            "deep arrays",
            Box::new(|n| {
                basic(&format!(
                    r#","created":{}1{}"#,
                    "[".repeat(n / 2),
                    "]".repeat(n / 2)
                ))
            }),
        ),
        (
            "deep before resourceType",
            Box::new(|n| {
                format!(
                    r#"{{"created":{}1{},"resourceType":"Basic"}}"#,
                    "[".repeat(n / 2),
                    "]".repeat(n / 2)
                )
            }),
        ),
        (
            "unterminated deep",
            Box::new(|n| format!(r#"{{"created":{}"#, "[{\"a\":".repeat(n / 6))),
        ),
        (
            "many keys before resourceType",
            Box::new(|n| {
                let keys: Vec<String> = (0..n / 12).map(|i| format!(r#""k{i:07}":1"#)).collect();
                format!(r#"{{{},"resourceType":"Basic"}}"#, keys.join(","))
            }),
        ),
    ];
    for (what, shape) in shapes {
        // Eight times the size: linear is about 8 times the time, quadratic 64.
        let small = shape(400_000);
        let big = shape(3_200_000);
        let (ts, tb) = (time(small.as_bytes()), time(big.as_bytes()));
        eprintln!("{what}: {ts:?} -> {tb:?}");
        assert!(
            tb < ts * 24 + Duration::from_millis(100),
            "{what}: {ts:?} -> {tb:?}"
        );
    }
}

/// Around the member limit (256): unknown keys, duplicates, and many `_element` twins.
#[test]
fn wide_objects() {
    let mut cases = Vec::new();
    for n in [255, 256, 257, 300] {
        let keys: String = (0..n).map(|i| format!(r#","k{i}":1"#)).collect();
        cases.push(("unknown keys", basic(&keys)));
        let dups: String = (0..n).map(|_| r#","created":"2020""#).collect();
        cases.push(("duplicates", basic(&dups)));
        let twins: String = (0..n)
            .map(|i| format!(r#","_k{i}":{{"id":"a"}}"#))
            .collect();
        cases.push(("twins", basic(&twins)));
        let list: String = (0..n)
            .map(|i| format!(r#"{{"system":"http://x","value":"{i}"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        cases.push(("long list", basic(&format!(r#","identifier":[{list}]"#))));
    }
    assert_eq!(run(&cases), 4, "only the long lists are clean");
}

/// Random root Bundles built from a small pool of parts, so that `fullUrl`s collide, `urn:`
/// and `#` references resolve or not, requests and resources come and go, and entry
/// resources carry contained resources with their own references.
#[test]
fn random_bundles() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let urls = [
        "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
        "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b8",
        "urn:oid:1.2.3",
        "http://x/Basic/1",
        "urn:uuid:53fefa32",
        "Basic/1",
    ];
    let refs = [
        urls[0],
        urls[1],
        urls[2],
        urls[3],
        "urn:oid:1.2.4",
        "#c",
        "#d",
        "#",
        "Patient/1",
    ];
    let kinds = [
        "collection",
        "transaction",
        "batch",
        "searchset",
        "document",
        "nope",
    ];
    let methods = ["POST", "PUT", "GET", "DELETE", "post"];
    let (mut clean, mut total) = (0, 0);
    let rounds: usize = std::env::var("MEDCHAIN_FHIR_RANDOM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    for _ in 0..rounds {
        let n = 1 + next(4);
        let entries: Vec<String> = (0..n)
            .map(|_| {
                let mut parts = Vec::new();
                if next(5) > 0 {
                    parts.push(format!(r#""fullUrl":"{}""#, urls[next(urls.len())]));
                }
                if next(5) > 0 {
                    let contained = match next(3) {
                        0 => String::new(),
                        1 => r##","contained":[{"resourceType":"Basic","id":"c","code":{"text":"y"}}]"##.to_string(),
                        _ => format!(
                            r#","contained":[{{"resourceType":"Basic","id":"c","code":{{"text":"y"}},"subject":{{"reference":"{}"}}}}]"#,
                            refs[next(refs.len())]
                        ),
                    };
                    let resource = format!(
                        r#"{{"resourceType":"Basic","code":{{"text":"x"}},"subject":{{"reference":"{}"}}{contained}}}"#,
                        refs[next(refs.len())]
                    );
                    parts.push(format!(r#""resource":{resource}"#));
                }
                if next(2) > 0 {
                    parts.push(format!(
                        r#""request":{{"method":"{}","url":"Basic"}}"#,
                        methods[next(methods.len())]
                    ));
                }
                if parts.is_empty() || next(7) == 0 {
                    parts.push(r#""search":{"mode":"match"}"#.into());
                }
                if next(4) == 0 {
                    parts.reverse();
                }
                format!("{{{}}}", parts.join(","))
            })
            .collect();
        let doc = bundle(kinds[next(kinds.len())], &entries);
        total += 1;
        if sound(doc.as_bytes(), "random bundle")[0] {
            clean += 1;
        }
    }
    assert!(clean > 100 && clean < total, "{clean} of {total}");
}
