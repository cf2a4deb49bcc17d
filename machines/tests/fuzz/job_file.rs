//! The target of the whole upload path: `read_job_file` tells a design from G-code by its
//! signature and name, then reads it with the summary, preview and thumbnail a job keeps.

use super::engine::{Rng, Source};
use super::{embroidery, gcode};
use fabrique_machines::files::embroidery::{EmbroideryMachine, Format};
use fabrique_machines::files::{FileSummary, read_job_file};

/// The names the file may come with: every format's, G-code's, and none that means a thing.
const NAMES: [&str; 10] = [
    "part.gcode",
    "sticker.plt",
    "logo.hpgl",
    "ROSE.DST",
    "rose.pes",
    "rose.pec",
    "rose.exp",
    "rose.jef",
    "notes.txt",
    "noext",
];

thread_local! {
    static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary folder");
}

/// The first byte picks the name, the rest is the file. Properties: no panic; an error has
/// its message in both languages; a summary reads back from its JSON; the estimate is not
/// negative.
pub fn check(input: &[u8]) {
    let Some((&pick, content)) = input.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let path = DIR.with(|d| d.path().join("upload"));
    std::fs::write(&path, content).expect("writing the upload");
    let machine = EmbroideryMachine::default();
    match read_job_file(&path, name, None, &machine, &Default::default(), "fuzz") {
        Err(e) => {
            let (fr, en) = e.message();
            assert!(!fr.is_empty() && !en.is_empty());
        }
        Ok(job) => {
            assert!(job.summary.estimate_s() >= 0);
            let json = serde_json::to_string(&job.summary).expect("a summary is JSON");
            serde_json::from_str::<FileSummary>(&json)
                .unwrap_or_else(|e| panic!("the stored summary does not read back: {e}"));
        }
    }
}

/// Valid designs and pieces of real G-code, each behind a name byte, mutated by the
/// other sources.
pub fn source() -> Source {
    let mut seeds = Vec::new();
    for (i, format) in Format::ALL.into_iter().enumerate() {
        for s in 0..4 {
            let mut input = vec![i as u8 + 1];
            input.extend(embroidery::valid_file(format, s));
            seeds.push(input);
        }
    }
    for s in gcode::bytes_seeds() {
        let mut input = vec![0];
        input.extend(s);
        seeds.push(input);
    }
    Source {
        seeds,
        make: |rng: &mut Rng, seeds: &[Vec<u8>]| {
            let mut input = match rng.below(3) {
                0 => gcode::make_bytes(rng, &[]),
                1 => gcode::make_lines(rng, &[]),
                // The seeds already carry their name byte: mutate it with the rest.
                _ => return embroidery::make(rng, seeds),
            };
            input.insert(0, rng.next() as u8);
            input
        },
    }
}
