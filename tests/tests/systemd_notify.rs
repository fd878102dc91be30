//! herdd speaks systemd's notify protocol on NOTIFY_SOCKET: READY=1 only once NATS is connected,
//! WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM.

use herd_tests::{free_port, Herdd, HerddOptions, NatsServer};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

struct Notifications {
    sock: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn bind(path: &std::path::Path) -> Notifications {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    /// Reads for `d`; answers the lines received meanwhile.
    fn collect_for(&mut self, d: Duration) -> Vec<String> {
        let end = Instant::now() + d;
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    self.seen.push((Instant::now(), line.to_string()));
                    lines.push(line.to_string());
                }
            }
        }
        lines
    }

    fn wait_for(&mut self, want: &str, within: Duration) -> Instant {
        let end = Instant::now() + within;
        while Instant::now() < end {
            self.collect_for(Duration::from_millis(50));
            if let Some((t, _)) = self.seen.iter().find(|(_, l)| l == want) {
                return *t;
            }
        }
        panic!("no {want} within {within:?}; saw {:?}", self.seen);
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let mut notes = Notifications::bind(&sock_path);
    let port = free_port();

    let mut herdd = Herdd::start_with(HerddOptions {
        env: vec![
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".to_string()),
        ],
        ..HerddOptions::new("notify-node", format!("nats://127.0.0.1:{port}"))
    });

    // No NATS yet: herdd runs and pings the watchdog, but is not ready.
    let early = notes.collect_for(Duration::from_millis(2000));
    assert!(herdd.is_running(), "{}", herdd.log());
    assert!(
        !early.iter().any(|l| l == "READY=1"),
        "READY before NATS: {early:?}"
    );
    assert!(
        early
            .iter()
            .any(|l| l.starts_with("STATUS=connecting to NATS")),
        "{early:?}"
    );
    assert!(early.iter().any(|l| l == "WATCHDOG=1"), "{early:?}");

    let _nats = NatsServer::start_on(port);
    notes.wait_for("READY=1", Duration::from_secs(15));
    assert!(
        notes
            .seen
            .iter()
            .any(|(_, l)| l.starts_with("STATUS=serving node notify-node")),
        "{:?}",
        notes.seen
    );

    // Watchdog pings at about half of WATCHDOG_USEC (1 s): count them over 3 s.
    let start = notes.seen.len();
    notes.collect_for(Duration::from_secs(3));
    let pings: Vec<Instant> = notes.seen[start..]
        .iter()
        .filter(|(_, l)| l == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        (4..=8).contains(&pings.len()),
        "{} pings in 3 s",
        pings.len()
    );
    let mean = pings.windows(2).map(|w| w[1] - w[0]).sum::<Duration>() / (pings.len() as u32 - 1);
    assert!(
        mean > Duration::from_millis(350) && mean < Duration::from_millis(650),
        "mean watchdog interval {mean:?}, wanted about 500 ms"
    );

    herdd.signal(nix::sys::signal::Signal::SIGTERM);
    notes.wait_for("STOPPING=1", Duration::from_secs(5));
    let status = herdd.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
}
