//! Small pieces of HTML every page uses: escaping, the page frame, figures as people read them.
//! Pages are plain strings: each value that did not come from this file goes through [`esc`].

use std::fmt::Write as _;

/// `s` made safe for HTML text and attribute values (double-quoted).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one path segment or query value of a link.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which part of the site a page belongs to, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Fleet,
    Runs,
    Events,
}

/// What every page has around its content. `topics` are the live feeds the page's script
/// subscribes to (`/sse?topics=`); `actions` tells the script whether to offer actions.
pub struct Frame<'a> {
    pub title: &'a str,
    pub section: Section,
    pub topics: &'a str,
    pub actions: bool,
}

impl Frame<'_> {
    pub fn render(&self, content: &str) -> String {
        let link = |s: Section, href: &str, name: &str| {
            let current = if s == self.section {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{current}>{name}</a>")
        };
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · herd</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\">\
             <script src=\"/static/app.js\" defer></script></head>\
             <body data-topics=\"{topics}\" data-actions=\"{actions}\">\
             <header><strong class=\"brand\">herd</strong><nav>{fleet}{runs}{events}</nav>\
             <span id=\"live\" class=\"live\" title=\"live updates\">connecting…</span></header>\
             <main>{content}</main></body></html>\n",
            title = esc(self.title),
            topics = esc(self.topics),
            actions = self.actions,
            fleet = link(Section::Fleet, "/", "Fleet"),
            runs = link(Section::Runs, "/runs", "Runs"),
            events = link(Section::Events, "/events", "Events"),
        )
    }
}

/// A region the script fetches again from `fragment` when one of the `on` feeds says something
/// changed (space-separated: `hb workload cluster run`).
pub fn region(id: &str, fragment: &str, on: &str, inner: &str) -> String {
    throttled_region(id, fragment, on, 0, inner)
}

/// A [`region`] also fetched every `poll_ms` until its content says `data-settled="true"`: for
/// what can change without an event the page hears of (a run's journal taking a result in).
pub fn polled_region(id: &str, fragment: &str, on: &str, poll_ms: u32, inner: &str) -> String {
    format!(
        "<section id=\"{}\" data-fragment=\"{}\" data-on=\"{}\" data-poll-ms=\"{poll_ms}\">{inner}</section>",
        esc(id),
        esc(fragment),
        esc(on)
    )
}

/// A [`region`] fetched at most once every `min_ms`.
pub fn throttled_region(id: &str, fragment: &str, on: &str, min_ms: u32, inner: &str) -> String {
    format!(
        "<section id=\"{}\" data-fragment=\"{}\" data-on=\"{}\" data-min-ms=\"{min_ms}\">{inner}</section>",
        esc(id),
        esc(fragment),
        esc(on)
    )
}

/// A chart the script draws and extends: `series` names what it shows (`cpu`, `memory`), `key`
/// which samples feed it (a workload id, or `node`), `points` the history as `[[ts_ms, v]]`.
pub fn chart(series: &str, key: &str, unit: &str, points: &[(u64, f64)]) -> String {
    let mut data = String::from("[");
    for (i, (ts, v)) in points.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        let _ = write!(data, "[{ts},{:.2}]", v);
    }
    data.push(']');
    let last = points
        .last()
        .map(|(_, v)| format!("{v:.1}"))
        .unwrap_or_default();
    format!(
        "<figure class=\"chart\"><figcaption>{label} <span class=\"last\">{last_text}</span></figcaption>\
         <svg viewBox=\"0 0 300 80\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{label}\" \
         data-series=\"{series}\" data-key=\"{key}\" data-unit=\"{unit}\" data-last=\"{last}\" \
         data-points=\"{data}\"></svg></figure>",
        label = esc(match series {
            "cpu" => "CPU %",
            "memory" => "Memory MiB",
            "gpu" => "GPU %",
            other => other,
        }),
        last_text = if last.is_empty() {
            String::new()
        } else {
            format!("{last} {}", esc(unit))
        },
        series = esc(series),
        key = esc(key),
        unit = esc(unit),
        last = esc(&last),
        data = esc(&data),
    )
}

/// Bytes as people read them: `512 MiB`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A time as an element the script keeps as "N s ago" (the text is the server's view of it).
pub fn ago(ts_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ts_ms) / 1000;
    let text = match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    };
    format!("<time data-ts=\"{ts_ms}\">{text}</time>")
}

/// A duration in seconds as `12.3 s`, `4 min 5 s`.
pub fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }

    #[test]
    fn a_chart_carries_its_points_and_last_value() {
        let c = chart("cpu", "w-1", "%", &[(1, 10.0), (2, 49.96)]);
        assert!(c.contains("data-points=\"[[1,10.00],[2,49.96]]\""), "{c}");
        assert!(c.contains("data-last=\"50.0\""), "{c}");
        assert!(chart("cpu", "w", "%", &[]).contains("data-last=\"\""));
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(200 << 20), "200 MiB");
        assert!(ago(1_000, 62_000).contains("1 min ago"));
        assert_eq!(secs(65.0), "1 min 5 s");
    }
}
