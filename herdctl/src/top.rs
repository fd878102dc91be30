//! `herdctl top`: the fleet, live, from heartbeats (nodes, their usage and workloads) and
//! telemetry (each workload's CPU and memory between heartbeats).

use crate::render::{human_bytes, Table};
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{Heartbeat, TelemetryBatch};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What top knows: the last heartbeat of each node, and the last sample of each workload.
#[derive(Default)]
pub struct FleetView {
    nodes: BTreeMap<String, (Heartbeat, Instant)>,
    samples: BTreeMap<(String, String), (Option<f64>, u64)>,
}

/// One line of the view; `node` rows carry gauges, workload rows are indented under them.
pub struct Row {
    pub cells: Vec<String>,
    pub is_node: bool,
    pub silent: bool,
}

fn bar(frac: f64, width: usize) -> String {
    let filled = (frac.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "·".repeat(width - filled))
}

impl FleetView {
    pub fn on_heartbeat(&mut self, hb: Heartbeat) {
        self.nodes
            .insert(hb.node_id.to_string(), (hb, Instant::now()));
    }

    pub fn on_telemetry(&mut self, batch: TelemetryBatch) {
        let node = batch.node_id.to_string();
        for s in batch.samples {
            self.samples.insert(
                (node.clone(), s.workload_id.to_string()),
                (s.cpu_percent, s.memory_working_set),
            );
        }
    }

    pub const HEADER: [&'static str; 7] = [
        "NODE / WORKLOAD",
        "STATE",
        "CPU",
        "CPU%",
        "MEMORY",
        "MEM",
        "INFO",
    ];

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (id, (hb, seen)) in &self.nodes {
            let silent = seen.elapsed() > Duration::from_millis(3 * hb.interval_ms.max(1));
            let used = hb.capacity.memory.saturating_sub(hb.usage.memory_available);
            let cores = hb.capacity.cpus.max(1.0);
            rows.push(Row {
                cells: vec![
                    id.clone(),
                    if silent {
                        "SILENT".into()
                    } else {
                        hb.state.as_str().to_string()
                    },
                    bar(hb.usage.cpu_percent / 100.0 / cores, 10),
                    format!("{:.0}/{}", hb.usage.cpu_percent, cores * 100.0),
                    bar(used as f64 / hb.capacity.memory.max(1) as f64, 10),
                    format!("{}/{}", human_bytes(used), human_bytes(hb.capacity.memory)),
                    format!(
                        "{} workloads, load {:.2}",
                        hb.workloads.len(),
                        hb.usage.load_avg[0]
                    ),
                ],
                is_node: true,
                silent,
            });
            for w in &hb.workloads {
                let (cpu, mem) = self
                    .samples
                    .get(&(id.clone(), w.workload_id.to_string()))
                    .copied()
                    .unwrap_or((w.cpu_percent, w.memory.unwrap_or(0)));
                rows.push(Row {
                    cells: vec![
                        format!("  {}", w.workload_id),
                        w.state.as_str().to_string(),
                        cpu.map(|c| bar(c / 100.0, 10)).unwrap_or_default(),
                        cpu.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
                        String::new(),
                        human_bytes(mem),
                        w.run_id
                            .as_ref()
                            .map(|r| format!("run {r} rep {}", w.rep.unwrap_or(0)))
                            .unwrap_or_default(),
                    ],
                    is_node: false,
                    silent,
                });
            }
        }
        rows
    }
}

fn decode<T: serde::de::DeserializeOwned>(msg: &async_nats::Message) -> Option<T> {
    codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).ok()
}

/// Runs top until `q`, Esc or Ctrl-C; without a terminal, prints one snapshot after `settle`.
pub async fn run(
    client: &async_nats::Client,
    subjects: &herd_bus::Subjects,
    settle: Duration,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut hb = client.subscribe(subjects.heartbeats_all()).await?;
    let mut tel = client.subscribe(subjects.telemetry_all()).await?;
    let mut view = FleetView::default();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if !interactive {
        let end = tokio::time::Instant::now() + settle;
        loop {
            tokio::select! {
                Some(m) = hb.next() => if let Some(h) = decode(&m) { view.on_heartbeat(h) },
                Some(m) = tel.next() => if let Some(t) = decode(&m) { view.on_telemetry(t) },
                _ = tokio::time::sleep_until(end) => break,
            }
        }
        let mut t = Table::new(&FleetView::HEADER);
        for r in view.rows() {
            t.row(r.cells);
        }
        print!("{}", t.render());
        return Ok(());
    }
    let mut terminal = ratatui::init();
    let result = async {
        let mut redraw = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                Some(m) = hb.next() => if let Some(h) = decode(&m) { view.on_heartbeat(h) },
                Some(m) = tel.next() => if let Some(t) = decode(&m) { view.on_telemetry(t) },
                _ = redraw.tick() => {
                    terminal.draw(|f| draw(f, &view))?;
                    if quit_requested()? {
                        return Ok::<(), anyhow::Error>(());
                    }
                }
            }
        }
    }
    .await;
    ratatui::restore();
    result
}

fn quit_requested() -> std::io::Result<bool> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    while event::poll(Duration::ZERO)? {
        if let Event::Key(k) = event::read()? {
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn draw(f: &mut ratatui::Frame, view: &FleetView) {
    use ratatui::layout::Constraint;
    use ratatui::style::{Modifier, Style, Stylize};
    use ratatui::widgets::{Block, Row as TRow, Table};
    let rows = view.rows();
    let nodes = rows.iter().filter(|r| r.is_node).count();
    let silent = rows.iter().filter(|r| r.is_node && r.silent).count();
    let table = Table::new(
        rows.iter().map(|r| {
            let row = TRow::new(r.cells.clone());
            match (r.is_node, r.silent) {
                (_, true) => row.red(),
                (true, false) => row.add_modifier(Modifier::BOLD),
                (false, false) => row,
            }
        }),
        [
            Constraint::Length(28),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(12),
            Constraint::Min(10),
        ],
    )
    .header(TRow::new(FleetView::HEADER).style(Style::new().add_modifier(Modifier::REVERSED)))
    .block(Block::bordered().title(format!(
        " herd top — {nodes} nodes, {silent} silent — q to quit "
    )));
    f.render_widget(table, f.area());
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::fixtures;

    #[test]
    fn rows_show_nodes_then_their_workloads_with_telemetry_overlaid() {
        let mut v = FleetView::default();
        v.on_heartbeat(fixtures::heartbeat(2));
        let mut batch = fixtures::telemetry_batch(1);
        batch.samples[0].workload_id = herd_bus::WorkloadId::new("w-0001").unwrap();
        batch.samples[0].cpu_percent = Some(77.0);
        v.on_telemetry(batch);
        let rows = v.rows();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_node && rows[0].cells[0] == "node-1");
        assert_eq!(rows[1].cells[3], "49.7", "from the heartbeat");
        assert_eq!(rows[2].cells[3], "77.0", "from telemetry, newer");
        assert_eq!(bar(0.5, 4), "██··");
    }
}
