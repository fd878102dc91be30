//! The coordinator's dashboard in a real headless Chromium (Debian's package, driven through
//! its DevTools protocol), against a fleet of separate herdd processes on a real nats-server:
//! pages that follow the fleet live without a reload, charts and logs that match what herdctl
//! says, and actions refused unless the configuration and the token allow them. Screenshots go
//! to target/screenshots/ (and to docs/screenshots/ with HERD_UPDATE_SCREENSHOTS=1: the README's
//! picture is one of them).

use herd_tests::{
    announce, eventually, free_port, nats_version, node_call, real_cgroup_backend, signal, Browser,
    Fleet,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const HB: f64 = 0.5;
const TOKEN: &str = "a-token-for-the-dashboard-test";

fn dashboard_toml(port: u16, actions: Option<&std::path::Path>) -> String {
    let mut toml = format!("[dashboard]\nlisten = \"127.0.0.1:{port}\"\n");
    if let Some(file) = actions {
        toml.push_str(&format!(
            "allow_actions = true\ntoken_file = \"{}\"\n",
            file.display()
        ));
    }
    toml
}

/// Blocking browser work inside the multi-threaded test runtime (NATS keeps going meanwhile).
fn b<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn started(browser: &Browser) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        announce(&format!(
            "dashboard tests: browser {}, {}",
            browser.version(),
            nats_version()
        ))
    });
}

/// A fleet of `agents` whose coordinator serves the dashboard (read-only) on a free port, and
/// a browser.
async fn fleet_and_browser(tag: &str, agents: &[&str]) -> (Fleet, Browser, u16) {
    let port = free_port();
    let f = Fleet::start_with(tag, agents, HB, 20.0, "", &dashboard_toml(port, None)).await;
    let browser = b(|| Browser::start().expect("a headless Chromium"));
    started(&browser);
    (f, browser, port)
}

fn screenshot(browser: &mut Browser, name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    browser.screenshot(&root.join("target/screenshots").join(name));
    if std::env::var_os("HERD_UPDATE_SCREENSHOTS").is_some() {
        browser.screenshot(&root.join("docs/screenshots").join(name));
    }
}

async fn start(f: &Fleet, node: &str, spec: Value) -> String {
    let v = node_call(&f.client, node, "workload.start", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["workload_id"].as_str().unwrap().to_string()
}

async fn herdctl(f: &Fleet, args: &[&str]) -> (String, String) {
    herd_tests::herdctl(&f.nats.url(), args).await
}

/// One HTTP/1.1 request with `headers`; the status and body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// Waits until the page's live feed is connected (its indicator says so).
fn connected(browser: &mut Browser, what: &str) {
    wait(
        browser,
        what,
        "document.getElementById('live').classList.contains('on')",
        Duration::from_secs(5),
    );
}

fn wait(browser: &mut Browser, what: &str, js: &str, within: Duration) -> Value {
    browser
        .wait_for(js, within)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_follow_the_fleet_live() {
    let (f, mut browser, port) = fleet_and_browser("dash", &["a", "b", "c"]).await;
    let node = f.agents[0].node_id.clone();
    real_cgroup_backend(&f.client, &node).await;
    let base = format!("http://127.0.0.1:{port}");

    // The fleet: three nodes up.
    b(|| {
        browser.navigate(&format!("{base}/"));
        wait(
            &mut browser,
            "3 nodes up on the fleet page",
            "document.querySelectorAll('tr[data-node][data-liveness=up]').length === 3",
            Duration::from_secs(5),
        );
        connected(&mut browser, "the live feed connected");
    });

    // A workload started over the bus shows on its node's page within 1 s, without a reload.
    b(|| {
        browser.navigate(&format!("{base}/node/{node}"));
        browser.eval("window.sameDocument = true");
        connected(&mut browser, "the node page's feed connected");
    });
    let busy = start(
        &f,
        &node,
        json!({"command": ["sh", "-c", "while :; do :; done"], "limits": {"cpu": 0.5}, "env": {"API_KEY": "s3cret-value"}}),
    )
    .await;
    b(|| {
        wait(
            &mut browser,
            "the new workload on its node's page within 1 s",
            &format!(
                "!!document.querySelector('tr[data-workload=\"{busy}\"]') && window.sameDocument"
            ),
            Duration::from_secs(1),
        );
    });

    // Its page: a CPU chart whose last value is the 0.5-CPU limit, and no environment value.
    b(|| {
        browser.navigate(&format!("{base}/node/{node}/workload/{busy}"));
        wait(
            &mut browser,
            "4 CPU points on the chart",
            "document.querySelector('svg[data-series=cpu]').points.length >= 4",
            Duration::from_secs(20),
        );
        let last: f64 = browser
            .eval("Number(document.querySelector('svg[data-series=cpu]').dataset.last)")
            .as_f64()
            .unwrap();
        announce(&format!(
            "dashboard: CPU chart's last value for a 0.5-CPU busy loop: {last:.1} %"
        ));
        assert!((40.0..=60.0).contains(&last), "last CPU value {last}");
        let html = browser
            .eval("document.documentElement.outerHTML")
            .to_string();
        assert!(
            html.contains("API_KEY") && !html.contains("s3cret-value"),
            "an env value is shown"
        );
        screenshot(&mut browser, "workload.png");
    });

    // Logs on the page are what `herdctl logs --no-follow` prints.
    let talker = start(
        &f,
        &node,
        json!({"command": ["sh", "-c", "for i in $(seq 1 40); do echo \"line $i <b>&amp;\"; done; echo 'to stderr' >&2; exit 3"]}),
    )
    .await;
    eventually(Duration::from_secs(10), "the talker exited", || async {
        let v = node_call(
            &f.client,
            &node,
            "workload.get",
            json!({"workload_id": talker}),
        )
        .await;
        (v["data"]["state"] == "exited").then_some(())
    })
    .await;
    let (stdout, stderr) = herdctl(&f, &["logs", &node, &talker, "--no-follow"]).await;
    b(|| {
        browser.navigate(&format!("{base}/node/{node}/workload/{talker}"));
        let mut page = |stream: &str| -> Vec<String> {
            let v = browser.eval(&format!(
                "Array.from(document.querySelectorAll('#logs span.{stream}')).map(s => s.textContent)"
            ));
            serde_json::from_value(v).unwrap()
        };
        let out = page("stdout");
        let err = page("stderr");
        assert_eq!(out, stdout.lines().collect::<Vec<_>>());
        assert_eq!(err, stderr.lines().collect::<Vec<_>>());
        assert_eq!(out.len(), 40);
    });

    // A run submitted from herdctl: per-node progress until completed, and its task table is
    // `run show`'s.
    let (submitted, _) = herdctl(
        &f,
        &[
            "run",
            "submit",
            "--count",
            "3",
            "--reps",
            "3",
            "--",
            "sh",
            "-c",
            "echo \"rep $HERD_REP\" > \"$HERD_OUTPUT_DIR/out.txt\"; echo \"{\\\"score\\\": $HERD_REP}\" > \"$HERD_OUTPUT_DIR/metrics.json\"; sleep 0.7",
        ],
    )
    .await;
    let run = submitted
        .split_whitespace()
        .find(|w| w.starts_with("run-"))
        .expect("a run id")
        .to_string();
    b(|| {
        browser.navigate(&format!("{base}/run/{run}"));
        browser.eval("window.sameDocument = true");
        let first: Value = browser.eval(
            "Array.from(document.querySelectorAll('tr[data-progress]')).map(r => [r.dataset.done, r.dataset.total])",
        );
        assert_eq!(
            first.as_array().map(|a| a.len()),
            Some(3),
            "three nodes' progress: {first}"
        );
        let seen_partial = wait(
            &mut browser,
            "the run completed on the page",
            "document.querySelector('p.run-state').dataset.state === 'completed' && window.sameDocument",
            Duration::from_secs(60),
        );
        assert_eq!(seen_partial, json!(true));
        screenshot(&mut browser, "run.png");
    });
    let (show, _) = herdctl(&f, &["--json", "run", "show", &run]).await;
    let show: Value = serde_json::from_str(&show).unwrap();
    let mut expected: Vec<(String, String)> = show["tasks"]
        .as_array()
        .or_else(|| show["data"]["tasks"].as_array())
        .expect("tasks in run show --json")
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut table: Vec<(String, String)> = serde_json::from_value(b(|| {
        browser.eval("Array.from(document.querySelectorAll('tr[data-task]')).map(r => [r.dataset.task, r.dataset.status])")
    }))
    .unwrap();
    expected.sort();
    table.sort();
    assert_eq!(table.len(), 9);
    assert_eq!(table, expected);

    // Each task's files are links to their bytes; the run compared with itself changes nothing.
    b(|| {
        wait(
            &mut browser,
            "every task's out.txt linked",
            "Array.from(document.querySelectorAll('a[href^=\"/results/\"]')).filter(a => a.textContent === 'out.txt').length === 9",
            Duration::from_secs(30),
        );
        let texts = browser.eval(
            "Promise.all(Array.from(document.querySelectorAll('a[href^=\"/results/\"]')).filter(a => a.textContent === 'out.txt') \
               .map(a => fetch(a.href).then(r => r.text()))).then(t => t.sort())",
        );
        let want: Vec<String> = (1..=3)
            .flat_map(|r| std::iter::repeat_n(format!("rep {r}\n"), 3))
            .collect();
        assert_eq!(texts, json!(want));
        browser.navigate(&format!("{base}/compare?a={run}&b={run}"));
        let score = browser.eval(
            "Array.from(document.querySelector('tr[data-metric=score]').cells).map(c => c.textContent)",
        );
        assert_eq!(score[5], "+0.0 %", "{score}");
        assert_eq!(
            browser.eval("document.querySelector('tr[data-metric=score]').dataset.significant"),
            "false"
        );
    });

    // A node frozen with SIGSTOP turns stale on the fleet page.
    b(|| {
        browser.navigate(&format!("{base}/"));
        connected(&mut browser, "the fleet page's feed connected");
        screenshot(&mut browser, "fleet.png");
        browser.eval("window.sameDocument = true");
    });
    let frozen = f.agents[2].node_id.clone();
    signal(f.agents[2].pid(), Signal::SIGSTOP);
    let stale = b(|| {
        browser.wait_for(
            &format!("document.querySelector('tr[data-node=\"{frozen}\"]').dataset.liveness === 'stale' && window.sameDocument"),
            Duration::from_secs(10),
        )
    });
    signal(f.agents[2].pid(), Signal::SIGCONT);
    stale.unwrap_or_else(|e| panic!("the frozen node turns stale on the page: {e}"));
    let errors = browser.page_errors().to_vec();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_refused_unless_allowed_and_authorized() {
    let (mut f, mut browser, port) = fleet_and_browser("dact", &["a"]).await;
    let node = f.agents[0].node_id.clone();
    let w = start(&f, &node, json!({"command": ["sleep", "300"]})).await;
    let base = format!("http://127.0.0.1:{port}");
    let stop = format!("/action/stop-workload?node={node}&workload={w}");

    // Off: no button, and a forged POST (from the page, and from outside) is refused.
    b(|| {
        browser.navigate(&format!("{base}/node/{node}"));
        wait(
            &mut browser,
            "the workload listed",
            &format!("!!document.querySelector('tr[data-workload=\"{w}\"]')"),
            Duration::from_secs(5),
        );
        assert_eq!(
            browser.eval("document.querySelectorAll('button[data-action]').length"),
            json!(0)
        );
        let status = browser.eval(&format!(
            "fetch('{stop}', {{method: 'POST', headers: {{'X-Herd-Token': '{TOKEN}'}}}}).then(r => r.status)"
        ));
        assert_eq!(status, json!(403));
    });
    let (status, body) = http(port, "POST", &stop, &[("X-Herd-Token", TOKEN)]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allow_actions"), "{body}");
    let (status, headers) = http(port, "GET", "/", &[]);
    assert_eq!(status, 200);
    let _ = headers;

    // On: without the token refused, with the wrong one refused, from another site refused.
    // The coordinator restarts (now with actions on) under an open page: the page reconnects by
    // itself and goes on showing what happens, without a reload.
    b(|| {
        browser.navigate(&format!("{base}/node/{node}"));
        connected(&mut browser, "the node page's feed connected");
        browser.eval("window.sameDocument = true");
    });
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{TOKEN}\n")).unwrap();
    f.coordinator.terminate(Duration::from_secs(10));
    f.coordinator = Fleet::start_coordinator_with(
        &f.nats,
        "dact-coord2",
        HB,
        20.0,
        &dashboard_toml(port, Some(token_file.path())),
    );
    eventually(
        Duration::from_secs(15),
        "the new coordinator's dashboard",
        || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let v = f
                .try_call("herd.v1.cluster.nodes", json!({"state": "up"}))
                .await?;
            (v["data"]["nodes"].as_array().map(|a| a.len()) == Some(1)).then_some(())
        },
    )
    .await;
    b(|| {
        wait(
            &mut browser,
            "the page reconnected to the new coordinator",
            "document.getElementById('live').classList.contains('on') && window.sameDocument",
            Duration::from_secs(10),
        )
    });
    let later = start(&f, &node, json!({"command": ["sleep", "300"]})).await;
    b(|| {
        wait(
            &mut browser,
            "a workload started after the reconnect shown without a reload",
            &format!(
                "!!document.querySelector('tr[data-workload=\"{later}\"]') && window.sameDocument"
            ),
            Duration::from_secs(2),
        )
    });
    let (status, body) = http(port, "POST", &stop, &[]);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(
        port,
        "POST",
        &stop,
        &[("X-Herd-Token", "not-the-token-at-all")],
    );
    assert_eq!(status, 403);
    let (status, body) = http(
        port,
        "POST",
        &stop,
        &[
            ("X-Herd-Token", TOKEN),
            ("Origin", "https://elsewhere.example"),
        ],
    );
    assert_eq!(status, 403, "{body}");
    let state = node_call(&f.client, &node, "workload.get", json!({"workload_id": w})).await;
    assert_eq!(
        state["data"]["state"], "running",
        "nothing refused has stopped it"
    );

    // With the token, through the page's button and its confirmation: the workload stops.
    b(|| {
        browser.navigate(&format!("{base}/node/{node}"));
        browser.eval(&format!(
            "window.confirm = () => true; window.prompt = () => '{TOKEN}'"
        ));
        browser.eval(&format!("document.querySelector('button[data-action=\"stop-workload\"][data-workload=\"{w}\"]').click()"));
        wait(
            &mut browser,
            "the workload stopped on the page",
            &format!(
                "document.querySelector('tr[data-workload=\"{w}\"]').dataset.state === 'stopped'"
            ),
            Duration::from_secs(15),
        );
    });
    let state = node_call(&f.client, &node, "workload.get", json!({"workload_id": w})).await;
    assert_eq!(state["data"]["state"], "stopped");
}

/// Event to screen: from a `running` event on the bus to the node page's DOM showing that
/// workload running, for 50 workloads started one after another. A measurement for
/// scripts/bench (docs/BENCHMARKS.md), not a timed test: it asserts only that every workload
/// showed. `cargo test -p herd-tests --test dashboard -- --ignored --nocapture event_to_screen`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/bench runs it"]
async fn event_to_screen_latency() {
    use futures::StreamExt;
    const N: usize = 50;
    let (f, mut browser, port) = fleet_and_browser("dlat", &["a"]).await;
    let node = f.agents[0].node_id.clone();
    b(|| {
        browser.navigate(&format!("http://127.0.0.1:{port}/node/{node}"));
        connected(&mut browser, "the feed connected");
        // When each workload first shows as running, by the page's clock (the host's).
        browser.eval(
            "window.seen = {}; const mark = () => document.querySelectorAll('tr[data-workload][data-state=running]').forEach(tr => { \
               if (!(tr.dataset.workload in window.seen)) window.seen[tr.dataset.workload] = performance.timeOrigin + performance.now(); }); \
             new MutationObserver(mark).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']}); true",
        );
    });
    let mut events = f
        .client
        .subscribe(format!("herd.v1.evt.{node}.workload.running"))
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    let on_bus = tokio::spawn(async move {
        let mut at = std::collections::HashMap::new();
        while at.len() < N {
            let Some(msg) = events.next().await else {
                break;
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                * 1000.0;
            let ev: herd_bus::WorkloadEvent = herd_bus::codec::decode(
                &msg.payload,
                herd_bus::codec::Encoding::MsgPack,
                &Default::default(),
            )
            .unwrap();
            at.insert(ev.workload_id.to_string(), now);
        }
        at
    });
    let mut ids = vec![];
    for _ in 0..N {
        ids.push(
            start(
                &f,
                &node,
                json!({"command": ["sleep", "120"], "collect": false}),
            )
            .await,
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let on_bus = tokio::time::timeout(Duration::from_secs(30), on_bus)
        .await
        .expect("every running event")
        .unwrap();
    let seen: std::collections::HashMap<String, f64> = b(|| {
        wait(
            &mut browser,
            "every workload shown running",
            &format!("Object.keys(window.seen).length >= {N}"),
            Duration::from_secs(30),
        );
        serde_json::from_value(browser.eval("window.seen")).unwrap()
    });
    let mut delays: Vec<f64> = ids.iter().map(|id| seen[id] - on_bus[id]).collect();
    delays.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    // The baseline, same run: the page fetching its workload table once (what a refresh costs),
    // median of 20.
    let fetch_ms = b(|| {
        browser.eval(&format!(
            "(async () => {{ const t = []; for (let i = 0; i < 20; i++) {{ const s = performance.now(); \
               await (await fetch('/f/node/{node}/workloads')).text(); t.push(performance.now() - s); }} \
               t.sort((a, b) => a - b); return t[10]; }})()"
        ))
    })
    .as_f64()
    .unwrap();
    announce(&format!(
        "dashboard event to screen over {N} workloads: median {:.1} ms, p90 {:.1} ms, max {:.1} ms; \
         baseline (one fetch of the node's workload table, median of 20): {fetch_ms:.1} ms; median = {:.1}× the baseline",
        pct(0.5),
        pct(0.9),
        delays[delays.len() - 1],
        pct(0.5) / fetch_ms
    ));
}
