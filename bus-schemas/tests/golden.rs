//! Golden vectors: MessagePack bytes written by each released version of herd-bus must still
//! decode. The current version's vectors must match today's encoding byte for byte; to record
//! a deliberate change, bump the crate version and run with HERD_BLESS=1, which writes the new
//! version's directory and leaves older ones as they are.
//!
//! The same vectors are decoded by Python's `msgpack` (an independent implementation) and
//! compared with their JSON form, so that subscribers in any language can read herd's streams.

use herd_bus::fixtures::{self, Fixture};
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn current_dir() -> PathBuf {
    golden_root().join(herd_bus::HERD_VERSION)
}

fn bless() -> bool {
    std::env::var_os("HERD_BLESS").is_some()
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn current_vectors_match_todays_encoding() {
    let dir = current_dir();
    if bless() {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut failures = Vec::new();
    for f in fixtures::all() {
        let mp_path = dir.join(format!("{}.msgpack", f.name));
        let json_path = dir.join(format!("{}.json", f.name));
        let (mp, json) = ((f.msgpack)(), pretty(&(f.json)()));
        if bless() {
            std::fs::write(&mp_path, &mp).unwrap();
            std::fs::write(&json_path, &json).unwrap();
            continue;
        }
        match std::fs::read(&mp_path) {
            Ok(old) if old == mp => {}
            Ok(_) => failures.push(format!(
                "{}: today's MessagePack differs from {}",
                f.name,
                mp_path.display()
            )),
            Err(e) => failures.push(format!("{}: {}: {e}", f.name, mp_path.display())),
        }
        match std::fs::read_to_string(&json_path) {
            Ok(old) if old == json => {}
            _ => failures.push(format!("{}: {} differs", f.name, json_path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "golden vectors of version {} drifted:\n  {}\n\
         A released version's bytes must not change. If the change is deliberate and old \
         readers stay compatible, bump the version and run `HERD_BLESS=1 cargo test -p herd-bus \
         --test golden`.",
        herd_bus::HERD_VERSION,
        failures.join("\n  ")
    );
}

/// Every version directory's bytes decode with today's types, to the same value as its JSON.
#[test]
fn every_versions_bytes_still_decode() {
    let by_name: std::collections::HashMap<&str, Fixture> =
        fixtures::all().into_iter().map(|f| (f.name, f)).collect();
    let mut checked = 0;
    for version in std::fs::read_dir(golden_root()).expect("golden/ exists") {
        let version = version.unwrap().path();
        if !version.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&version).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("msgpack") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap();
            let f = by_name
                .get(name)
                .unwrap_or_else(|| panic!("{}: no message type is called {name}", path.display()));
            let from_mp = (f.decode_msgpack)(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
            let from_json = (f.decode_json)(&std::fs::read(path.with_extension("json")).unwrap())
                .unwrap_or_else(|e| panic!("{}.json no longer decodes: {e}", name));
            assert_eq!(from_mp, from_json, "{}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked >= fixtures::all().len(),
        "only {checked} vectors found"
    );
}

/// An independent MessagePack implementation reads the vectors as their JSON says.
#[test]
fn python_msgpack_reads_the_vectors() {
    let script = golden_root().join("check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(current_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); scripts/test installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 {} failed:\n{stdout}\n{stderr}\n(`python3 -m pip install msgpack` if the module \
         is missing; scripts/test installs it)",
        script.display()
    );
    print!("{stdout}");
    assert!(
        stdout.contains(&format!("{} vectors", fixtures::all().len())),
        "{stdout}"
    );
}

/// docs/bus.md's message section is generated from the fixtures; it must not drift.
#[test]
fn bus_doc_examples_are_current() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bus.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/bus.md exists");
    const BEGIN: &str = "<!-- BEGIN GENERATED: messages -->\n";
    const END: &str = "<!-- END GENERATED: messages -->";
    let (head, rest) = doc.split_once(BEGIN).expect("begin marker in docs/bus.md");
    let (_, tail) = rest.split_once(END).expect("end marker in docs/bus.md");
    let mut generated = String::new();
    for f in fixtures::all() {
        generated += &format!(
            "### {}\n\nTravels as: {}.\n\n```json\n{}```\n\n",
            f.name,
            f.travels,
            pretty(&(f.json)())
        );
    }
    let want = format!("{head}{BEGIN}{generated}{END}{tail}");
    if bless() {
        std::fs::write(&doc_path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/bus.md's generated messages are out of date; run `HERD_BLESS=1 cargo test -p \
         herd-bus --test golden`"
    );
}
