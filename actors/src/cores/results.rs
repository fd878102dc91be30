//! What a settled run task's output directory becomes in the results bucket: which files are
//! uploaded under the node's caps (and which are left out, and why), the metrics its
//! `metrics.json` reports, and whether an object already in the bucket is the file. Sans-IO:
//! the node's ResultsUploader lists the directory, hashes and uploads; this decides.

use herd_bus::METRICS_FILE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default `results.max_bytes`: 256 MiB per task.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default `results.max_files`. Every uploaded file is listed in the run's journal, which is one
/// record of the coordinator's bucket: thousands of files per task would outgrow it.
pub const DEFAULT_MAX_FILES: usize = 1000;
/// A `metrics.json` larger than this is not read (it is still uploaded).
pub const MAX_METRICS_BYTES: u64 = 1024 * 1024;
/// Left-out files named in a task's results; the rest are counted.
const MAX_SKIPPED_NAMED: usize = 20;
/// What the files of one task may take in its results event and journal entry (each costs its
/// path twice, as path and object name, and a digest): an event must fit in a NATS message,
/// whatever the paths' lengths, or it would block the node's event delivery.
pub const MAX_LISTING_BYTES: usize = 256 * 1024;

/// Bytes a file takes in a task's listing.
fn listing_cost(path: &str) -> usize {
    2 * path.len() + 128
}

/// `[results]` of herdd's configuration: how much of a run task's output is uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsPolicy {
    /// Bytes uploaded per task at most; a task that left more is recorded as truncated.
    pub max_bytes: u64,
    /// Files uploaded per task at most; past it, the task is recorded as truncated.
    pub max_files: usize,
}

impl Default for ResultsPolicy {
    fn default() -> Self {
        ResultsPolicy {
            max_bytes: DEFAULT_MAX_BYTES,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// One entry of a task's output directory, found without following symbolic links. Paths are
/// relative to the directory, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    File {
        path: String,
        size: u64,
    },
    /// What is never uploaded (a symbolic link, a FIFO, a socket, a device, a name that is not
    /// UTF-8), and what it is.
    Other {
        path: String,
        what: String,
    },
}

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub size: u64,
}

/// What to upload of one task's output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadPlan {
    /// In upload order: `metrics.json` first, then by path.
    pub files: Vec<OutputFile>,
    pub bytes: u64,
    /// Some files did not fit under the caps.
    pub truncated: bool,
    /// Files left out, with why (at most [`MAX_SKIPPED_NAMED`] named, then a count).
    pub skipped: Vec<String>,
}

/// Chooses the files to upload: in a fixed order (`metrics.json` first, so that the metrics
/// survive any cap, then by path), each file that still fits under both caps. Whole files only:
/// one that does not fit is left out (and the task is truncated), smaller ones after it may
/// still be kept.
pub fn plan(found: Vec<Found>, policy: &ResultsPolicy) -> UploadPlan {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for f in found {
        match f {
            Found::File { path, size } => files.push(OutputFile { path, size }),
            Found::Other { path, what } => {
                skipped.push(format!("{}: {what}, not uploaded", shorten(&path)))
            }
        }
    }
    files.sort_by(|a, b| {
        (a.path != METRICS_FILE)
            .cmp(&(b.path != METRICS_FILE))
            .then_with(|| a.path.cmp(&b.path))
    });
    let mut plan = UploadPlan::default();
    let mut listing = 0;
    for f in files {
        if plan.files.len() >= policy.max_files {
            skipped.push(format!(
                "{}: past results.max_files ({})",
                shorten(&f.path),
                policy.max_files
            ));
        } else if listing + listing_cost(&f.path) > MAX_LISTING_BYTES {
            skipped.push(format!(
                "{}: the task's list of files is full ({MAX_LISTING_BYTES} bytes of paths)",
                shorten(&f.path)
            ));
        } else if plan.bytes.saturating_add(f.size) > policy.max_bytes {
            skipped.push(format!(
                "{}: {} bytes would pass results.max_bytes ({})",
                shorten(&f.path),
                f.size,
                policy.max_bytes
            ));
        } else {
            plan.bytes += f.size;
            listing += listing_cost(&f.path);
            plan.files.push(f);
            continue;
        }
        plan.truncated = true;
    }
    plan.skipped = bound(skipped);
    plan
}

/// A path as a left-out file's line names it: at most 256 bytes of it.
fn shorten(path: &str) -> String {
    if path.len() <= 256 {
        return path.to_string();
    }
    let mut end = 256;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// Names the first left-out files and counts the rest, so that a task that left a million
/// files does not make a million-line journal entry.
pub fn bound(mut skipped: Vec<String>) -> Vec<String> {
    if skipped.len() > MAX_SKIPPED_NAMED {
        let more = skipped.len() - MAX_SKIPPED_NAMED;
        skipped.truncate(MAX_SKIPPED_NAMED);
        skipped.push(format!("… and {more} more"));
    }
    skipped
}

/// Reads a task's `metrics.json`: an object of metric name → number. Numbers are kept; anything
/// else is named in the error, so that a typo is seen rather than silently dropped.
pub fn parse_metrics(bytes: &[u8]) -> (BTreeMap<String, f64>, Option<String>) {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return (BTreeMap::new(), Some(format!("{METRICS_FILE}: {e}"))),
    };
    let serde_json::Value::Object(entries) = value else {
        return (
            BTreeMap::new(),
            Some(format!(
                "{METRICS_FILE} must be an object of metric name → number, not {}",
                kind(&value)
            )),
        );
    };
    let mut metrics = BTreeMap::new();
    let mut bad = Vec::new();
    for (name, value) in entries {
        match value.as_f64() {
            Some(x) => {
                metrics.insert(name, x);
            }
            None => bad.push(format!("'{name}' is {}", kind(&value))),
        }
    }
    let error = (!bad.is_empty()).then(|| {
        format!(
            "{METRICS_FILE}: not a number: {} (metrics are numbers)",
            bad.join(", ")
        )
    });
    (metrics, error)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Lowercase hex of a digest, as [`herd_bus::ResultObject::sha256`] holds it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Found {
        Found::File {
            path: path.into(),
            size,
        }
    }

    fn paths(p: &UploadPlan) -> Vec<&str> {
        p.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn everything_under_the_caps_is_uploaded_metrics_first_then_by_path() {
        let p = plan(
            vec![
                file("z.log", 3),
                file("a/b/c.bin", 5),
                file(METRICS_FILE, 2),
                file("a/a.txt", 1),
            ],
            &ResultsPolicy::default(),
        );
        assert_eq!(paths(&p), ["metrics.json", "a/a.txt", "a/b/c.bin", "z.log"]);
        assert_eq!(p.bytes, 11);
        assert!(!p.truncated);
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn a_file_over_the_byte_cap_is_left_out_and_the_task_truncated() {
        let policy = ResultsPolicy {
            max_bytes: 100,
            ..ResultsPolicy::default()
        };
        let p = plan(
            vec![
                file("big", 90),
                file("huge", 500),
                file("small", 10),
                file(METRICS_FILE, 5),
            ],
            &policy,
        );
        // metrics.json first (5), big (95); huge does not fit; small no longer fits either.
        assert_eq!(paths(&p), ["metrics.json", "big"]);
        assert_eq!(p.bytes, 95);
        assert!(p.truncated);
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert!(p.skipped[0].starts_with("huge: 500 bytes would pass results.max_bytes (100)"));
        // A smaller file after one that did not fit is still kept.
        let p = plan(vec![file("a", 60), file("b", 60), file("c", 40)], &policy);
        assert_eq!(paths(&p), ["a", "c"]);
        assert!(p.truncated);
    }

    #[test]
    fn the_file_cap_truncates_and_other_entries_are_named_not_uploaded() {
        let policy = ResultsPolicy {
            max_files: 2,
            ..ResultsPolicy::default()
        };
        let p = plan(
            vec![
                file("c", 1),
                file("b", 1),
                file("a", 1),
                Found::Other {
                    path: "link".into(),
                    what: "a symbolic link".into(),
                },
            ],
            &policy,
        );
        assert_eq!(paths(&p), ["a", "b"]);
        assert!(p.truncated);
        assert_eq!(
            p.skipped,
            [
                "link: a symbolic link, not uploaded",
                "c: past results.max_files (2)"
            ]
        );
        // A link alone does not truncate: nothing was cut for size.
        let p = plan(
            vec![Found::Other {
                path: "fifo".into(),
                what: "a FIFO".into(),
            }],
            &ResultsPolicy::default(),
        );
        assert!(!p.truncated && p.files.is_empty() && p.skipped.len() == 1);
    }

    #[test]
    fn long_paths_fill_the_listing_before_the_caps() {
        let long = "d/".repeat(2000);
        let found = (0..100)
            .map(|i| file(&format!("{long}{i:03}"), 1))
            .collect();
        let p = plan(found, &ResultsPolicy::default());
        let listed: usize = p.files.iter().map(|f| listing_cost(&f.path)).sum();
        assert!(listed <= MAX_LISTING_BYTES);
        assert_eq!(
            p.files.len(),
            MAX_LISTING_BYTES / listing_cost(&p.files[0].path)
        );
        assert!(p.truncated);
        assert!(
            p.skipped[0].ends_with("bytes of paths)"),
            "{}",
            p.skipped[0]
        );
        assert!(p.skipped[0].len() < 400, "a long path is shortened");
    }

    #[test]
    fn many_left_out_files_are_counted_past_the_first_ones() {
        let policy = ResultsPolicy {
            max_files: 0,
            ..ResultsPolicy::default()
        };
        let found = (0..100).map(|i| file(&format!("f{i:03}"), 1)).collect();
        let p = plan(found, &policy);
        assert_eq!(p.skipped.len(), MAX_SKIPPED_NAMED + 1);
        assert_eq!(p.skipped.last().unwrap(), "… and 80 more");
        assert!(p.skipped[0].starts_with("f000"));
    }

    #[test]
    fn metrics_are_numbers_by_name_and_anything_else_is_named() {
        let (m, e) = parse_metrics(br#"{"latency_ms": 12.5, "ops": 1000, "neg": -1e-3}"#);
        assert_eq!(e, None);
        assert_eq!(m.len(), 3);
        assert_eq!(m["latency_ms"], 12.5);
        assert_eq!(m["ops"], 1000.0);
        assert_eq!(m["neg"], -0.001);

        let (m, e) =
            parse_metrics(br#"{"ok": 1, "name": "fast", "flag": true, "nested": {"a": 1}}"#);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["ok"]);
        let e = e.unwrap();
        assert!(e.contains("'name' is a string"), "{e}");
        assert!(e.contains("'flag' is a boolean"), "{e}");
        assert!(e.contains("'nested' is an object"), "{e}");

        let (m, e) = parse_metrics(b"[1, 2]");
        assert!(m.is_empty());
        assert_eq!(
            e.unwrap(),
            "metrics.json must be an object of metric name → number, not an array"
        );
        let (m, e) = parse_metrics(b"{\"a\": 1,");
        assert!(m.is_empty());
        assert!(e.unwrap().starts_with("metrics.json: EOF"));
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
