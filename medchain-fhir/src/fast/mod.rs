//! The fast path: one pass over the raw bytes, no tree, no allocation per element, that can
//! only say [`Verdict::Clean`] — "the exact path (fhirkit, then [`crate::rules`]) would report
//! no issue at all" — or [`Verdict::Unsure`], after which [`crate::validate`] runs the exact
//! path unchanged. Reports never depend on it: a fast path that is too strict costs time, one
//! that is too lenient would be a defect, so it answers `Clean` only where it mirrors both
//! layers exactly and is `Unsure` everywhere else (`docs/fhir.md`).
//!
//! The structural tables ([`tables`]) are generated from fhirkit's own generated source by
//! `medchain-fhir/gen/fast_tables.py`, with fhirkit's feature gates: a resource type absent
//! from the build is `Unsure`. Primitive formats are fhirkit's own functions
//! ([`fhirkit::Kind::check`], [`fhirkit::primitive`]).
//!
//! `Unsure` by design (the exact path decides): `_element` twins, `fhir_comments`, escaped
//! keys, escapes in any string whose content a check reads (codes, ids, uris, dates,
//! references, `fullUrl`s, extension urls), a byte order mark, empty objects and arrays,
//! `null`s, resources anywhere but the root, `contained` (one level) and a root Bundle's
//! `entry.resource`, Bundles that are not the root, Bundle entries without a `resource`,
//! `ExampleScenario.instance.resourceType`, nesting past 62 levels, more than
//! [`MAX_MEMBERS`] members; and any issue. (A `resourceType` that is not a resource's first
//! member costs a skip of the members before it, which are then read as usual.)

#[rustfmt::skip]
mod tables;

use fhirkit::primitive::{is_decimal, is_integer};
use fhirkit::Kind;
use medchain_core::fhir::{is_r4_resource_type, MAX_RESOURCE_BYTES};
use medchain_core::genesis::FhirProfile;

use crate::rules::{is_fhir_id, is_full_url, Binding, BINDINGS, MAX_DEPTH, MAX_MEMBERS, US_CORE};

/// What the fast path proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The exact path would report no issue; the root resource type.
    Clean(&'static str),
    /// Not proven: run the exact path.
    Unsure,
}

/// One type fhirkit decodes (complex datatype, backbone element or resource).
pub(crate) struct TypeDef {
    /// fhirkit's Rust type name (the resource type for a resource).
    pub(crate) name: &'static str,
    /// A resource (its first member is `resourceType`).
    pub(crate) resource: bool,
    /// The slots fhirkit requires (`required`, `required_list(.., 1)`).
    pub(crate) required: u128,
    /// Its keys by [`key_hash`]: open addressing with linear probing over a power-of-two
    /// table; each bucket holds a position in `elems` plus one, or 0 when empty.
    pub(crate) index: &'static [u8],
    /// Its JSON keys, sorted by bytes; choice keys share their element's slot.
    pub(crate) elems: &'static [Elem],
}

/// One JSON key of a type.
pub(crate) struct Elem {
    pub(crate) key: &'static str,
    pub(crate) slot: u8,
    pub(crate) list: bool,
    pub(crate) shape: Shape,
}

/// What a key holds.
pub(crate) enum Shape {
    /// A plain non-empty string (`id` of elements and resources, `Extension.url`).
    Str,
    /// A primitive of this kind.
    Prim(Kind),
    /// A complex datatype or backbone element.
    Complex(&'static TypeDef),
    /// Any resource (`contained`, `Bundle.entry.resource`, ...).
    Resource,
}

/// The hash of [`TypeDef::index`] (the generator computes the same): FNV-1a (32 bits) of the
/// key's length (its low byte) and its first, middle and last bytes. Constant time; collisions
/// only lengthen a probe.
#[inline]
fn key_hash(key: &[u8]) -> u32 {
    let step = |h: u32, b: u8| (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    let h = step(0x811c_9dc5, key.len() as u8);
    match (key.first(), key.last()) {
        (Some(&first), Some(&last)) => step(step(step(h, first), key[key.len() / 2]), last),
        _ => h,
    }
}

/// Whether two keys are equal (short keys: no `memcmp` call).
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl TypeDef {
    #[inline]
    fn elem(&self, key: &[u8]) -> Option<&'static Elem> {
        let elems: &'static [Elem] = self.elems;
        let mask = self.index.len() - 1;
        let mut h = key_hash(key) as usize & mask;
        loop {
            let at = usize::from(self.index[h]);
            let e = elems.get(at.checked_sub(1)?)?;
            if same_key(e.key.as_bytes(), key) {
                return Some(e);
            }
            h = (h + 1) & mask;
        }
    }

    fn slot(&self, key: &str) -> Option<u8> {
        self.elem(key.as_bytes()).map(|e| e.slot)
    }
}

/// The type each binding of [`BINDINGS`] sits in, in its order (which is sorted by this type):
/// the binding's key is the last step of its path. Checked against the tables by a unit test.
const SITE_TYPES: [&str; BINDINGS.len()] = [
    "AllergyIntolerance",
    "AllergyIntolerance",
    "AuditEvent",
    "AuditEvent",
    "Bundle",
    "BundleEntryRequest",
    "Condition",
    "Condition",
    "Consent",
    "ConsentProvision",
    "DiagnosticReport",
    "Encounter",
    "Immunization",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "OperationOutcomeIssue",
    "OperationOutcomeIssue",
    "Patient",
    "Procedure",
];

/// A type name's length and first and last bytes: a cheap filter before comparing names.
const fn fingerprint(name: &[u8]) -> u32 {
    if name.is_empty() {
        return 0;
    }
    ((name.len() as u32) << 16) | ((name[0] as u32) << 8) | name[name.len() - 1] as u32
}

/// The types with a role of their own.
const SPECIAL_TYPES: [(&str, Special); 3] = [
    ("Bundle", Special::Bundle),
    ("BundleEntry", Special::BundleEntry),
    ("Extension", Special::Extension),
];

/// The [`fingerprint`]s of `names`, computed at compile time.
const fn fingerprints<const N: usize>(names: [&str; N]) -> [u32; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = fingerprint(names[i].as_bytes());
        i += 1;
    }
    out
}

/// The fingerprints of [`SITE_TYPES`] (distinct for distinct names: a unit test checks) and of
/// [`SPECIAL_TYPES`]: the hooks are looked up for every object, and most objects (codings,
/// references, quantities, ...) have none, which this finds without comparing a name.
const SITE_FINGERPRINTS: [u32; BINDINGS.len()] = fingerprints(SITE_TYPES);
const SPECIAL_FINGERPRINTS: [u32; SPECIAL_TYPES.len()] =
    fingerprints([SPECIAL_TYPES[0].0, SPECIAL_TYPES[1].0, SPECIAL_TYPES[2].0]);

/// The hooks of type `td`: its special role and the bindings checked in it.
#[inline]
fn hooks(td: &TypeDef) -> (Special, &'static [Binding]) {
    let fp = fingerprint(td.name.as_bytes());
    let special = SPECIAL_FINGERPRINTS
        .iter()
        .zip(SPECIAL_TYPES)
        .find(|(f, (name, _))| **f == fp && *name == td.name)
        .map_or(Special::None, |(_, (_, special))| special);
    // The sites of one type are adjacent (sorted); one name comparison confirms the first.
    let Some(lo) = SITE_FINGERPRINTS.iter().position(|f| *f == fp) else {
        return (special, &[]);
    };
    if SITE_TYPES[lo] != td.name {
        return (special, &[]);
    }
    let n = SITE_FINGERPRINTS[lo..]
        .iter()
        .take_while(|f| **f == fp)
        .count();
    (special, &BINDINGS[lo..lo + n])
}

/// Not proven clean.
struct Unsure;

type Res<T> = Result<T, Unsure>;

fn ensure(ok: bool) -> Res<()> {
    if ok {
        Ok(())
    } else {
        Err(Unsure)
    }
}

/// Where the resource being read sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    /// In `contained` of the root or of an entry resource.
    Contained,
    /// A root Bundle's `entry.resource`.
    Entry,
}

/// Types with a hook of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Bundle,
    BundleEntry,
    Extension,
}

struct Parser<'a> {
    /// The document, checked UTF-8 once: strings are sliced from it, never re-checked.
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    us_core: bool,
    root_bundle: bool,
    role: Role,
    /// `#id` references (without `#`) and contained ids of the resources being read.
    refs: Vec<&'a [u8]>,
    ids: Vec<&'a [u8]>,
    /// The root Bundle's valid `fullUrl`s and the `urn:` references of its entries.
    full_urls: Vec<&'a [u8]>,
    urn_refs: Vec<&'a [u8]>,
    bundle_type: &'a [u8],
    entry_without_request: bool,
}

/// The fast path's verdict on `bytes` validated against `profile` (the lenient flag does not
/// matter: a report without issues is the same either way).
pub(crate) fn check(bytes: &[u8], profile: FhirProfile) -> Verdict {
    if bytes.len() > MAX_RESOURCE_BYTES {
        return Verdict::Unsure;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Verdict::Unsure;
    };
    let mut p = Parser::new(text, bytes, profile == FhirProfile::UsCore);
    match p.document() {
        Ok(rt) => Verdict::Clean(rt),
        Err(Unsure) => Verdict::Unsure,
    }
}

impl<'a> Parser<'a> {
    /// A parser at the start of `b` (`text` is `b` checked as UTF-8; tests of the byte-level
    /// scanning pass bytes that need not be).
    fn new(text: &'a str, b: &'a [u8], us_core: bool) -> Self {
        Parser {
            text,
            b,
            pos: 0,
            us_core,
            root_bundle: false,
            role: Role::Root,
            refs: Vec::new(),
            ids: Vec::new(),
            full_urls: Vec::new(),
            urn_refs: Vec::new(),
            bundle_type: b"",
            entry_without_request: false,
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Res<()> {
        ensure(self.peek() == Some(c))?;
        self.pos += 1;
        Ok(())
    }

    fn document(&mut self) -> Res<&'static str> {
        // A byte order mark is fhirkit's to skip: Unsure (the first byte is not whitespace).
        self.ws();
        self.expect(b'{')?;
        let (td, first) = self.resource_type()?;
        ensure(is_r4_resource_type(td.name))?;
        self.root_bundle = td.name == "Bundle";
        self.resource_body(td, Role::Root, 0, first)?;
        if self.root_bundle {
            self.bundle_end()?;
        }
        self.ws();
        ensure(self.pos == self.b.len())?;
        Ok(td.name)
    }

    /// A JSON string at `pos`, as fhirkit's parser accepts it: its raw bytes between the
    /// quotes, and whether it has escapes.
    fn string(&mut self) -> Res<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.skip_plain_bytes();
            let c = *self.b.get(self.pos).ok_or(Unsure)?;
            match c {
                b'"' => {
                    let raw = &self.b[start..self.pos];
                    self.pos += 1;
                    return Ok((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek().ok_or(Unsure)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                ensure(self.b.get(self.pos..self.pos + 2) == Some(b"\\u"))?;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                ensure((0xDC00..0xE000).contains(&lo))?;
                            } else {
                                ensure(!(0xDC00..0xE000).contains(&hi))?;
                            }
                        }
                        _ => return Err(Unsure),
                    }
                }
                0..=0x1f => return Err(Unsure),
                _ => self.pos += 1,
            }
        }
    }

    /// Advances over string bytes that need no attention (not `"`, `\\` or a control
    /// character), eight at a time.
    #[inline]
    fn skip_plain_bytes(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.pos..self.pos + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            let x = u64::from_le_bytes(bytes);
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            // A zero byte in `v` (or, for `x`, a byte below 0x20) sets its high bit here;
            // bytes of 0x80 and above never do (`!x` clears their high bit). A borrow can flag
            // a byte above a flagged one, never below: the lowest flag is a byte to stop at.
            let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
            let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
            let flags = zero(quote) | zero(backslash) | control;
            if flags != 0 {
                self.pos += (flags.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        let h = self.b.get(self.pos..self.pos + 4).ok_or(Unsure)?;
        ensure(h.iter().all(u8::is_ascii_hexdigit))?;
        self.pos += 4;
        Ok(h.iter().fold(0, |acc, &d| {
            acc * 16 + char::from(d).to_digit(16).unwrap_or(0)
        }))
    }

    /// A JSON number as fhirkit's parser reads it (its text).
    fn number(&mut self) -> Res<&'a str> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while let Some(b'0'..=b'9') = p.peek() {
                p.pos += 1;
            }
            p.pos > s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            ensure(digits(self))?;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            ensure(digits(self))?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            ensure(digits(self))?;
        }
        // ASCII, in the text checked once.
        self.text.get(start..self.pos).ok_or(Unsure)
    }

    /// The text of `raw`, a string's bytes between its quotes that ends at `pos - 1`.
    fn text_of(&self, raw: &[u8]) -> Res<&'a str> {
        let end = self.pos - 1;
        self.text.get(end - raw.len()..end).ok_or(Unsure)
    }

    /// A plain (unescaped) string.
    fn plain(&mut self) -> Res<&'a [u8]> {
        let (raw, escaped) = self.string()?;
        ensure(!escaped)?;
        Ok(raw)
    }

    /// After a resource's `{`: the value of its first `resourceType` member, a known type
    /// (what fhirkit's dispatch reads). When it is not the first member, the members before it
    /// are skipped here and read again by [`Self::members`]; the position is left after the
    /// `resourceType` member when it is first, at the first member otherwise.
    fn resource_type(&mut self) -> Res<(&'static TypeDef, bool)> {
        self.ws();
        let start = self.pos;
        let mut first = true;
        loop {
            let key = self.plain()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            if key == b"resourceType" {
                let td = tables::resource(self.plain()?).ok_or(Unsure)?;
                if !first {
                    self.pos = start;
                }
                return Ok((td, first));
            }
            first = false;
            self.skip_value()?;
            self.ws();
            self.expect(b',')?;
            self.ws();
        }
    }

    /// Skips one value without checking it (it is read again and checked later). Iterative:
    /// no recursion on untrusted nesting.
    fn skip_value(&mut self) -> Res<()> {
        if !matches!(self.peek(), Some(b'"' | b'{' | b'[')) {
            // A number or literal: up to what ends it.
            while !matches!(
                self.peek().ok_or(Unsure)?,
                b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
            ) {
                self.pos += 1;
            }
            return Ok(());
        }
        let mut depth = 0usize;
        loop {
            match self.peek().ok_or(Unsure)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or(Unsure)?;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// The members after `resourceType` of a resource `td` read in `role`, and the checks of
    /// `rules` for it (ids, contained references, US Core).
    fn resource_body(
        &mut self,
        td: &'static TypeDef,
        role: Role,
        level: usize,
        after_first: bool,
    ) -> Res<()> {
        let outer = self.role;
        let scope = (self.refs.len(), self.ids.len());
        self.role = role;
        let seen = self.members(td, level, after_first)?;
        self.role = outer;
        if role != Role::Contained {
            // `#id` references resolve to this resource's contained ids (sorted, searched: a
            // resource may have thousands of each, and a linear search per reference would be
            // quadratic).
            let ids = &mut self.ids[scope.1..];
            ids.sort_unstable();
            let (refs, ids) = (&self.refs[scope.0..], &self.ids[scope.1..]);
            ensure(refs.iter().all(|r| ids.binary_search(r).is_ok()))?;
            self.refs.truncate(scope.0);
            self.ids.truncate(scope.1);
            if self.us_core {
                us_core(td, seen)?;
            }
        }
        Ok(())
    }

    /// A resource in element `key` of `parent`.
    fn resource(&mut self, key: &str, parent: &TypeDef, level: usize) -> Res<()> {
        let role = if key == "contained" && self.role != Role::Contained {
            Role::Contained
        } else if key == "resource"
            && parent.name == "BundleEntry"
            && self.root_bundle
            && self.role == Role::Root
        {
            Role::Entry
        } else {
            return Err(Unsure);
        };
        ensure(level < MAX_DEPTH - 2)?;
        self.expect(b'{')?;
        let (td, first) = self.resource_type()?;
        ensure(td.name != "Bundle")?;
        self.resource_body(td, role, level, first)?;
        Ok(())
    }

    /// The members of an object of type `td` opened at nesting `level` (`{` read; with
    /// `after_first`, a resource's `resourceType` too; a resource's `resourceType` that is not
    /// first is met here again, already checked). Returns the slots seen.
    fn members(&mut self, td: &'static TypeDef, level: usize, after_first: bool) -> Res<u128> {
        ensure(level < MAX_DEPTH - 2)?;
        let (special, sites) = match hooks(td) {
            (Special::Bundle, s) if !(self.root_bundle && level == 0) => (Special::None, s),
            h => h,
        };
        let mut seen: u128 = 0;
        let mut count = usize::from(after_first);
        // A resource's `resourceType`, when it is not the first member.
        let mut type_pending = td.resource && !after_first;
        self.ws();
        if after_first {
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return self.finish(td, seen, special);
                }
                _ => return Err(Unsure),
            }
        } else if !td.resource {
            // `{}`: nothing for fhirkit to report, but nothing worth a fast answer.
            ensure(self.peek() != Some(b'}'))?;
        }
        loop {
            self.ws();
            let key = self.plain()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            if type_pending && key == b"resourceType" {
                type_pending = false;
                count += 1;
                ensure(self.plain()? == td.name.as_bytes())?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        continue;
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        return self.finish(td, seen, special);
                    }
                    _ => return Err(Unsure),
                }
            }
            let e = td.elem(key).ok_or(Unsure)?;
            ensure(e.key != "resourceType")?;
            let bit = 1u128 << e.slot;
            ensure(seen & bit == 0)?;
            seen |= bit;
            count += 1;
            ensure(count <= MAX_MEMBERS)?;
            let start = self.pos;
            self.value(e, td, special, level)?;
            if let Some(b) = sites.iter().find(|b| b.path.last() == Some(&e.key)) {
                ensure(!e.list)?;
                check_binding(b, &self.b[start..self.pos])?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    ensure(!type_pending)?;
                    return self.finish(td, seen, special);
                }
                _ => return Err(Unsure),
            }
        }
    }

    fn finish(&mut self, td: &TypeDef, seen: u128, special: Special) -> Res<u128> {
        ensure(seen & td.required == td.required)?;
        if special == Special::BundleEntry {
            let has = |k| td.slot(k).is_some_and(|s| seen & (1u128 << s) != 0);
            // An entry without a resource may be fine (GET, DELETE, ...): Unsure.
            ensure(has("resource"))?;
            if !has("request") {
                self.entry_without_request = true;
            }
        }
        Ok(seen)
    }

    /// The value of element `e` of `parent` (at nesting `level` of `parent`'s object).
    fn value(&mut self, e: &Elem, parent: &TypeDef, special: Special, level: usize) -> Res<()> {
        if !e.list {
            return self.item(e, parent, special, level + 1);
        }
        ensure(level + 1 < MAX_DEPTH - 2)?;
        self.expect(b'[')?;
        self.ws();
        ensure(self.peek() != Some(b']'))?;
        loop {
            self.ws();
            self.item(e, parent, special, level + 2)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// One value of element `e`; a container it opens is at nesting `level`.
    fn item(&mut self, e: &Elem, parent: &TypeDef, special: Special, level: usize) -> Res<()> {
        match e.shape {
            Shape::Complex(td) => {
                self.expect(b'{')?;
                self.members(td, level, false).map(|_| ())
            }
            Shape::Resource => self.resource(e.key, parent, level),
            Shape::Str => {
                let (raw, escaped) = self.string()?;
                ensure(!raw.is_empty())?;
                if parent.resource && e.key == "id" {
                    // rules: a resource id is a FHIR id.
                    ensure(!escaped && is_fhir_id(self.text_of(raw)?))?;
                    if self.role == Role::Contained {
                        self.ids.push(raw);
                    }
                } else if special == Special::Extension && e.key == "url" {
                    // rules: no whitespace or control character in an extension url.
                    ensure(!escaped && raw.iter().all(|c| (0x21..0x7f).contains(c)))?;
                }
                Ok(())
            }
            Shape::Prim(kind) => self.primitive(kind, e.key, special),
        }
    }

    fn primitive(&mut self, kind: Kind, key: &str, special: Special) -> Res<()> {
        match kind {
            Kind::Boolean => {
                let rest = &self.b[self.pos..];
                if rest.starts_with(b"true") {
                    self.pos += 4;
                } else if rest.starts_with(b"false") {
                    self.pos += 5;
                } else {
                    return Err(Unsure);
                }
            }
            Kind::Integer | Kind::PositiveInt | Kind::UnsignedInt => {
                let n = self.number()?;
                ensure(is_integer(n))?;
                let x: i32 = n.parse().map_err(|_| Unsure)?;
                ensure(match kind {
                    Kind::PositiveInt => x >= 1,
                    Kind::UnsignedInt => x >= 0,
                    _ => true,
                })?;
            }
            Kind::Decimal => {
                ensure(is_decimal(self.number()?))?;
            }
            _ => {
                let (raw, escaped) = self.string()?;
                if matches!(kind, Kind::String | Kind::Markdown | Kind::Xhtml) && key != "reference"
                {
                    // Free text: its check is "not empty" (an escaped string never is); no rule
                    // reads it.
                    return ensure(!raw.is_empty());
                }
                // Escapes in a string a check or a rule reads are the exact path's.
                ensure(!escaped)?;
                let s = self.text_of(raw)?;
                if matches!(kind, Kind::Code | Kind::Uri | Kind::Url | Kind::Canonical)
                    && raw.iter().all(|c| (0x21..0x7f).contains(c))
                {
                    // No whitespace at all: fhirkit's check is "not empty" (the rest below).
                    ensure(!raw.is_empty())?;
                } else {
                    ensure(kind.check(s).is_ok())?;
                }
                if key == "reference" {
                    self.reference(raw);
                } else if special == Special::BundleEntry && key == "fullUrl" {
                    ensure(is_full_url(s))?;
                    self.full_urls.push(raw);
                } else if special == Special::Bundle && key == "type" {
                    self.bundle_type = raw;
                }
            }
        }
        Ok(())
    }

    /// Inside a root Bundle's `entry.resource` or what it contains (its `urn:` references are
    /// the Bundle's to resolve): the only resources below a root Bundle are its entries' (a
    /// Bundle anywhere else is unsure).
    fn in_entry(&self) -> bool {
        self.root_bundle && self.role != Role::Root
    }

    fn reference(&mut self, raw: &'a [u8]) {
        if let Some(id) = raw.strip_prefix(b"#") {
            if !id.is_empty() {
                self.refs.push(id);
            }
        } else if self.in_entry() && (raw.starts_with(b"urn:uuid:") || raw.starts_with(b"urn:oid:"))
        {
            self.urn_refs.push(raw);
        }
    }

    /// The root Bundle's rules once all of it is read.
    fn bundle_end(&mut self) -> Res<()> {
        if matches!(self.bundle_type, b"transaction" | b"batch") {
            ensure(!self.entry_without_request)?;
        }
        self.full_urls.sort_unstable();
        ensure(self.full_urls.windows(2).all(|w| w[0] != w[1]))?;
        let urls = &self.full_urls;
        ensure(self.urn_refs.iter().all(|r| urls.binary_search(r).is_ok()))
    }
}

/// US Core for a (not contained) resource `td` whose members filled `seen`: every required
/// and must-support element present.
fn us_core(td: &TypeDef, seen: u128) -> Res<()> {
    for rule in US_CORE.iter().filter(|r| r.resource == td.name) {
        let present = match rule.element.strip_suffix("[x]") {
            Some(base) => td.elems.iter().any(|e| {
                e.key
                    .strip_prefix(base)
                    .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
                    && seen & (1u128 << e.slot) != 0
            }),
            None => td
                .slot(rule.element)
                .is_some_and(|s| seen & (1u128 << s) != 0),
        };
        ensure(present)?;
    }
    Ok(())
}

/// The required binding `b` on one structurally valid value (its JSON text).
fn check_binding(b: &Binding, text: &[u8]) -> Res<()> {
    let mut p = Scan { b: text, pos: 0 };
    match b.system {
        None => {
            let code = p.plain()?;
            ensure(b.codes.iter().any(|c| c.as_bytes() == code))
        }
        Some(system) => {
            // A CodeableConcept: at least one coding from `system`, each with a listed code.
            let mut from_system = 0;
            let mut ok = true;
            p.object(|p, key| {
                if key != b"coding" {
                    return p.skip();
                }
                p.array(|p| {
                    let (mut sys, mut code) = (None, None);
                    p.object(|p, k| {
                        match k {
                            b"system" => sys = Some(p.plain()?),
                            b"code" => code = Some(p.plain()?),
                            _ => p.skip()?,
                        }
                        Ok(())
                    })?;
                    if sys == Some(system.as_bytes()) {
                        from_system += 1;
                        ok &= code.is_some_and(|c| b.codes.iter().any(|x| x.as_bytes() == c));
                    }
                    Ok(())
                })
            })?;
            ensure(ok && from_system > 0)
        }
    }
}

/// A re-read of a small value the parser has already found clean (no limits needed: its
/// nesting is bounded by the parser's).
struct Scan<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn raw_string(&mut self) -> Res<(&'a [u8], bool)> {
        ensure(self.eat(b'"'))?;
        let start = self.pos;
        let mut escaped = false;
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b'"' => {
                    let raw = &self.b[start..self.pos];
                    self.pos += 1;
                    return Ok((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        Err(Unsure)
    }

    fn plain(&mut self) -> Res<&'a [u8]> {
        let (raw, escaped) = self.raw_string()?;
        ensure(!escaped)?;
        Ok(raw)
    }

    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Res<()>) -> Res<()> {
        ensure(self.eat(b'{'))?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let key = self.plain()?;
            ensure(self.eat(b':'))?;
            self.ws();
            f(self, key)?;
            if self.eat(b'}') {
                return Ok(());
            }
            ensure(self.eat(b','))?;
        }
    }

    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Res<()>) -> Res<()> {
        ensure(self.eat(b'['))?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            f(self)?;
            if self.eat(b']') {
                return Ok(());
            }
            ensure(self.eat(b','))?;
        }
    }

    fn skip(&mut self) -> Res<()> {
        self.ws();
        match self.b.get(self.pos).copied().ok_or(Unsure)? {
            b'{' => self.object(|p, _| p.skip()),
            b'[' => self.array(Self::skip),
            b'"' => self.raw_string().map(|_| ()),
            _ => {
                while let Some(c) = self.b.get(self.pos) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A build without a resource group fails closed: its resource types are never clean.
#[cfg(all(test, feature = "base", not(feature = "clinical")))]
mod reduced {
    use super::*;

    #[test]
    fn a_type_absent_from_the_build_is_unsure() {
        let obs = br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#;
        assert_eq!(check(obs, FhirProfile::BaseR4), Verdict::Unsure);
        let bundle = br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}}}]}"#;
        assert_eq!(check(bundle, FhirProfile::BaseR4), Verdict::Unsure);
        let patient = br#"{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"}}]}"#;
        assert_eq!(check(patient, FhirProfile::BaseR4), Verdict::Unsure);
        let ok = br#"{"resourceType":"Patient","gender":"male"}"#;
        assert_eq!(check(ok, FhirProfile::BaseR4), Verdict::Clean("Patient"));
    }
}
