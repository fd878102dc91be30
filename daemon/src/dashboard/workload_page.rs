//! A workload's page: its spec (env values never shown), state and its history, what it used,
//! charts of its telemetry and its output as `herdctl logs --no-follow` prints it.

use super::html::{ago, bytes, chart, esc, region, secs, url, Frame};
use herd_bus::{LogStream, TelemetryBatch, WorkloadStatus};

/// State, times, exit and resource summary: what changes while the page is open.
pub fn summary(w: &WorkloadStatus, now_ms: u64, actions: bool) -> String {
    let mut out = format!(
        "<dl class=\"facts\" data-workload=\"{id}\" data-state=\"{state}\">\
         <dt>State</dt><dd><span class=\"badge {state}\">{state}</span></dd>\
         <dt>Created</dt><dd>{created}</dd>",
        id = esc(w.workload_id.as_str()),
        state = w.state.as_str(),
        created = ago(w.created_at_ms, now_ms),
    );
    let mut fact = |name: &str, value: String| {
        out.push_str(&format!("<dt>{name}</dt><dd>{value}</dd>"));
    };
    if let Some(pid) = w.pid {
        fact("PID", pid.to_string());
    }
    if let Some(t) = w.started_at_ms {
        fact("Started", ago(t, now_ms));
    }
    if let Some(t) = w.finished_at_ms {
        fact("Finished", ago(t, now_ms));
        if let Some(s) = w.started_at_ms {
            fact("Ran", secs(t.saturating_sub(s) as f64 / 1000.0));
        }
    }
    if let Some(c) = w.exit_code {
        fact("Exit code", c.to_string());
    }
    if let Some(s) = &w.signal {
        fact("Signal", esc(s));
    }
    if let Some(r) = &w.reason {
        fact("Reason", esc(r));
    }
    if w.restarts > 0 {
        fact("Restarts", w.restarts.to_string());
    }
    if let Some(r) = &w.resources {
        let mut used = format!(
            "CPU {:.2} s user, {:.2} s system",
            r.cpu_user_s, r.cpu_system_s
        );
        if let Some(p) = r.cpu_mean_pct {
            used.push_str(&format!(" (mean {p:.1} %)"));
        }
        if let Some(m) = r.memory_peak_bytes {
            used.push_str(&format!("; memory peak {}", bytes(m)));
        }
        if let Some(p) = r.pids_peak {
            used.push_str(&format!("; {p} processes at most"));
        }
        used.push_str(&format!(
            "; read {}, wrote {}",
            bytes(r.io_read_bytes),
            bytes(r.io_write_bytes)
        ));
        if r.oom_kills > 0 {
            used.push_str(&format!("; {} OOM kills", r.oom_kills));
        }
        fact("Used", esc(&used));
    }
    if actions && !w.state.is_terminal() {
        fact(
            "Actions",
            format!(
                "<button class=\"danger\" data-action=\"stop-workload\" data-node=\"{}\" data-workload=\"{}\">Stop</button>",
                esc(w.node_id.as_str()),
                esc(w.workload_id.as_str())
            ),
        );
    }
    out.push_str("</dl>");
    out
}

/// What was asked for. Environment values are never rendered: only their names.
fn spec(w: &WorkloadStatus) -> String {
    let s = &w.spec;
    let mut out = String::from("<dl class=\"facts spec\">");
    let mut fact = |name: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("<dt>{name}</dt><dd>{value}</dd>"));
        }
    };
    fact("Driver", format!("{:?}", s.driver).to_lowercase());
    fact("Image", esc(s.image.as_deref().unwrap_or("")));
    fact(
        "Command",
        format!("<code>{}</code>", esc(&s.command.join(" "))),
    );
    let mut limits = vec![];
    if let Some(c) = s.limits.cpu {
        limits.push(format!("{c} CPU"));
    }
    if let Some(m) = s.limits.memory {
        limits.push(format!("{} memory", bytes(m)));
    }
    if let Some(p) = s.limits.pids {
        limits.push(format!("{p} pids"));
    }
    fact("Limits", esc(&limits.join(", ")));
    let env: Vec<String> = s
        .env
        .keys()
        .map(|k| format!("<code>{}</code>", esc(k)))
        .collect();
    if !env.is_empty() {
        fact(
            "Environment",
            format!("{} <small>(values are not shown)</small>", env.join(" ")),
        );
    }
    fact("User", esc(s.user.as_deref().unwrap_or("")));
    fact("Working dir", esc(w.work_dir.as_deref().unwrap_or("")));
    if let Some(r) = &s.run_id {
        fact(
            "Run",
            format!(
                "<a href=\"/run/{}\">{}</a> rep {}",
                url(r.as_str()),
                esc(r.as_str()),
                s.rep.unwrap_or(0)
            ),
        );
    }
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
        .collect();
    fact("Labels", labels.join(" "));
    out.push_str("</dl>");
    out
}

/// The workload's output, stdout and stderr interleaved as kept, one element per line.
pub fn logs(lines: &[(LogStream, String)]) -> String {
    let mut out = String::from("<pre class=\"logs\" id=\"logs\">");
    for (stream, line) in lines {
        out.push_str(&format!(
            "<span class=\"{}\">{}</span>\n",
            stream.as_str(),
            esc(line)
        ));
    }
    out.push_str("</pre>");
    out
}

/// The workload's CPU and memory points from the node's telemetry history.
/// A chart's points: `(ts_ms, value)`.
type Series = Vec<(u64, f64)>;

/// Its CPU %, memory (MiB) and GPU % (summed over its GPUs; empty without GPU readings).
fn points(w: &WorkloadStatus, batches: &[TelemetryBatch]) -> (Series, Series, Series) {
    let (mut cpu, mut memory, mut gpu) = (vec![], vec![], vec![]);
    for b in batches {
        for s in b.samples.iter().filter(|s| s.workload_id == w.workload_id) {
            if let Some(c) = s.cpu_percent {
                cpu.push((b.ts_ms, c));
            }
            memory.push((b.ts_ms, s.memory_working_set as f64 / (1u64 << 20) as f64));
            if !s.gpus.is_empty() {
                gpu.push((b.ts_ms, s.gpus.iter().map(|g| g.utilization_percent).sum()));
            }
        }
    }
    (cpu, memory, gpu)
}

/// The whole page. `history` is the state history known when the page is made (the script
/// adds the changes that follow).
pub fn page(
    frame: &Frame,
    w: &WorkloadStatus,
    batches: &[TelemetryBatch],
    log_lines: &[(LogStream, String)],
    logs_error: Option<&str>,
    now_ms: u64,
) -> String {
    let (n, id) = (url(w.node_id.as_str()), url(w.workload_id.as_str()));
    let (cpu, memory, gpu) = points(w, batches);
    let mut history = vec![("created", w.created_at_ms)];
    if let Some(t) = w.started_at_ms {
        history.push(("started", t));
    }
    if let Some(t) = w.finished_at_ms {
        history.push((w.state.as_str(), t));
    }
    let history: String = history
        .iter()
        .rev()
        .map(|(what, t)| format!("<li>{} {what}</li>", ago(*t, now_ms)))
        .collect();
    let logs_note = logs_error
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    frame.render(&format!(
        "<h1>Workload {wid} <small>on <a href=\"/node/{n}\">{node}</a></small></h1>\
         <div class=\"columns\"><div>{summary}</div><div><h2>Spec</h2>{spec}</div></div>\
         <div class=\"charts\">{cpu_chart}{mem_chart}{gpu_chart}</div>\
         <h2>State history</h2><ol class=\"feed\" id=\"feed\" data-feed=\"workload\">{history}</ol>\
         <h2>Output</h2>{logs_note}{logs}",
        wid = esc(w.workload_id.as_str()),
        node = esc(w.node_id.as_str()),
        summary = region(
            "summary",
            &format!("/f/node/{n}/workload/{id}/summary"),
            "workload",
            &summary(w, now_ms, frame.actions)
        ),
        spec = spec(w),
        cpu_chart = chart("cpu", w.workload_id.as_str(), "%", &cpu),
        mem_chart = chart("memory", w.workload_id.as_str(), "MiB", &memory),
        // Where it has GPU readings (NVML on its node): a third chart.
        gpu_chart = if gpu.is_empty() {
            String::new()
        } else {
            chart("gpu", w.workload_id.as_str(), "%", &gpu)
        },
        logs = region(
            "output",
            &format!("/f/node/{n}/workload/{id}/logs"),
            "log workload",
            &logs(log_lines)
        ),
    ))
}
