//! Replays the committed inputs of every target: the hand-written seeds and what
//! fuzzing kept. A crash found by fuzzing is fixed, and its input added to the seeds.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    let mut seeds = 0;
    for dir in ["seeds", "corpus"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus directory entry").path();
            let data = fs::read(&path).expect("corpus file");
            // Name the input if it panics.
            eprintln!("{}", path.display());
            run(&data);
            replayed += 1;
            seeds += usize::from(dir == "seeds");
        }
    }
    assert!(seeds > 0, "no seeds for {target}");
    eprintln!("{target}: {replayed} inputs replayed");
}

#[test]
fn request() {
    replay("request", crate::request::run);
}

#[test]
fn response() {
    replay("response", crate::response::run);
}

#[test]
fn config() {
    replay("config", crate::config::run);
}

#[test]
fn arguments() {
    replay("arguments", crate::arguments::run);
}

#[test]
fn lists() {
    replay("lists", crate::lists::run);
}

#[test]
fn flow() {
    replay("flow", crate::flow::run);
}
