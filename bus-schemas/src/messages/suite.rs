//! Benchmark campaigns in one run: a suite of named workloads, setup and teardown phases on
//! every node, parameter matrices, inputs shipped through the object store, and retries with
//! every attempt kept.

use crate::ids::{NodeId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The object store bucket that holds run inputs, one object per content digest.
pub const INPUTS_BUCKET: &str = "herd-inputs";

/// Its JetStream stream, by the object store's conventions.
pub const INPUTS_STREAM: &str = "OBJ_herd-inputs";

/// One file a run ships to every node (`herdctl run submit --input`): materialized, digest
/// checked, at `path` below each task's `HERD_INPUT_DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Relative path below the input directory, `/`-separated, no `..`.
    pub path: String,
    /// The object store's form of its SHA-256: `SHA-256=<base64url>`.
    pub digest: String,
    pub size: u64,
    /// Materialized with mode 0755 instead of 0644.
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub executable: bool,
}

/// The object holding a file of this digest in [`INPUTS_BUCKET`]: the same content is stored
/// once, whatever its name and run.
pub fn input_object_name(digest: &str) -> String {
    format!(
        "sha256/{}",
        digest.strip_prefix("SHA-256=").unwrap_or(digest)
    )
}

/// Why `path` cannot be an input's path, if it cannot: it must be relative, `/`-separated,
/// with no empty, `.` or `..` segment and no NUL byte (nodes write it below a task's input
/// directory, as root).
pub fn input_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("the path is empty")
    } else if path.starts_with('/') {
        Some("the path must be relative")
    } else if path.contains('\0') {
        Some("the path contains a NUL byte")
    } else if path.split('/').any(|seg| seg == "..") {
        Some("the path must not contain '..'")
    } else if path.split('/').any(|seg| seg.is_empty() || seg == ".") {
        Some("the path has an empty or '.' segment")
    } else {
        None
    }
}

/// `SHA-256=` and the base64url of 32 bytes (43 characters, padded or not).
fn is_sha256_digest(digest: &str) -> bool {
    let Some(b64) = digest.strip_prefix("SHA-256=") else {
        return false;
    };
    let b64 = b64.strip_suffix('=').unwrap_or(b64);
    b64.len() == 43
        && b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is wrong with a list of inputs, naming the input (`bench.sh: …`); None when nothing
/// is. The same check in herdctl, the coordinator and the node.
pub fn inputs_problem(inputs: &[InputFile]) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    for input in inputs {
        if let Some(why) = input_path_problem(&input.path) {
            return Some(format!("{:?}: {why}", input.path));
        }
        if !is_sha256_digest(&input.digest) {
            return Some(format!(
                "{}: digest {:?} is not SHA-256=<base64url of 32 bytes>",
                input.path, input.digest
            ));
        }
        if !seen.insert(input.path.as_str()) {
            return Some(format!("{}: listed twice", input.path));
        }
    }
    // A file and a directory of the same name cannot both be materialized.
    for input in inputs {
        let mut prefix = input.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if seen.contains(parent) {
                return Some(format!(
                    "{}: {parent} is an input file, not a directory",
                    input.path
                ));
            }
            prefix = parent;
        }
    }
    None
}

/// In which order a node runs its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOrder {
    /// Each workload (each variant in turn) with all its repetitions, then the next.
    #[default]
    WorkloadMajor,
    /// Repetition 1 of every workload and variant, then repetition 2, …
    RepMajor,
}

/// What a failed setup does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupFailure {
    /// That node's tasks are SKIPPED with the setup's error; the others go on.
    #[default]
    SkipNode,
    /// Every node's tasks not yet started are SKIPPED; running ones finish; teardown runs.
    AbortRun,
}

/// Where a task stands in its node's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    Setup,
    #[default]
    Workloads,
    Teardown,
}

impl TaskPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Setup => "setup",
            TaskPhase::Workloads => "workloads",
            TaskPhase::Teardown => "teardown",
        }
    }
}

/// A value of a matrix axis: written in the run file as a string, an integer, a float or a
/// boolean; seen by the workload as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// An earlier attempt of a task, kept in the journal when the task is run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAttempt {
    pub attempt: u32,
    pub status: super::TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<WorkloadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// It failed and was run again automatically (the workload's `retries`).
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub automatic: bool,
}

/// `cluster.run.retry` request: run again, in the same run, the tasks that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRetry {
    pub run_id: crate::ids::RunId,
    /// Only tasks in these statuses (default FAILED, STOPPED, SKIPPED, LOST).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<super::TaskStatus>,
    /// Only tasks on these nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeId>,
    /// Only tasks of these workloads (by name, or a variant's full name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
}

/// Reply data of `cluster.run.retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRetried {
    pub run_id: crate::ids::RunId,
    /// The tasks to run again, setup and teardown included.
    pub tasks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str) -> InputFile {
        InputFile {
            path: path.into(),
            digest: "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=".into(),
            size: 3,
            executable: false,
        }
    }

    #[test]
    fn only_plain_relative_paths_are_inputs() {
        for good in ["bench.sh", "data/a/b.csv", "tool-1.2.tar.gz", ".hidden/x"] {
            assert_eq!(input_path_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "the path is empty"),
            ("/etc/passwd", "the path must be relative"),
            ("../x", "the path must not contain '..'"),
            ("a/../../x", "the path must not contain '..'"),
            ("a//b", "the path has an empty or '.' segment"),
            ("a/", "the path has an empty or '.' segment"),
            ("./a", "the path has an empty or '.' segment"),
            ("a\0b", "the path contains a NUL byte"),
        ] {
            assert_eq!(input_path_problem(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn each_bad_input_is_named() {
        assert_eq!(inputs_problem(&[input("a.sh"), input("d/b.csv")]), None);
        let mut unpadded = input("u");
        unpadded.digest = "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0".into();
        assert_eq!(inputs_problem(&[unpadded]), None);
        assert_eq!(
            inputs_problem(&[input("a.sh"), input("../b")]).as_deref(),
            Some("\"../b\": the path must not contain '..'")
        );
        assert_eq!(
            inputs_problem(&[input("a.sh"), input("a.sh")]).as_deref(),
            Some("a.sh: listed twice")
        );
        assert_eq!(
            inputs_problem(&[input("d"), input("d/b.csv")]).as_deref(),
            Some("d/b.csv: d is an input file, not a directory")
        );
        for digest in [
            "SHA-256=short",
            "MD5=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=",
        ] {
            let mut bad = input("x");
            bad.digest = digest.into();
            assert_eq!(
                inputs_problem(&[bad]),
                Some(format!(
                    "x: digest {digest:?} is not SHA-256=<base64url of 32 bytes>"
                ))
            );
        }
    }
}
