//! The fuzz corpus (`fuzz/corpus/<target>/`: seeds and every input that once crashed or broke a
//! promise) replayed through the fuzz targets' own checks, so the normal suite and CI catch a
//! regression of any finding without running the fuzzer.

#[path = "../../fuzz/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs every file of `fuzz/corpus/<target>/` through `check`; fails naming each file that
/// panics or breaks a promise.
fn replay(target: &str, mut check: impl FnMut(&[u8]) -> targets::Outcome) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 2, "{target}: the seed corpus is missing");
    let mut failures = Vec::new();
    for path in &paths {
        let input = std::fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Ok(_)) => {}
            Ok(Err(violation)) => failures.push(format!("{}: {violation}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn packet_corpus_gets_bounded_answers() {
    let mut packet = targets::Packet::new();
    replay("packet", |input| packet.run(input));
}

#[test]
fn skydns_corpus_decodes_or_is_skipped() {
    replay("skydns", targets::skydns);
}

#[test]
fn registry_corpus_decodes_or_is_skipped() {
    replay("registry", targets::registry);
}

#[test]
fn zonefile_corpus_loads_or_errs() {
    replay("zonefile", targets::zonefile);
}

#[test]
fn corefile_corpus_parses_or_errs() {
    replay("corefile", targets::corefile);
}
