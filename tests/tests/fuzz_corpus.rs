//! Replays the fuzz corpus as an ordinary test, so the test command exercises the fuzz targets
//! without cargo-fuzz (which needs nightly).
//!
//! Every file of every `fuzz/corpus/<target>/` directory goes through the
//! `medchain_core::fuzzing` (or `medchain_node::fuzzing`, `medchain_fhir::fuzzing`) function of the same name, and so do a few thousand deterministic
//! mutations of it (bit flips, byte overwrites, truncations, insertions, deletions and length-field
//! overwrites). The functions panic only on a real bug (a non-canonical round trip); any panic
//! fails this test, names the input and saves it under `target/fuzz-failures/`.
//!
//! `MEDCHAIN_FUZZ_MUTATIONS=N` changes the number of mutations per corpus file (default 3000).

use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// A fuzz entry point: the crate whose `fuzzing` module has it, its name, the function.
type Target = (&'static str, &'static str, fn(&[u8]));

/// Every fuzz entry point, from each crate's `fuzzing::TARGETS`.
fn targets() -> Vec<Target> {
    let core = medchain_core::fuzzing::TARGETS
        .iter()
        .map(|(n, f)| ("medchain_core", *n, *f));
    let node = medchain_node::fuzzing::TARGETS
        .iter()
        .map(|(n, f)| ("medchain_node", *n, *f));
    let fhir = medchain_fhir::fuzzing::TARGETS
        .iter()
        .map(|(n, f)| ("medchain_fhir", *n, *f));
    core.chain(node).chain(fhir).collect()
}

fn target(name: &str) -> Option<fn(&[u8])> {
    targets()
        .into_iter()
        .find(|(_, n, _)| *n == name)
        .map(|(_, _, f)| f)
}

/// SplitMix64: a tiny deterministic generator for choosing mutations (not for secrets).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values worth writing over a length or count field.
fn interesting_u32(rng: &mut Mix, len: usize) -> u32 {
    let len = len as u32;
    match rng.below(9) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        3 => 0x7fff_ffff,
        4 => 0x8000_0000,
        5 => len.wrapping_sub(1),
        6 => len,
        7 => len.wrapping_add(1),
        _ => rng.next() as u32,
    }
}

/// One to three random edits of `seed`.
fn mutate(seed: &[u8], rng: &mut Mix) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => data.truncate(rng.below(len + 1)),
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = interesting_u32(rng, len - i - 4);
                data[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            4 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next() as u8);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                data.remove(i);
            }
            6 if len > 0 => {
                // Duplicate a tail slice: lists and trailing-byte checks.
                let i = rng.below(len);
                let tail = data[i..].to_vec();
                data.extend_from_slice(&tail[..tail.len().min(64)]);
            }
            _ => {}
        }
    }
    data
}

fn mutations_per_file() -> usize {
    std::env::var("MEDCHAIN_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Runs `f(input)`; on a panic saves the input and fails with where it came from.
fn run_one(f: fn(&[u8]), input: &[u8], target_name: &str, label: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
        let _ = fs::create_dir_all(&dir);
        let path = dir.join(format!("{target_name}-{label}"));
        let _ = fs::write(&path, input);
        panic!(
            "fuzzing::{target_name} panicked on {label} ({} bytes, saved to {}): {}",
            input.len(),
            path.display(),
            hex_prefix(input)
        );
    }
}

fn hex_prefix(data: &[u8]) -> String {
    let shown: String = data.iter().take(96).map(|b| format!("{b:02x}")).collect();
    if data.len() > 96 {
        format!("{shown}…")
    } else {
        shown
    }
}

fn corpus_dirs() -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus exists")
        .map(|e| e.expect("readable corpus entry"))
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    dirs.sort();
    dirs
}

fn corpus_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("readable corpus directory")
        .map(|e| e.expect("readable corpus entry"))
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(e.path()).expect("readable corpus file");
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_directory_has_a_target_and_every_target_a_fuzz_binary() {
    let dirs = corpus_dirs();
    assert!(!dirs.is_empty(), "no fuzz corpus found");
    for (name, path) in &dirs {
        assert!(
            target(name).is_some(),
            "fuzz/corpus/{name} has no fuzzing::{name} in a TARGETS list"
        );
        assert!(
            !corpus_files(path).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
    }
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut names = BTreeSet::new();
    for (krate, name, _) in targets() {
        assert!(names.insert(name), "{name} is listed twice in TARGETS");
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let src = fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("missing fuzz target {}", file.display()));
        assert!(
            src.contains(&format!("{krate}::fuzzing::{name}(")),
            "{} does not call {krate}::fuzzing::{name}",
            file.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
    for entry in fs::read_dir(fuzz_dir().join("fuzz_targets")).expect("fuzz/fuzz_targets") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let stem = file.trim_end_matches(".rs");
        assert!(
            target(stem).is_some(),
            "fuzz_targets/{file} has no entry in fuzzing::TARGETS"
        );
    }
}

#[test]
fn corpus_files_replay() {
    for (name, path) in corpus_dirs() {
        let Some(f) = target(&name) else { continue };
        for (file, bytes) in corpus_files(&path) {
            run_one(f, &bytes, &name, &file);
        }
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let per_file = mutations_per_file();
    let mut runs = 0usize;
    for (name, path) in corpus_dirs() {
        let Some(f) = target(&name) else { continue };
        let files = corpus_files(&path);
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        for (k, (file, bytes)) in files.iter().enumerate() {
            let mut rng = Mix(seed ^ (k as u64).wrapping_mul(0x9e37_79b9));
            for i in 0..per_file {
                let input = mutate(bytes, &mut rng);
                run_one(f, &input, &name, &format!("{file}-mutation-{i}"));
                runs += 1;
            }
        }
    }
    assert!(runs > 0);
}
