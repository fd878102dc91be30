//! The report: criterion figures, growth per item, the machine.

use super::*;

/// Criterion's mean estimates (ns) by full bench id, from `target/criterion`.
pub(crate) fn criterion_means(dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench = std::fs::read(p.join("benchmark.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                    let est = std::fs::read(p.join("estimates.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                    if let (Some(b), Some(e)) = (bench, est) {
                        if let (Some(id), Some(mean)) =
                            (b["full_id"].as_str(), e["mean"]["point_estimate"].as_f64())
                        {
                            out.insert(id.to_string(), mean);
                        }
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    out
}

pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

pub(crate) fn criterion_sections(r: &mut Report, means: &BTreeMap<String, f64>, backend: &str) {
    let get = |id: &str| means.get(id).copied();
    r.line("## Codec (criterion `benches/benches/codec.rs`)\n");
    r.line("| message | encoding | bytes | encode | decode |");
    r.line("|---|---|---|---|---|");
    let hb = fixtures::heartbeat(100);
    let tb = fixtures::telemetry_batch(100);
    let sizes = [
        (
            "heartbeat_100_workloads",
            codec::encode(&hb, Encoding::MsgPack)
                .map(|b| b.len())
                .unwrap_or(0),
            codec::encode(&hb, Encoding::Json)
                .map(|b| b.len())
                .unwrap_or(0),
        ),
        (
            "telemetry_100_samples",
            codec::encode(&tb, Encoding::MsgPack)
                .map(|b| b.len())
                .unwrap_or(0),
            codec::encode(&tb, Encoding::Json)
                .map(|b| b.len())
                .unwrap_or(0),
        ),
    ];
    for (name, mp, js) in sizes {
        for (enc, bytes) in [("msgpack", mp), ("json", js)] {
            let e = get(&format!("{name}/encode/{enc}"));
            let d = get(&format!("{name}/decode/{enc}"));
            r.line(format!(
                "| {name} | {enc} | {bytes} | {} | {} |",
                e.map(fmt_ns).unwrap_or("-".into()),
                d.map(fmt_ns).unwrap_or("-".into())
            ));
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "-".into(),
        };
        r.line(format!(
            "| {name} | JSON ÷ MessagePack | {:.2}× | {} | {} |",
            js as f64 / mp as f64,
            ratio(
                get(&format!("{name}/encode/msgpack")),
                get(&format!("{name}/encode/json"))
            ),
            ratio(
                get(&format!("{name}/decode/msgpack")),
                get(&format!("{name}/decode/json"))
            )
        ));
    }
    r.line("");
    r.target(
        "heartbeat with 100 workloads, MessagePack",
        format!("{} bytes", sizes[0].1),
        "≤ 12 KB",
        sizes[0].1 <= 12_000,
    );

    r.line("## Collection (criterion `benches/benches/collection.rs`)\n");
    r.line(format!(
        "One telemetry tick (`Collector::collect`) over N idle workloads started by herd's exec \
         driver, each in its own real cgroup (backend **{backend}**), against the `sysinfo` crate \
         refreshing the same processes (cpu and memory) in the same bench. Mean of criterion's \
         samples; a tick re-reads memory.stat and the limit every 5th time (counters every \
         time), so the mean covers both kinds of tick.\n"
    ));
    r.line("| N | herd per tick | per workload | sysinfo per refresh | sysinfo ÷ herd |");
    r.line("|---|---|---|---|---|");
    let mut per_workload = vec![];
    for n in [10u32, 100, 1000] {
        let h = get(&format!("collection/herd/{n}"));
        let s = get(&format!("collection/sysinfo/{n}"));
        if let Some(h) = h {
            per_workload.push((n, h / n as f64));
        }
        r.line(format!(
            "| {n} | {} | {} | {} | {} |",
            h.map(fmt_ns).unwrap_or("-".into()),
            h.map(|h| fmt_ns(h / n as f64)).unwrap_or("-".into()),
            s.map(fmt_ns).unwrap_or("-".into()),
            match (h, s) {
                (Some(h), Some(s)) => format!("{:.1}×", s / h),
                _ => "-".into(),
            }
        ));
    }
    r.line("");
    r.line(growth("collection", &per_workload, "workload"));
    if let (Some(h), Some(s)) = (get("collection/herd/100"), get("collection/sysinfo/100")) {
        r.target(
            "collection, 100 workloads",
            fmt_ns(h),
            "≤ 2 ms per tick",
            h <= 2e6,
        );
        r.target(
            "collection vs sysinfo, 100 workloads",
            format!("{:.1}× faster", s / h),
            "≥ 3× faster",
            s / h >= 3.0,
        );
    }
    let slowest_vs_sysinfo = [10u32, 100, 1000]
        .into_iter()
        .filter_map(|n| {
            let h = get(&format!("collection/herd/{n}"))?;
            let s = get(&format!("collection/sysinfo/{n}"))?;
            Some((n, s / h))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((n, ratio)) = slowest_vs_sysinfo {
        r.target(
            "collection vs sysinfo, every N",
            format!("{ratio:.1}× faster at worst (N = {n})"),
            "≥ 4× faster",
            ratio >= 4.0,
        );
    }
    if let (Some(h100), Some(h1000)) = (get("collection/herd/100"), get("collection/herd/1000")) {
        let growth = (h1000 / 1000.0) / (h100 / 100.0);
        r.target(
            "collection cost per workload, N = 1000 ÷ N = 100",
            format!(
                "{growth:.2}× ({} vs {})",
                fmt_ns(h1000 / 1000.0),
                fmt_ns(h100 / 100.0)
            ),
            "≤ 1.2×",
            growth <= 1.2,
        );
    }

    r.line("## Coordinator (criterion `benches/benches/coordinator.rs`)\n");
    r.line("NodeRegistry ingest of one heartbeat of 10 workloads into a registry of N nodes (a round over the fleet), alone and with the MessagePack decode before it (as the coordinator decodes: into the buffers of the heartbeat the registry last replaced, ids held inline); a placement query (1 CPU, 8 GiB) over 5,000 nodes.\n");
    r.line("| N nodes | ingest per heartbeat | decode + ingest | decode + ingest, N heartbeats a second (share of one core) |");
    r.line("|---|---|---|---|");
    let mut per_node = vec![];
    for n in [1000u32, 5000, 20000] {
        let i = get(&format!("ingest/heartbeat/{n}"));
        let d = get(&format!("ingest/decode+heartbeat/{n}"));
        if let Some(d) = d {
            per_node.push((n, d));
        }
        r.line(format!(
            "| {n} | {} | {} | {} |",
            i.map(fmt_ns).unwrap_or("-".into()),
            d.map(fmt_ns).unwrap_or("-".into()),
            d.map(|d| format!("{:.1} %", d * n as f64 / 1e9 * 100.0))
                .unwrap_or("-".into())
        ));
    }
    r.line("");
    r.line(growth("ingest", &per_node, "heartbeat"));
    decode_ratio(r, means);
    if let Some(p) = get("placement/5000") {
        r.line(format!(
            "Placement query over 5,000 nodes: {}.\n",
            fmt_ns(p)
        ));
    }
}

/// Decode + ingest at 20,000 nodes against the bare MessagePack decode of the same heartbeats
/// (`rmp_serde::from_slice`, no limits), measured in the same bench run.
fn decode_ratio(r: &mut Report, means: &BTreeMap<String, f64>) {
    let get = |id: &str| means.get(id).copied();
    let (Some(bare), Some(herd), Some(both)) = (
        get("heartbeat_decode/bare_rmp_serde"),
        get("heartbeat_decode/herd_codec"),
        get("ingest/decode+heartbeat/20000"),
    ) else {
        return;
    };
    r.line(format!(
        "Decode of the same heartbeat of 10 workloads: bare `rmp_serde::from_slice` {}, herd's \
         `codec::decode` (size and depth limits, trailing bytes checked; valid bytes read by its own \
         slice reader, which hands field names over unchecked, rmp-serde only for what that \
         refuses) {}; decode + ingest at 20,000 nodes {} = {:.2}× the bare decode.\n",
        fmt_ns(bare),
        fmt_ns(herd),
        fmt_ns(both),
        both / bare
    ));
    r.target(
        "heartbeat decode + ingest (20,000 nodes) ÷ bare MessagePack decode",
        format!("{:.2}× ({} ÷ {})", both / bare, fmt_ns(both), fmt_ns(bare)),
        "≤ 2×",
        both / bare <= 2.0,
    );
}

/// A sentence on how cost per item moves with N.
pub(crate) fn growth(what: &str, per_item: &[(u32, f64)], item: &str) -> String {
    match (per_item.first(), per_item.last()) {
        (Some((n0, c0)), Some((n1, c1))) if n1 > n0 => {
            let ratio = c1 / c0;
            let shape = if ratio < 1.25 {
                "linear in N (the cost per item stays flat)"
            } else {
                "worse than linear"
            };
            format!(
                "Cost growth ({what}): {} per {item} at N = {n0}, {} at N = {n1} ({ratio:.2}×): {shape}.\n",
                fmt_ns(*c0),
                fmt_ns(*c1)
            )
        }
        _ => String::new(),
    }
}

pub(crate) fn machine() -> String {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "- CPU: {} ({} cores online); memory {}\n- kernel {}; cgroups: {}\n- {}; rustc {}\n",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("nproc"),
        sh("free -h | awk '/^Mem/ {print $2}'"),
        sh("uname -r"),
        sh("if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; elif [ -d /sys/fs/cgroup/memory ]; then echo 'v1/hybrid'; else echo none; fi"),
        herd_tests::nats_version(),
        sh("rustc --version | cut -d' ' -f2"),
    )
}
