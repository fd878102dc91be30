//! A real headless Chromium driven through the DevTools protocol (CDP), for the dashboard's
//! tests: [`Browser::start`] launches Debian's `chromium` with a temporary profile and connects
//! to its page over a WebSocket; the tests then navigate, evaluate JavaScript, wait for the page
//! to show something and take screenshots. Synchronous: one request at a time, each answered
//! within [`REPLY_TIMEOUT`] or failed, so a hung browser fails a test instead of hanging it.
//!
//! Errors: [`Browser::start`], [`Browser::call`], [`Browser::try_eval`] and
//! [`Browser::wait_for`] return them as `String`s; the rest panic with the same messages.

use base64::Engine as _;
use serde_json::{json, Value};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// How long one CDP request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Chromium may take to start listening and show its page.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Headless (as root, hence no sandbox), 1280×900, and nothing of its own on the network.
const FLAGS: &str = "--headless=new --no-sandbox --disable-gpu --remote-debugging-port=0 \
    --window-size=1280,900 --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --disable-breakpad --metrics-recording-only --password-store=basic \
    --mute-audio";

/// A headless Chromium and a DevTools connection to its one page. Dropping it kills the
/// browser's process group and removes its temporary profile.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    version: String,
    page_errors: Vec<String>,
    _process: Process,
}

/// The browser process and its temporary directory (profile and log): killed, then removed, on
/// drop, including when [`Browser::start`] fails half-way.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        // Spawned as a process-group leader: SIGKILL reaches its renderers and helpers too.
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Process {
    /// The end of Chromium's stderr, less its D-Bus complaints, for error messages.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("chromium's log ends:\n{tail}")
    }
}

impl Browser {
    /// Starts `chromium --headless=new` on `about:blank` with a temporary profile, a
    /// 1280×900 window and no network activity of its own, and connects to its page with the
    /// Page and Runtime domains enabled. Fails if `chromium` is not installed, exits, or does
    /// not show its page within 20 s.
    pub fn start() -> Result<Browser, String> {
        let dir = tempfile::Builder::new()
            .prefix("herd-chromium-")
            .tempdir()
            .map_err(|e| format!("cannot make chromium's temporary directory: {e}"))?;
        let profile = dir.path().join("profile");
        let log = File::create(dir.path().join("chromium.log"))
            .map_err(|e| format!("cannot create chromium's log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("chromium")
            .args(FLAGS.split_whitespace())
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            // Its scratch files (org.chromium.Chromium.*) go with the profile, not into /tmp.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => "no `chromium` on PATH: install Debian's chromium \
                    package: scripts/lib/deps.sh ensure_chromium"
                    .to_string(),
                _ => format!("cannot start chromium: {e}"),
            })?;
        let mut process = Process { child, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        let (port, url) = loop {
            if let Some(found) = page_url(&profile.join("DevToolsActivePort")) {
                break found;
            }
            let failed = match process.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ if Instant::now() > deadline => format!("showed no page in {START_TIMEOUT:?}"),
                _ => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            return Err(format!("chromium {failed}; {}", process.log_tail()));
        };
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to chromium's DevTools port {port}: {e}"))?;
        (stream.set_read_timeout(Some(REPLY_TIMEOUT)))
            .and(stream.set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(|e| format!("cannot set timeouts on the DevTools connection: {e}"))?;
        // Screenshots of long pages come as one big message: raise tungstenite's limits.
        let config = WebSocketConfig::default()
            .max_message_size(Some(512 << 20))
            .max_frame_size(Some(512 << 20));
        let (ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
            .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
        let mut browser = Browser {
            ws,
            next_id: 0,
            version: String::new(),
            page_errors: Vec::new(),
            _process: process,
        };
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        let version = browser.call("Browser.getVersion", json!({}))?;
        browser.version = version["product"].as_str().unwrap_or("unknown").to_string();
        Ok(browser)
    }

    /// The browser's product and version, as `Chrome/156.0.8078.114`.
    pub fn version(&self) -> String {
        self.version.clone()
    }

    /// Sends one CDP command to the page and returns its `result`; events that arrive
    /// meanwhile are skipped (uncaught exceptions and `console.error` lines are kept, see
    /// [`Browser::page_errors`]). A CDP error, a closed socket or no reply within
    /// [`REPLY_TIMEOUT`] is an error naming `method`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(request))
            .map_err(|e| format!("CDP {method}: cannot send: {e}"))?;
        loop {
            let text = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => return Err(format!("CDP {method}: connection closed")),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(format!("CDP {method}: no reply in {REPLY_TIMEOUT:?}"))
                }
                Err(e) => return Err(format!("CDP {method}: {e}")),
            };
            let mut message: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("CDP {method}: bad message {text}: {e}"))?;
            if message["id"].as_u64() != Some(id) {
                self.note_event(&message);
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("CDP {method} failed: {error}"));
            }
            return Ok(message["result"].take());
        }
    }

    /// Uncaught exceptions and `console.error` lines of the page so far, oldest first.
    pub fn page_errors(&self) -> &[String] {
        &self.page_errors
    }

    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        let error = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => exception_text(&params["exceptionDetails"]),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args = params["args"].as_array().into_iter().flatten();
                let text = args.map(|a| match a.get("value").unwrap_or(&a["description"]) {
                    Value::String(s) => s.clone(),
                    value => value.to_string(),
                });
                format!("console.error: {}", text.collect::<Vec<_>>().join(" "))
            }
            _ => return,
        };
        self.page_errors.push(error);
    }

    /// Navigates the page to `url` and waits (10 s) until its `document.readyState` is
    /// `complete`. Panics if the navigation fails (its `errorText`, e.g. a refused connection).
    pub fn navigate(&mut self, url: &str) {
        let reply = or_panic(self.call("Page.navigate", json!({ "url": url })));
        if let Some(error) = reply["errorText"].as_str().filter(|e| !e.is_empty()) {
            panic!("navigating to {url}: {error}");
        }
        let complete = "document.readyState === 'complete'";
        if let Err(e) = self.wait_for(complete, Duration::from_secs(10)) {
            panic!("navigating to {url}: {e}");
        }
    }

    /// Evaluates `js` in the page, awaiting it if it is a promise, and returns its value as
    /// JSON (`null` for `undefined` and values JSON cannot hold). Panics on a JS exception.
    pub fn eval(&mut self, js: &str) -> Value {
        or_panic(self.try_eval(js))
    }

    /// [`Browser::eval`], with a JS exception (its message and stack) as an error.
    pub fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        self.evaluate(js)?
            .map_err(|e| format!("JS exception evaluating `{js}`: {e}"))
    }

    /// The value of `js`, or its exception's text; the outer error is the protocol's.
    fn evaluate(&mut self, js: &str) -> Result<Result<Value, String>, String> {
        let params = json!({"expression": js, "returnByValue": true, "awaitPromise": true});
        let mut reply = self.call("Runtime.evaluate", params)?;
        Ok(match reply.get("exceptionDetails") {
            Some(details) => Err(exception_text(details)),
            None => Ok(reply["result"]["value"].take()),
        })
    }

    /// Evaluates `js_predicate` (an expression, maybe a promise) every 20 ms until its value is
    /// truthy (as JavaScript has it), and returns that value. An exception counts as not yet,
    /// so the predicate may refer to elements that do not exist yet; a promise still pending
    /// at the deadline is a failure. The error names the predicate and its last value.
    pub fn wait_for(&mut self, js_predicate: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let pending = json!({ "herd_wait_for": "still pending" });
        loop {
            let ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                + 1;
            let js = format!(
                "Promise.race([(async () => (\n{js_predicate}\n))(), \
                 new Promise(r => setTimeout(() => r({pending}), {ms}))])"
            );
            let last = match self.evaluate(&js)? {
                Ok(value) if value == pending => "(a promise still pending)".to_string(),
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => value.to_string(),
                Err(exception) => format!("exception {exception}"),
            };
            if Instant::now() > deadline {
                let what = format!("`{js_predicate}` not true within {timeout:?}");
                return Err(format!("{what}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a PNG of the whole page (beyond the viewport too) to `path`, creating its
    /// parent directories.
    pub fn screenshot(&mut self, path: &Path) {
        let params = json!({"format": "png", "captureBeyondViewport": true});
        let reply = or_panic(self.call("Page.captureScreenshot", params));
        let data = reply["data"].as_str().unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD.decode(data);
        let png = png.unwrap_or_else(|e| panic!("Page.captureScreenshot's data: {e}"));
        if let Some(dir) = path.parent() {
            let created = fs::create_dir_all(dir);
            created.unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// The DevTools port and the WebSocket URL of the page target, once Chromium has written
/// `DevToolsActivePort` (port, then path) and lists a page.
fn page_url(active_port: &Path) -> Option<(u16, String)> {
    let contents = fs::read_to_string(active_port).ok()?;
    let mut lines = contents.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    lines.next()?; // the file is complete
    let targets: Value = serde_json::from_str(&http_get(port, "/json/list").ok()?).ok()?;
    let page = targets.as_array()?.iter().find(|t| t["type"] == "page")?;
    Some((port, page["webSocketDebuggerUrl"].as_str()?.to_string()))
}

/// The body of `GET path` on Chromium's DevTools HTTP server, which keeps connections open:
/// the body ends at its Content-Length.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:"));
            let length = length.and_then(|v| v.trim().parse::<usize>().ok());
            if !head.starts_with("http/1.1 200") {
                return Err(std::io::Error::other(head));
            }
            if let Some(body) = length.and_then(|n| buf.get(end + 4..end + 4 + n)) {
                return Ok(String::from_utf8_lossy(body).into());
            }
        }
        match stream.read(&mut chunk)? {
            0 => return Err(std::io::Error::from(ErrorKind::UnexpectedEof)),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The message (with stack) of a CDP `ExceptionDetails`.
fn exception_text(details: &Value) -> String {
    let text = details["exception"]["description"].as_str();
    text.or(details["text"].as_str()).unwrap_or("?").to_string()
}

fn or_panic<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// JavaScript's truthiness, for the values `returnByValue` brings back.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const PAGE: &str =
        "data:text/html,<button id=b onclick=\"d.textContent='clicked'\">Go</button>\
        <div id=d>waiting</div>";

    #[test]
    fn clicks_a_button_and_takes_a_screenshot() {
        let started = Instant::now();
        let mut b = or_panic(Browser::start());
        let took = started.elapsed();
        crate::announce(&format!("browser: {} (started in {took:?})", b.version()));
        assert!(b.version().starts_with("Chrome/"), "{}", b.version());
        b.navigate(PAGE);
        assert_eq!(b.eval("d.textContent"), json!("waiting"));
        b.eval("document.getElementById('b').click()");
        let clicked = "d.textContent == 'clicked' && d.textContent";
        assert_eq!(b.wait_for(clicked, SECOND), Ok(json!("clicked")));
        assert_eq!(b.eval("Promise.resolve(1 + 1)"), json!(2));
        let err = b.try_eval("nope.nope").unwrap_err();
        assert!(err.contains("ReferenceError: nope is not defined"), "{err}");
        let err = b.wait_for("missing.x", SECOND / 10).unwrap_err();
        let expected = "`missing.x` not true within 100ms; last: exception ReferenceError";
        assert!(err.starts_with(expected), "{err}");
        assert!(b.page_errors().is_empty(), "{:?}", b.page_errors());
        b.eval("setTimeout(() => { throw new Error('boom') }); console.error('bad', 1)");
        let late = b.wait_for("new Promise(r => setTimeout(() => r(2), 50))", SECOND);
        assert_eq!(late, Ok(json!(2)));
        let err = b
            .wait_for("new Promise(() => {})", SECOND / 10)
            .unwrap_err();
        assert!(err.ends_with("last: (a promise still pending)"), "{err}");
        let errors = format!("{:?}", b.page_errors());
        assert!(
            errors.contains("Error: boom") && errors.contains("console.error: bad 1"),
            "{errors}"
        );

        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("shots/page.png");
        b.screenshot(&png);
        let bytes = fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(bytes.len() > 1000, "a PNG of {} bytes only", bytes.len());
    }
}
