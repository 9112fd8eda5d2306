//! What a coded value may be: the code systems research may keep (each with the syntax or the
//! exact list of its codes), the units of measure, US states, countries, and the year of a date.
//!
//! Everything here answers "is this value one we foresaw?"; a value that is not is dropped by
//! the caller. Free-text-shaped values (a name typed into a `code`, a phone number in a unit)
//! fail these checks because they are neither in a list nor of a terminology's syntax.

/// UCUM, the system of a unit code.
pub(super) const UCUM: &str = "http://unitsofmeasure.org";

/// How the codes of one code system are recognised.
#[derive(Clone, Copy)]
enum Rule {
    /// LOINC: `n-c` with the mod-10 check digit, or a LOINC answer, part or list code
    /// (`LA6576-8`, `LP…`, `LL…`: digits, a dash and one digit).
    Loinc,
    /// SNOMED CT concept id: 6 to 18 digits, concept partition, Verhoeff check digit.
    Snomed,
    /// ICD-10 and ICD-10-CM: `A00`, `E11.9`, `S72.001A`.
    Icd10,
    /// ICD-9-CM diagnoses: `250.00`, `V45.81`, `E849.0`.
    Icd9,
    /// ICD-10-PCS: 7 characters from its alphabet (digits and letters but `I` and `O`).
    Icd10Pcs,
    /// Digits only, at most this many, no leading zero (RxNorm, CVX).
    Digits(usize),
    /// NDC in one of its hyphenated forms (4-4-2, 5-3-2, 5-4-1, 5-4-2).
    Ndc,
    /// CPT: four digits and a digit or `F`, `T`, `U`.
    Cpt,
    /// HCPCS level II: a letter `A`–`V` and four digits.
    Hcpcs,
    /// NUCC provider taxonomy: `207Q00000X`.
    Nucc,
    /// CDC race and ethnicity: `2106-3` with the mod-10 check digit.
    CdcRace,
    /// BCP 47 language tag of the simple forms `en`, `en-US`, `es-419`.
    Language,
    /// A UCUM unit from [`UNITS`].
    Ucum,
    /// Exactly these codes.
    Set(&'static [&'static str]),
}

/// The code systems research may keep, with how their codes are recognised. A coding in any
/// other system (a local code system, an identifier system) is dropped.
const SYSTEMS: &[(&str, Rule)] = &[
    ("http://loinc.org", Rule::Loinc),
    ("http://snomed.info/sct", Rule::Snomed),
    ("http://hl7.org/fhir/sid/icd-10", Rule::Icd10),
    ("http://hl7.org/fhir/sid/icd-10-cm", Rule::Icd10),
    ("http://hl7.org/fhir/sid/icd-9-cm", Rule::Icd9),
    ("http://www.cms.gov/Medicare/Coding/ICD10", Rule::Icd10Pcs),
    (
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        Rule::Digits(8),
    ),
    ("http://hl7.org/fhir/sid/cvx", Rule::Digits(3)),
    ("http://hl7.org/fhir/sid/ndc", Rule::Ndc),
    ("http://www.ama-assn.org/go/cpt", Rule::Cpt),
    ("urn:oid:2.16.840.1.113883.6.285", Rule::Hcpcs),
    ("http://nucc.org/provider-taxonomy", Rule::Nucc),
    ("urn:oid:2.16.840.1.113883.6.238", Rule::CdcRace),
    ("urn:ietf:bcp:47", Rule::Language),
    (UCUM, Rule::Ucum),
    (
        "http://hl7.org/fhir/administrative-gender",
        Rule::Set(&["male", "female", "other", "unknown"]),
    ),
    (
        "http://dicom.nema.org/resources/ontology/DCM",
        Rule::Set(&[
            "AR", "AU", "BDUS", "BI", "BMD", "CR", "CT", "DG", "DOC", "DX", "ECG", "EPS", "ES",
            "GM", "HC", "HD", "IO", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG", "MR", "NM",
            "OAM", "OCT", "OP", "OPM", "OPT", "OPV", "OSS", "OT", "PLAN", "PR", "PT", "PX", "REG",
            "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTPLAN", "RTRECORD", "RTSTRUCT", "RWV",
            "SEG", "SM", "SMR", "SR", "SRF", "STAIN", "TG", "US", "VA", "XA", "XC",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/observation-category",
        Rule::Set(&[
            "social-history",
            "vital-signs",
            "imaging",
            "laboratory",
            "procedure",
            "survey",
            "exam",
            "therapy",
            "activity",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/condition-category",
        Rule::Set(&["problem-list-item", "encounter-diagnosis"]),
    ),
    (
        "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
        Rule::Set(&["health-concern", "problem-list-item"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        Rule::Set(&[
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        Rule::Set(&[
            "unconfirmed",
            "provisional",
            "differential",
            "confirmed",
            "refuted",
            "entered-in-error",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        Rule::Set(&["active", "inactive", "resolved"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
        Rule::Set(&["unconfirmed", "confirmed", "refuted", "entered-in-error"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        Rule::Set(&[
            "AMB",
            "EMER",
            "FLD",
            "HH",
            "IMP",
            "ACUTE",
            "NONAC",
            "OBSENC",
            "PRENC",
            "SS",
            "VR",
            "PBILLACCT",
            "HIP",
            "PUBLICPOL",
            "MCPOL",
            "MANDPOL",
            "DENTPRG",
            "SUBSIDIZ",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
        Rule::Set(&["A", "D", "I", "L", "M", "P", "S", "T", "U", "W"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
        Rule::Set(&["NI", "UNK", "ASKU", "NAV", "NASK", "NA", "OTH", "MSK"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        Rule::Set(&[
            "<", ">", "A", "AA", "AC", "B", "D", "DET", "E", "EX", "EXP", "H", "HH", "HU", "HX",
            "I", "IE", "IND", "L", "LL", "LU", "LX", "MS", "N", "NCL", "ND", "NEG", "NR", "NS",
            "POS", "R", "RR", "S", "SDD", "SYN-R", "SYN-S", "U", "VS", "W",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v2-0074",
        Rule::Set(&[
            "AU", "BG", "BLB", "CG", "CH", "CP", "CT", "CTH", "CUS", "EC", "EN", "GE", "HM", "ICU",
            "IMM", "LAB", "MB", "MCB", "MYC", "NMR", "NMS", "NRS", "OSL", "OT", "OTH", "OUS", "PF",
            "PHR", "PHY", "PT", "RAD", "RC", "RT", "RUS", "RX", "SP", "SR", "TX", "VR", "VUS",
            "XRC",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
        Rule::Set(&["inpatient", "outpatient", "community", "discharge"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        Rule::Set(&[
            "FAMMEMB",
            "CHILD",
            "CHLDADOPT",
            "DAUADOPT",
            "SONADOPT",
            "CHLDFOST",
            "CHLDINLAW",
            "NCHILD",
            "DAUC",
            "SONC",
            "DAU",
            "SON",
            "STPCHLD",
            "EXT",
            "AUNT",
            "COUSN",
            "GGRPRN",
            "GGRFTH",
            "GGRMTH",
            "GRNDCHILD",
            "GRNDDAU",
            "GRNDSON",
            "GRPRN",
            "GRFTH",
            "GRMTH",
            "NIENEPH",
            "NEPHEW",
            "NIECE",
            "UNCLE",
            "PRN",
            "FTH",
            "MTH",
            "NPRN",
            "NFTH",
            "NMTH",
            "STPPRN",
            "STPFTH",
            "STPMTH",
            "SIB",
            "BRO",
            "SIS",
            "HSIB",
            "HBRO",
            "HSIS",
            "TWIN",
            "FTWIN",
            "ITWIN",
            "SPS",
            "HUSB",
            "WIFE",
            "DOMPART",
            "MAUNT",
            "MUNCLE",
            "PAUNT",
            "PUNCLE",
            "MGRPRN",
            "MGRFTH",
            "MGRMTH",
            "PGRPRN",
            "PGRFTH",
            "PGRMTH",
            "MCOUSN",
            "PCOUSN",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
        Rule::Set(&[
            "A", "CR", "CS", "CSP", "CSR", "EL", "EM", "P", "PRN", "R", "RR", "S", "T", "UD", "UR",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/diagnosis-role",
        Rule::Set(&["AD", "DD", "CC", "CM", "pre-op", "post-op", "billing"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/admit-source",
        Rule::Set(&[
            "hosp-trans",
            "emd",
            "outp",
            "born",
            "gp",
            "mp",
            "nursing",
            "psych",
            "rehab",
            "other",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/discharge-disposition",
        Rule::Set(&[
            "home",
            "alt-home",
            "other-hcf",
            "hosp",
            "long",
            "aadvice",
            "exp",
            "psy",
            "rehab",
            "snf",
            "oth",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/data-absent-reason",
        Rule::Set(&[
            "unknown",
            "asked-unknown",
            "temp-unknown",
            "not-asked",
            "asked-declined",
            "masked",
            "not-applicable",
            "unsupported",
            "as-text",
            "error",
            "not-a-number",
            "negative-infinity",
            "positive-infinity",
            "not-performed",
            "not-permitted",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/dose-rate-type",
        Rule::Set(&["calculated", "ordered"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
        Rule::Set(&[
            "AM", "BID", "JB", "JE", "JH", "PM", "Q1H", "Q2H", "Q3H", "Q4H", "Q6H", "Q8H", "QAM",
            "QD", "QHS", "QID", "QOD", "QPM", "TID",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/referencerange-meaning",
        Rule::Set(&[
            "type",
            "normal",
            "recommended",
            "treatment",
            "therapeutic",
            "pre",
            "post",
            "endocrine",
            "pre-puberty",
            "follicular",
            "midcycle",
            "luteal",
            "postmenopausal",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/claim-type",
        Rule::Set(&[
            "institutional",
            "oral",
            "pharmacy",
            "professional",
            "vision",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/processpriority",
        Rule::Set(&["stat", "normal", "deferred"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/ex-diagnosistype",
        Rule::Set(&[
            "admitting",
            "clinical",
            "differential",
            "discharge",
            "laboratory",
            "nursing",
            "prenatal",
            "principal",
            "radiology",
            "remote",
            "retrospective",
            "self",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
        Rule::Set(&[
            "child", "parent", "spouse", "common", "other", "self", "injured",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/media-type",
        Rule::Set(&["image", "video", "audio"]),
    ),
    (
        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
        Rule::Set(&["clinical-note"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/communication-category",
        Rule::Set(&["alert", "notification", "reminder", "instruction"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v2-0276",
        Rule::Set(&["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v2-0136",
        Rule::Set(&["Y", "N"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/organization-type",
        Rule::Set(&[
            "prov", "dept", "team", "govt", "ins", "pay", "edu", "reli", "crs", "cg", "bus",
            "other",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/location-physical-type",
        Rule::Set(&[
            "si", "bu", "wi", "wa", "lvl", "co", "ro", "bd", "ve", "ho", "ca", "rd", "area", "jdn",
        ]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
        Rule::Set(&[
            "IM", "PO", "IVINJ", "IVINFUS", "SQ", "IDINJ", "NASINHLC", "SL", "TOPICAL", "INHL",
        ]),
    ),
    (
        "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
        Rule::Set(&["assess-plan"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        Rule::Set(&["U", "L", "M", "N", "R", "V"]),
    ),
    (
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        Rule::Set(&[
            "ADM", "ATND", "CALLBCK", "CON", "DIS", "ESC", "REF", "SPRF", "PPRF", "PART",
        ]),
    ),
];

/// LOINC and SNOMED CT codes of a patient's age: an `Observation` (or component) with one of
/// these codes holds an age in its `value[x]`, whatever the value's type.
pub(super) const AGE_CODES: &[(&str, &str)] = &[
    ("http://loinc.org", "30525-0"),         // Age
    ("http://loinc.org", "21612-7"),         // Age - Reported
    ("http://loinc.org", "29553-5"),         // Age calculated
    ("http://loinc.org", "21611-9"),         // Age - estimated
    ("http://loinc.org", "39016-1"),         // Age at death
    ("http://loinc.org", "63900-5"),         // Current age or age at death
    ("http://loinc.org", "35659-2"),         // Age at specified time
    ("http://snomed.info/sct", "424144002"), // Current chronological age
    ("http://snomed.info/sct", "397659008"), // Age
];

/// Units of measure research may keep: the UCUM codes of common clinical units, and the
/// printed forms laboratories send in `Quantity.unit`. Annotations (`{…}`) appear only in the
/// fixed forms listed, never as free text.
const UNITS: &[&str] = &[
    "%",
    "/min",
    "{beats}/min",
    "beats/min",
    "{breaths}/min",
    "breaths/min",
    "mm[Hg]",
    "mmHg",
    "Cel",
    "[degF]",
    "kg",
    "g",
    "mg",
    "ug",
    "ng",
    "pg",
    "mcg",
    "[lb_av]",
    "[oz_av]",
    "lb",
    "lbs",
    "m",
    "cm",
    "mm",
    "um",
    "nm",
    "[in_i]",
    "in",
    "kg/m2",
    "kg/m^2",
    "L",
    "dL",
    "mL",
    "uL",
    "fL",
    "mg/dL",
    "g/dL",
    "g/L",
    "mg/L",
    "ug/L",
    "ug/dL",
    "ug/mL",
    "ng/mL",
    "ng/dL",
    "ng/L",
    "pg/mL",
    "mmol/L",
    "umol/L",
    "nmol/L",
    "pmol/L",
    "mol/L",
    "mmol/mol",
    "meq/L",
    "mEq/L",
    "mosm/kg",
    "mOsm/kg",
    "U/L",
    "U/mL",
    "IU/L",
    "[IU]/L",
    "[iU]/L",
    "[IU]/mL",
    "mU/L",
    "m[IU]/L",
    "uU/mL",
    "[IU]",
    "[iU]",
    "U",
    "10*3/uL",
    "10*6/uL",
    "10*9/L",
    "10*12/L",
    "10*3/mm3",
    "x10E3/uL",
    "x10E6/uL",
    "mL/min",
    "mL/min/{1.73_m2}",
    "mL/min/1.73m2",
    "mL/min/1.73_m2",
    "mg/(24.h)",
    "mg/d",
    "g/(24.h)",
    "mL/(24.h)",
    "mg/kg",
    "mg/mL",
    "mg/m2",
    "ug/kg",
    "mL/h",
    "mL/kg",
    "L/min",
    "[pH]",
    "[ppm]",
    "1",
    "{ratio}",
    "{score}",
    "{count}",
    "{cells}/uL",
    "{copies}/mL",
    "[arb'U]/mL",
    "{tbl}",
    "{capsule}",
    "{puff}",
    "{drop}",
    "{patch}",
    "{dose}",
    "{cigarettes}/d",
    "{pack-years}",
    "{packs}/d",
    "[drp]",
    "[tsp_us]",
    "[tbs_us]",
    "meter",
    "ms",
    "s",
    "min",
    "h",
    "d",
    "wk",
    "mo",
    "a",
    "dB",
    "cm[H2O]",
    "kPa",
    "mbar",
    "Hz",
    "/h",
    "/d",
    "/wk",
    "/mo",
    "/a",
    "kcal",
    "kcal/d",
    "J",
    "kJ",
    "W",
    "{Ehrlich'U}/dL",
    "[HPF]",
    "/[HPF]",
    "/[LPF]",
    "[LPF]",
    "{titer}",
    "{index}",
    "{INR}",
    "{fraction}",
    "mm/h",
];

/// The UCUM code and length in years of the time units (`s` … `a`), keyed by every form they
/// arrive in: the UCUM codes, and (compared without case) the printed forms.
const TIME_UNITS: &[(&str, &str, f64)] = &[
    ("s", "s", 1.0 / 31_557_600.0),
    ("sec", "s", 1.0 / 31_557_600.0),
    ("second", "s", 1.0 / 31_557_600.0),
    ("seconds", "s", 1.0 / 31_557_600.0),
    ("min", "min", 1.0 / 525_960.0),
    ("minute", "min", 1.0 / 525_960.0),
    ("minutes", "min", 1.0 / 525_960.0),
    ("h", "h", 1.0 / 8766.0),
    ("hr", "h", 1.0 / 8766.0),
    ("hrs", "h", 1.0 / 8766.0),
    ("hour", "h", 1.0 / 8766.0),
    ("hours", "h", 1.0 / 8766.0),
    ("d", "d", 1.0 / 365.25),
    ("day", "d", 1.0 / 365.25),
    ("days", "d", 1.0 / 365.25),
    ("wk", "wk", 7.0 / 365.25),
    ("week", "wk", 7.0 / 365.25),
    ("weeks", "wk", 7.0 / 365.25),
    ("mo", "mo", 1.0 / 12.0),
    ("month", "mo", 1.0 / 12.0),
    ("months", "mo", 1.0 / 12.0),
    ("a", "a", 1.0),
    ("y", "a", 1.0),
    ("yr", "a", 1.0),
    ("yrs", "a", 1.0),
    ("year", "a", 1.0),
    ("years", "a", 1.0),
];

/// USPS codes of the US states, the District of Columbia, the territories and the military
/// "states", with the states' and territories' names.
const US_STATES: &[(&str, &str)] = &[
    ("AL", "Alabama"),
    ("AK", "Alaska"),
    ("AZ", "Arizona"),
    ("AR", "Arkansas"),
    ("CA", "California"),
    ("CO", "Colorado"),
    ("CT", "Connecticut"),
    ("DE", "Delaware"),
    ("DC", "District of Columbia"),
    ("FL", "Florida"),
    ("GA", "Georgia"),
    ("HI", "Hawaii"),
    ("ID", "Idaho"),
    ("IL", "Illinois"),
    ("IN", "Indiana"),
    ("IA", "Iowa"),
    ("KS", "Kansas"),
    ("KY", "Kentucky"),
    ("LA", "Louisiana"),
    ("ME", "Maine"),
    ("MD", "Maryland"),
    ("MA", "Massachusetts"),
    ("MI", "Michigan"),
    ("MN", "Minnesota"),
    ("MS", "Mississippi"),
    ("MO", "Missouri"),
    ("MT", "Montana"),
    ("NE", "Nebraska"),
    ("NV", "Nevada"),
    ("NH", "New Hampshire"),
    ("NJ", "New Jersey"),
    ("NM", "New Mexico"),
    ("NY", "New York"),
    ("NC", "North Carolina"),
    ("ND", "North Dakota"),
    ("OH", "Ohio"),
    ("OK", "Oklahoma"),
    ("OR", "Oregon"),
    ("PA", "Pennsylvania"),
    ("RI", "Rhode Island"),
    ("SC", "South Carolina"),
    ("SD", "South Dakota"),
    ("TN", "Tennessee"),
    ("TX", "Texas"),
    ("UT", "Utah"),
    ("VT", "Vermont"),
    ("VA", "Virginia"),
    ("WA", "Washington"),
    ("WV", "West Virginia"),
    ("WI", "Wisconsin"),
    ("WY", "Wyoming"),
    ("PR", "Puerto Rico"),
    ("GU", "Guam"),
    ("VI", "U.S. Virgin Islands"),
    ("AS", "American Samoa"),
    ("MP", "Northern Mariana Islands"),
    ("AA", ""),
    ("AE", ""),
    ("AP", ""),
];

/// ISO 3166-1 alpha-2 country codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE \
DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS \
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW \
KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW \
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO \
RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM \
TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

fn digits(s: &str) -> bool {
    all(s, |b| b.is_ascii_digit())
}

/// The mod-10 check digit LOINC and the CDC race codes use (Luhn over the code's digits).
fn mod10_check(number: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, b) in number.bytes().rev().enumerate() {
        let d = u32::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        sum += if i % 2 == 0 {
            let x = d * 2;
            x / 10 + x % 10
        } else {
            d
        };
    }
    Some(((10 - sum % 10) % 10) as u8)
}

fn checked_number(code: &str, max_len: usize) -> bool {
    let Some((number, check)) = code.split_once('-') else {
        return false;
    };
    number.len() <= max_len
        && digits(number)
        && check.len() == 1
        && digits(check)
        && mod10_check(number) == Some(check.as_bytes()[0] - b'0')
}

fn verhoeff(code: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    // The permutation applied to the digit in position i (from the right) is P1 applied i
    // times (i mod 8); computing it avoids a hand-copied table.
    const P1: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];
    let mut c = 0u8;
    for (i, b) in code.bytes().rev().enumerate() {
        let mut digit = b - b'0';
        for _ in 0..i % 8 {
            digit = P1[usize::from(digit)];
        }
        c = D[usize::from(c)][usize::from(digit)];
    }
    c == 0
}

fn snomed(code: &str) -> bool {
    // Concept ids only: the partition identifier (the 2nd and 3rd digits from the right) is
    // 00 (core) or 10 (extension); no leading zero.
    let n = code.len();
    (6..=18).contains(&n)
        && digits(code)
        && !code.starts_with('0')
        && matches!(&code[n - 3..n - 1], "00" | "10")
        && verhoeff(code)
}

fn icd10(code: &str) -> bool {
    let (head, tail) = code.split_once('.').unwrap_or((code, ""));
    let b = head.as_bytes();
    b.len() == 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && (b[2].is_ascii_digit() || b[2].is_ascii_uppercase())
        && (code.len() == 3
            || (tail.len() <= 4 && all(tail, |c| c.is_ascii_digit() || c.is_ascii_uppercase())))
}

fn icd9(code: &str) -> bool {
    let (head, tail) = code.split_once('.').unwrap_or((code, ""));
    let ok_tail = |max: usize| code.len() == head.len() || (tail.len() <= max && digits(tail));
    match head.as_bytes().first() {
        Some(b'V') => head.len() == 3 && digits(&head[1..]) && ok_tail(2),
        Some(b'E') => head.len() == 4 && digits(&head[1..]) && ok_tail(1),
        _ => head.len() == 3 && digits(head) && ok_tail(2),
    }
}

fn ndc(code: &str) -> bool {
    let parts: Vec<&str> = code.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    parts.iter().all(|p| digits(p))
        && matches!(
            lens.as_slice(),
            [4, 4, 2] | [5, 3, 2] | [5, 4, 1] | [5, 4, 2]
        )
}

fn language(code: &str) -> bool {
    let (lang, region) = code.split_once('-').unwrap_or((code, ""));
    (2..=3).contains(&lang.len())
        && all(lang, |b| b.is_ascii_lowercase())
        && (code.len() == lang.len()
            || (region.len() == 2 && all(region, |b| b.is_ascii_uppercase()))
            || (region.len() == 3 && digits(region)))
}

fn rule_allows(rule: Rule, code: &str) -> bool {
    match rule {
        Rule::Loinc => {
            checked_number(code, 7)
                || ["LA", "LP", "LL"].iter().any(|p| {
                    code.strip_prefix(p).is_some_and(|rest| {
                        rest.split_once('-').is_some_and(|(n, c)| {
                            n.len() <= 8 && digits(n) && c.len() == 1 && digits(c)
                        })
                    })
                })
        }
        Rule::Snomed => snomed(code),
        Rule::Icd10 => icd10(code),
        Rule::Icd9 => icd9(code),
        Rule::Icd10Pcs => {
            code.len() == 7
                && all(code, |b| {
                    b.is_ascii_digit() || (b.is_ascii_uppercase() && b != b'I' && b != b'O')
                })
        }
        Rule::Digits(max) => code.len() <= max && digits(code) && !code.starts_with('0'),
        Rule::Ndc => ndc(code),
        Rule::Cpt => {
            code.len() == 5
                && digits(&code[..4])
                && matches!(code.as_bytes()[4], b'0'..=b'9' | b'F' | b'T' | b'U')
        }
        Rule::Hcpcs => {
            code.len() == 5 && matches!(code.as_bytes()[0], b'A'..=b'V') && digits(&code[1..])
        }
        Rule::Nucc => {
            code.len() == 10
                && digits(&code[..3])
                && all(&code[3..9], |b| {
                    b.is_ascii_digit() || b.is_ascii_uppercase()
                })
                && code.ends_with('X')
        }
        Rule::CdcRace => checked_number(code, 4) && code.len() == 6,
        Rule::Language => language(code),
        Rule::Ucum => UNITS.contains(&code),
        Rule::Set(codes) => codes.contains(&code),
    }
}

/// Whether research may keep the coding `system` | `code`: the system is one of [`SYSTEMS`]
/// and the code is of its syntax (or in its list).
pub(super) fn coding_allowed(system: &str, code: &str) -> bool {
    code.is_ascii()
        && SYSTEMS
            .iter()
            .find(|(s, _)| *s == system)
            .is_some_and(|(_, rule)| rule_allows(*rule, code))
}

/// Whether `unit` is a unit research may keep (a UCUM code or printed form of [`UNITS`]).
pub(super) fn unit_allowed(unit: &str) -> bool {
    UNITS.contains(&unit)
}

/// The UCUM code and length in years of a time unit, in any of its forms (`a`, `Years`, `mo`,
/// `months`, `wk`, …).
pub(super) fn time_unit(unit: &str) -> Option<(&'static str, f64)> {
    TIME_UNITS
        .iter()
        .find(|(form, _, _)| unit == *form || (form.len() > 2 && unit.eq_ignore_ascii_case(form)))
        .map(|(_, code, years)| (*code, *years))
}

/// The USPS code of a US state given by code (`IL`, `il`) or name (`Illinois`).
pub(super) fn us_state(s: &str) -> Option<&'static str> {
    let s = s.trim();
    US_STATES
        .iter()
        .find(|(code, name)| {
            s.eq_ignore_ascii_case(code) || (!name.is_empty() && s.eq_ignore_ascii_case(name))
        })
        .map(|(code, _)| *code)
}

/// The ISO 3166-1 alpha-2 code of a country given by that code, or `US` for the usual
/// spellings of the United States.
pub(super) fn country(s: &str) -> Option<&'static str> {
    let s = s.trim();
    if [
        "USA",
        "United States",
        "United States of America",
        "U.S.",
        "U.S.A.",
    ]
    .iter()
    .any(|us| s.eq_ignore_ascii_case(us))
    {
        return Some("US");
    }
    let upper = s.to_ascii_uppercase();
    if upper.len() != 2 {
        return None;
    }
    COUNTRIES.split(' ').find(|c| *c == upper)
}

/// The year of anything that looks like a date: an ISO-like date, dateTime or instant with or
/// without a time zone (`2024`, `2024-03`, `2024-03-05T10:00:00`, `2024/03/05 10:00`), a numeric
/// day-month-year in either order (`03/05/2024`, `05.03.2024`, `3-5-2024`), a compact
/// `20240305`, or a written date (`5 March 2024`, `March 5, 2024 10:30`, `Mar 2024`). `None` when
/// no year can be told (`03/05/24`, `yesterday`) or the string is not date-shaped (an SSN, a
/// phone number): the caller then drops the value.
pub(super) fn year_of(s: &str) -> Option<i64> {
    let s = s.trim();
    iso_year(s)
        .or_else(|| numeric_year(s))
        .or_else(|| compact_year(s))
        .or_else(|| written_year(s))
}

fn in_range(s: &str, max: u32) -> bool {
    (1..=2).contains(&s.len())
        && digits(s)
        && s.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n))
}

/// The date part of a date and time (`…T10:00:00Z`, `… 10:00`, `… 10:30 pm`); the whole
/// string when what follows a space is not a time.
fn date_part(s: &str) -> &str {
    if let Some((date, _)) = s.split_once('T') {
        return date;
    }
    match s.split_once(' ') {
        Some((date, time)) if time_like(time) => date,
        _ => s,
    }
}

/// `10:00`, `10:00:00+02:00`, `10:30 pm`.
fn time_like(s: &str) -> bool {
    let s = s.trim();
    let clock = s
        .strip_suffix("am")
        .or_else(|| s.strip_suffix("pm"))
        .map_or(s, str::trim_end);
    clock.contains(':')
        && all(clock, |b| {
            b.is_ascii_digit() || matches!(b, b':' | b'.' | b'+' | b'-' | b'Z')
        })
}

fn iso_year(s: &str) -> Option<i64> {
    let date = date_part(s);
    let year = date.get(..4).filter(|y| digits(y))?;
    let rest = &date[4..];
    let ok = match rest.chars().next() {
        None => true,
        Some(sep @ ('-' | '/' | '.')) => {
            let mut parts = rest[1..].split(sep);
            let month = parts.next().is_some_and(|m| in_range(m, 12));
            let day = parts.next().is_none_or(|d| in_range(d, 31));
            month && day && parts.next().is_none()
        }
        Some(_) => false,
    };
    ok.then(|| year.parse().ok()).flatten()
}

fn numeric_year(s: &str) -> Option<i64> {
    let date = date_part(s);
    let sep = date.chars().find(|c| matches!(c, '/' | '.' | '-'))?;
    let parts: Vec<&str> = date.split(sep).collect();
    let [a, b, y] = parts.as_slice() else {
        return None;
    };
    let ok = in_range(a, 31)
        && in_range(b, 31)
        && (in_range(a, 12) || in_range(b, 12))
        && y.len() == 4
        && digits(y);
    ok.then(|| y.parse().ok()).flatten()
}

fn compact_year(s: &str) -> Option<i64> {
    let date = date_part(s);
    let ok =
        date.len() == 8 && digits(date) && in_range(&date[4..6], 12) && in_range(&date[6..8], 31);
    ok.then(|| date[..4].parse().ok()).flatten()
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn written_year(s: &str) -> Option<i64> {
    let (mut months, mut days, mut year) = (0, 0, None);
    for token in s.split([' ', ',']).filter(|t| !t.is_empty()) {
        let lower = token.trim_end_matches('.').to_ascii_lowercase();
        let day = lower
            .trim_end_matches("st")
            .trim_end_matches("nd")
            .trim_end_matches("rd")
            .trim_end_matches("th");
        if MONTHS
            .iter()
            .any(|m| lower == *m || (lower.len() == 3 && m.starts_with(lower.as_str())))
        {
            months += 1;
        } else if token.len() == 4 && digits(token) && year.is_none() {
            year = token.parse().ok();
        } else if in_range(day, 31) {
            days += 1;
        } else if !(time_like(token) || matches!(lower.as_str(), "am" | "pm")) {
            return None;
        }
    }
    (months == 1 && days <= 1).then_some(year).flatten()
}

/// Whether `s` is a MIME type without parameters (`application/pdf`, `image/jpeg`).
pub(super) fn mime_type(s: &str) -> bool {
    s.len() <= 64
        && s.split_once('/').is_some_and(|(t, sub)| {
            all(t, |b| b.is_ascii_lowercase())
                && all(sub, |b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-')
                })
        })
}

/// Whether a questionnaire item's `linkId` is structural (a dotted number `1.2.3`, or a LOINC
/// code), never a word typed by someone.
pub(super) fn link_id(s: &str) -> bool {
    (s.len() <= 24 && s.split('.').all(|part| part.len() <= 3 && digits(part)))
        || rule_allows(Rule::Loinc, s)
}
