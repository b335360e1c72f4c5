//! srvd's fuzz driver on stable Rust: a seeded mutation loop over a committed corpus.
//!
//! `cargo run --release --example fuzz -- TARGET [--inputs N] [--seconds S] [--seed N]`
//! (`scripts/fuzz` runs every target). Targets and their promises are in `fuzz/targets.rs`;
//! each input is mutated from the corpus in `fuzz/corpus/TARGET/` (byte flips, inserts,
//! deletes, splices, interesting values, dictionary tokens), run under `catch_unwind`, and an
//! input that panics or breaks a promise is written to `fuzz/corpus/TARGET/crash-<hash>`,
//! where the replay test (`tests/it/fuzz_corpus.rs`) picks it up. Without coverage
//! instrumentation (nightly or AFL), the feedback is the target's outcome signature: an input
//! whose outcome was never seen joins the in-memory corpus.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Inputs never grow past a TCP message: nothing srvd reads from one peer is larger.
const MAX_INPUT: usize = 65_535;
/// The in-memory corpus stops growing here (bounded memory on long runs).
const MAX_CORPUS: usize = 20_000;

const INTERESTING: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0, b'\n'];
const INTERESTING16: [u16; 8] = [0, 1, 255, 256, 512, 1232, 0x7fff, 0xffff];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut target = None;
    let mut inputs = 10_000_000u64;
    let mut seconds = None;
    let mut seed = 1u64;
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match args[i].as_str() {
            "--inputs" => inputs = value(i).unwrap_or(inputs),
            "--seconds" => seconds = value(i),
            "--seed" => seed = value(i).unwrap_or(seed),
            name if !name.starts_with("--") => {
                target = Some(name.to_string());
                i += 1;
                continue;
            }
            other => {
                eprintln!("unknown option {other}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    let Some(target) = target.filter(|t| targets::TARGETS.contains(&t.as_str())) else {
        eprintln!(
            "usage: fuzz TARGET [--inputs N] [--seconds S] [--seed N]; targets: {}",
            targets::TARGETS.join(" ")
        );
        return ExitCode::from(2);
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(&target);
    let crashes = run(
        &target,
        &dir,
        inputs,
        seconds.map(Duration::from_secs),
        seed,
    );
    if crashes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `target` for `inputs` inputs or `limit`, whichever ends first; returns the crashes.
fn run(target: &str, dir: &Path, inputs: u64, limit: Option<Duration>, seed: u64) -> u64 {
    let mut corpus = load(dir);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds = corpus.len();
    let dictionary = targets::dictionary(target);
    let mut packet = (target == "packet").then(targets::Packet::new);
    let check = |packet: &mut Option<targets::Packet>, input: &[u8]| -> targets::Outcome {
        match target {
            "packet" => packet.as_mut().map_or(Ok(0), |p| p.run(input)),
            "skydns" => targets::skydns(input),
            "registry" => targets::registry(input),
            "zonefile" => targets::zonefile(input),
            _ => targets::corefile(input),
        }
    };
    // A panic is counted and saved, not printed once per input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut found = HashSet::new();
    let start = Instant::now();
    let mut run = 0u64;
    let mut crashes = 0u64;
    let mut input = Vec::new();
    while run < inputs {
        if run.is_multiple_of(1024) && limit.is_some_and(|l| start.elapsed() >= l) {
            break;
        }
        input.clear();
        input.extend_from_slice(&corpus[rng.random_range(0..corpus.len())]);
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut input, &corpus, dictionary, &mut rng);
        }
        run += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&mut packet, &input)));
        let failure = match outcome {
            Ok(Ok(signature)) => {
                if seen.insert(signature) && corpus.len() < MAX_CORPUS {
                    corpus.push(input.clone());
                }
                continue;
            }
            Ok(Err(violation)) => violation,
            Err(panic) => format!("panic: {}", panic_text(&*panic)),
        };
        let hash = targets::fnv(&input);
        if found.insert(hash) {
            crashes += 1;
            let path = dir.join(format!("crash-{hash:016x}"));
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(&path, &input);
            eprintln!("{}: {failure}", path.display());
        }
        if packet.is_some() {
            // A panic may leave the handler's scratch half-written: start from a fresh one.
            packet = Some(targets::Packet::new());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "target={target} inputs={run} crashes={crashes} seconds={elapsed:.1} inputs_per_second={:.0} seeds={seeds} corpus={}",
        run as f64 / elapsed.max(1e-9),
        corpus.len()
    );
    crashes
}

/// The committed corpus files of `dir` (crash inputs included: their neighbours are likely
/// to break too), sorted so that a seed reproduces a run.
fn load(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".into())
}

/// One random mutation of `input`.
fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]], rng: &mut SmallRng) {
    let len = input.len();
    match rng.random_range(0..10u8) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = rng.random();
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        3 if len > 1 => {
            let i = rng.random_range(0..len - 1);
            let v = INTERESTING16[rng.random_range(0..INTERESTING16.len())];
            input[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        4 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            input.drain(i..i + n);
        }
        5 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(i..i, bytes);
        }
        6 if !dictionary.is_empty() => {
            let token = dictionary[rng.random_range(0..dictionary.len())];
            let i = rng.random_range(0..=len);
            input.splice(i..i, token.iter().copied());
        }
        7 if len > 0 => {
            // Duplicate a slice in place (repeated labels, nested blocks).
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy = input[i..i + n].to_vec();
            let at = rng.random_range(0..=len);
            input.splice(at..at, copy);
        }
        8 => {
            // Splice: this input's head with another's tail.
            let other = &corpus[rng.random_range(0..corpus.len())];
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ if len > 0 => {
            let i = rng.random_range(0..len);
            input.truncate(i);
        }
        _ => input.push(rng.random()),
    }
    input.truncate(MAX_INPUT);
}
