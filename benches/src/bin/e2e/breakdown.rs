//! Where a start's time goes: herdd and its shims mark each stage in a trace file
//! (`HERD_START_TRACE`, see `herd_shim::stage`), this bench marks the request and the event's
//! arrival on the same clock, and each start's window is cut at its stages.

use herd_shim::stage::StageMark;

/// The stages of one start, in order, with what happens between the previous one and it.
const STAGES: [(&str, &str); 11] = [
    (
        "api_start",
        "request over NATS to herdd, decoded, node admits it",
    ),
    (
        "driver_prepare",
        "executor: validation, record, `pending`/`starting` events",
    ),
    (
        "driver_cgroup_made",
        "cgroup made, limits written (every v1 hierarchy)",
    ),
    (
        "driver_launch_written",
        "user and environment resolved, `launch.json` written",
    ),
    (
        "driver_shim_started",
        "the spare shim handed the directory (or a shim spawned)",
    ),
    (
        "shim_main",
        "the shim wakes (a spare) or execs and loads (no spare)",
    ),
    (
        "shim_spawning",
        "the shim reads `launch.json`, starts its session and log files",
    ),
    (
        "shim_spawned",
        "fork, join the cgroup(s), exec the workload",
    ),
    (
        "driver_answered",
        "`state.json`, the shim's answer read by herdd",
    ),
    (
        "running_queued",
        "output followed, lifecycle: `running` queued",
    ),
    ("event_sent", "the event publisher sends it"),
];

/// One start's window on the trace's clock: request sent, event received.
pub(crate) struct Window {
    pub sent_ns: u64,
    pub received_ns: u64,
}

/// Per interval (what happens, median ms, p90 ms) and how many starts had every stage.
pub(crate) fn breakdown(
    marks: &[StageMark],
    windows: &[Window],
) -> (Vec<(String, f64, f64)>, usize) {
    let mut per: Vec<Vec<f64>> = vec![vec![]; STAGES.len() + 1];
    let mut complete = 0;
    let mut i = 0;
    for w in windows {
        while i < marks.len() && marks[i].ns < w.sent_ns {
            i += 1;
        }
        let mut times = Vec::with_capacity(STAGES.len() + 2);
        times.push(w.sent_ns);
        let mut j = i;
        for (stage, _) in STAGES {
            while j < marks.len() && marks[j].ns <= w.received_ns && marks[j].stage != stage {
                j += 1;
            }
            if j >= marks.len() || marks[j].ns > w.received_ns {
                break;
            }
            times.push(marks[j].ns);
        }
        if times.len() != STAGES.len() + 1 {
            continue;
        }
        times.push(w.received_ns);
        complete += 1;
        for (k, pair) in times.windows(2).enumerate() {
            per[k].push(pair[1].saturating_sub(pair[0]) as f64 / 1e6);
        }
    }
    let names = STAGES
        .iter()
        .map(|(name, what)| format!("→ `{name}`: {what}"))
        .chain(std::iter::once(
            "→ event received: NATS to the subscriber".to_string(),
        ));
    let rows = names
        .zip(per)
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            let (p50, p90) = if v.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                (super::percentile(&v, 0.5), super::percentile(&v, 0.9))
            };
            (name, p50, p90)
        })
        .collect();
    (rows, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_cut_at_its_stages_in_order() {
        let mut marks = vec![];
        for (k, (stage, _)) in STAGES.iter().enumerate() {
            marks.push(StageMark {
                ns: 1_000_000 * (k as u64 + 1),
                pid: 1,
                stage: stage.to_string(),
            });
        }
        let w = Window {
            sent_ns: 0,
            received_ns: 20_000_000,
        };
        let (rows, complete) = breakdown(&marks, &[w]);
        assert_eq!(complete, 1);
        assert_eq!(rows.len(), STAGES.len() + 1);
        assert!((rows[0].1 - 1.0).abs() < 1e-9);
        assert!((rows[STAGES.len()].1 - 9.0).abs() < 1e-9);
    }
}
