//! Where two RunSpecs differ, by field: what a resubmission or a retry that conflicts with its
//! journal is told.

use crate::messages::RunSpec;
use serde_json::Value;

/// The fields in which `a` and `b` differ, as dotted paths (`workloads.fio.matrix.threads`,
/// `repetitions`); a suite's workloads are named by their names, other lists by position.
pub fn differences(a: &RunSpec, b: &RunSpec) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return vec!["(unencodable)".into()];
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A list of objects all with a `name`: keyed by it.
fn named(list: &[Value]) -> Option<Vec<(String, &Value)>> {
    list.iter()
        .map(|v| Some((v.get("name")?.as_str()?.to_string(), v)))
        .collect()
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    // Deep enough to name the field; below it, the field as a whole.
    let depth = path.matches('.').count();
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if depth < 4 => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                walk(
                    &join(path, k),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if depth < 4 => {
            if let (Some(nx), Some(ny)) = (named(x), named(y)) {
                let mut names: Vec<&String> = nx.iter().chain(&ny).map(|(n, _)| n).collect();
                names.sort();
                names.dedup();
                for n in names {
                    let null = Value::Null;
                    let find = |l: &[(String, &Value)]| {
                        l.iter().find(|(m, _)| m == n).map(|(_, v)| (*v).clone())
                    };
                    walk(
                        &join(path, n),
                        &find(&nx).unwrap_or(null.clone()),
                        &find(&ny).unwrap_or(null),
                        out,
                    );
                }
                if out.last().map(String::as_str) != Some(path)
                    && nx.iter().map(|p| &p.0).ne(ny.iter().map(|p| &p.0))
                {
                    out.push(format!("{path} (order)"));
                }
            } else {
                out.push(path.to_string());
            }
        }
        _ => out.push(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ParamValue, WorkloadSpec};

    #[test]
    fn differences_name_the_fields() {
        let w = |name: &str| WorkloadSpec {
            name: Some(name.into()),
            command: vec!["true".into()],
            ..Default::default()
        };
        let a = RunSpec {
            workloads: vec![w("a"), w("b")],
            repetitions: 2,
            ..Default::default()
        };
        assert!(differences(&a, &a).is_empty());
        let mut b = a.clone();
        b.repetitions = 3;
        b.workloads[1]
            .matrix
            .insert("threads".into(), vec![ParamValue::Int(1)]);
        b.workloads[0].command = vec!["false".into()];
        assert_eq!(
            differences(&a, &b),
            ["repetitions", "workloads.a.command", "workloads.b.matrix"]
        );
        let mut c = a.clone();
        c.workloads.swap(0, 1);
        assert_eq!(differences(&a, &c), ["workloads (order)"]);
    }
}
