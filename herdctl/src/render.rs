//! What herdctl prints: tables, human units, a run's progress and task table.

use herd_bus::{Driver, ResourceSummary, RunRecord, TaskStatus, WorkloadSpec};
use serde::Serialize;

/// Prints to stdout; a closed pipe (`herdctl ps | head`) ends the program quietly.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// The command, and for a container its image first (`docker:IMAGE CMD`).
pub fn describe_command(spec: &WorkloadSpec) -> String {
    match (spec.driver, &spec.image) {
        (Driver::Docker, Some(image)) if spec.command.is_empty() => format!("docker:{image}"),
        (Driver::Docker, Some(image)) => format!("docker:{image} {}", spec.command.join(" ")),
        _ => spec.command.join(" "),
    }
}

/// A state's wire name (`stop_failed`), as `--state` takes it.
pub fn state_name<T: Serialize>(s: T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// One progress bar per node: settled repetitions of all, and what runs now.
pub fn progress(run: &RunRecord) -> String {
    let mut by_node: std::collections::BTreeMap<String, Vec<&herd_bus::TaskRecord>> =
        Default::default();
    for t in &run.tasks {
        by_node.entry(t.node_id.to_string()).or_default().push(t);
    }
    let mut s = format!("run {} — {}\n", run.run_id, state_name(run.state));
    s += &queued_line(run);
    for (node, tasks) in by_node {
        let done = tasks
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Pending | TaskStatus::Running))
            .count();
        let total = tasks.len();
        let width = 20;
        let filled = done * width / total.max(1);
        let now = tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running)
            .map(|t| match (t.phase, &t.workload) {
                (herd_bus::TaskPhase::Workloads, Some(w)) => {
                    format!("workloads: {w} rep {} running", t.rep)
                }
                (herd_bus::TaskPhase::Workloads, None) => format!("rep {} running", t.rep),
                (phase, _) => format!("{} running", phase.as_str()),
            })
            .unwrap_or_default();
        let failed = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .count();
        s += &format!(
            "  {node:<20} [{}{}] {done}/{total} {now}{}\n",
            "#".repeat(filled),
            ".".repeat(width - filled),
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            }
        );
    }
    s
}

/// "queued: <reason>" while the run waits for room, else nothing.
pub fn queued_line(run: &RunRecord) -> String {
    match (&run.state, &run.queued_reason) {
        (herd_bus::RunState::Queued, Some(why)) => format!("queued: {why}\n"),
        (herd_bus::RunState::Queued, None) => "queued\n".into(),
        _ => String::new(),
    }
}

/// One line per task: status, duration, exit code, what it used once its node measured it
/// (CPU time, mean CPU where 100% is one core, peak memory, bytes read/written), error.
pub fn task_table(run: &RunRecord) -> String {
    let measured = run.tasks.iter().any(|t| t.resources.is_some());
    let mut header = vec!["TASK", "STATUS", "DURATION", "EXIT"];
    if measured {
        header.extend(["CPU", "CPU%", "MEM PEAK", "IO R/W"]);
    }
    header.push("ERROR");
    let mut t = Table::new(&header);
    for task in &run.tasks {
        let status = if task.attempt > 1 {
            format!("{} (attempt {})", state_name(task.status), task.attempt)
        } else {
            state_name(task.status)
        };
        let mut cells = vec![
            task.task_id.clone(),
            status,
            task.duration_s
                .map(|d| format!("{d:.2}s"))
                .unwrap_or_default(),
            task.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ];
        if measured {
            cells.extend(resource_cells(task.resources.as_ref()));
        }
        cells.push(task.error.clone().unwrap_or_default());
        t.row(cells);
    }
    t.render()
}

/// CPU time, mean CPU, peak memory and IO of a task; blank where not measured.
fn resource_cells(used: Option<&ResourceSummary>) -> [String; 4] {
    let Some(r) = used else {
        return Default::default();
    };
    [
        format!("{:.2}s", r.cpu_user_s + r.cpu_system_s),
        r.cpu_mean_pct
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_default(),
        r.memory_peak_bytes.map(human_bytes).unwrap_or_default(),
        format!(
            "{}/{}",
            human_bytes(r.io_read_bytes),
            human_bytes(r.io_write_bytes)
        ),
    ]
}

/// Wall-clock milliseconds since the epoch, the unit of the bus's timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// At most `max` characters, with `…` for what was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// `1.5G`, `64M`, `512K`, `100B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v >= 10.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{n}B")
}

/// `3d4h`, `5m12s`, `42s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// A plain left-aligned text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.7), "42s");
        assert_eq!(human_duration(312.0), "5m12s");
        assert_eq!(human_duration(3.0 * 3600.0 + 120.0), "3h2m");
        assert_eq!(human_duration(90000.0), "1d1h");
    }

    #[test]
    fn sizes_print() {
        assert_eq!(human_bytes(64 << 20), "64M");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(100), "100B");
    }

    #[test]
    fn a_run_shows_one_bar_per_node_and_its_tasks() {
        use herd_bus::{fixtures, NodeId, RunState, TaskRecord};
        let task = |node: &str, rep: u32, status: TaskStatus| TaskRecord {
            task_id: format!("{node}::bench::{rep}"),
            node_id: NodeId::new(node).unwrap(),
            rep,
            status,
            workload: None,
            phase: Default::default(),
            attempt: 1,
            attempts: vec![],
            ..fixtures::task_record()
        };
        let run = RunRecord {
            run_id: fixtures::run_id(),
            state: RunState::Running,
            spec: fixtures::run_spec(),
            created_at_ms: 0,
            updated_at_ms: 0,
            tasks: vec![
                task("a", 0, TaskStatus::Completed),
                task("a", 1, TaskStatus::Running),
                task("b", 0, TaskStatus::Failed),
                task("b", 1, TaskStatus::Completed),
            ],
            unconfirmed_nodes: vec![],
            queued_reason: None,
        };
        let view = progress(&run);
        let lines: Vec<&str> = view.lines().collect();
        assert_eq!(lines.len(), 3, "{view}");
        assert!(lines[0].ends_with("running"), "{view}");
        assert!(lines[1].contains("1/2 rep 1 running"), "{view}");
        assert!(
            lines[2].contains("2/2") && lines[2].ends_with("(1 failed)"),
            "{view}"
        );
        let table = task_table(&run);
        assert!(table.starts_with("TASK"), "{table}");
        assert!(table.contains("b::bench::0  FAILED"), "{table}");
        assert!(!table.contains("CPU"), "nothing measured yet: {table}");

        let mut run = run;
        run.tasks[2].resources = Some(ResourceSummary {
            cpu_user_s: 1.5,
            cpu_system_s: 0.25,
            cpu_mean_pct: Some(87.5),
            memory_peak_bytes: Some(96 << 20),
            io_read_bytes: 2048,
            io_write_bytes: 3 << 20,
            ..Default::default()
        });
        let table = task_table(&run);
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            header,
            ["TASK", "STATUS", "DURATION", "EXIT", "CPU", "CPU%", "MEM PEAK", "IO R/W", "ERROR"]
        );
        let measured: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            measured,
            [
                "b::bench::0",
                "FAILED",
                "9.00s",
                "0",
                "1.75s",
                "88%",
                "96M",
                "2.0K/3.0M"
            ]
        );
        assert_eq!(lines[1].split_whitespace().count(), 4, "{table}");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }

    #[test]
    fn a_queued_run_says_why_it_waits() {
        use herd_bus::{fixtures, RunState};
        let mut run = RunRecord {
            run_id: fixtures::run_id(),
            state: RunState::Queued,
            spec: fixtures::run_spec(),
            created_at_ms: 0,
            updated_at_ms: 0,
            tasks: vec![],
            unconfirmed_nodes: vec![],
            queued_reason: Some("targets.nodes: no room now on a: cpu: needs 1 CPUs".into()),
        };
        let view = progress(&run);
        assert!(view.lines().next().unwrap().ends_with("— queued"), "{view}");
        assert_eq!(
            view.lines().nth(1),
            Some("queued: targets.nodes: no room now on a: cpu: needs 1 CPUs")
        );
        run.state = RunState::Running;
        assert_eq!(queued_line(&run), "", "only while it waits");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONG\nxyz  1\n");
    }
}
