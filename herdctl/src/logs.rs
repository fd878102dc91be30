//! What `herdctl logs` and `herdctl run --attach` print from LogChunks: the lines in order, a
//! marker line where the rate cap dropped lines or chunks went missing, and whether each
//! stream's output ended. No I/O here: `follow` reads the chunks and writes what this says.

use herd_bus::{LogChunk, LogStream};
use std::collections::{HashMap, VecDeque};

/// The line printed in place of lines the node's rate cap dropped.
pub fn dropped_marker(lines: u64) -> String {
    format!("[herd: {lines} lines dropped by the rate cap]")
}

/// The line printed where chunks never reached the history (lost on the way).
pub fn missing_marker(chunks: u64, stream: LogStream) -> String {
    format!("[herd: {chunks} chunks of {} missing]", stream.as_str())
}

/// Turns chunks into the lines to print, per stream, in the order they were published.
#[derive(Debug, Default)]
pub struct LogPrinter {
    /// The seq expected next, per stream.
    next_seq: HashMap<LogStream, u64>,
    /// Per stream, the run (`attempt`) whose output ended when the latest chunk was its last
    /// (`eof`); absent while output goes on.
    ended: HashMap<LogStream, Option<u32>>,
}

impl LogPrinter {
    /// The lines of `chunk` to print on its stream (stdout or stderr), markers included.
    pub fn lines(&mut self, chunk: &LogChunk) -> Vec<String> {
        let mut out = Vec::with_capacity(chunk.lines.len() + 1);
        match self.next_seq.get(&chunk.stream) {
            Some(&next) if chunk.seq > next => {
                out.push(missing_marker(chunk.seq - next, chunk.stream))
            }
            // A smaller seq is a new reader of the output (herdd restarted, or the workload
            // did): its count starts again, nothing is missing.
            _ => {}
        }
        self.next_seq.insert(chunk.stream, chunk.seq + 1);
        self.ended
            .insert(chunk.stream, chunk.eof.then_some(chunk.attempt));
        out.extend(chunk.lines.iter().cloned());
        if chunk.dropped > 0 {
            out.push(dropped_marker(chunk.dropped));
        }
        out
    }

    /// Whether the output of every one of `streams` has ended for run `attempt` (the latest
    /// chunk said `eof`, and a run that came before it did not write that chunk).
    pub fn ended(&self, streams: &[LogStream], attempt: u32) -> bool {
        streams.iter().all(|s| {
            self.ended
                .get(s)
                .copied()
                .flatten()
                .is_some_and(|ended| ended >= attempt)
        })
    }
}

/// The last `n` lines of the history (`--tail N`), kept until the history is read.
#[derive(Debug)]
pub struct Tail {
    keep: usize,
    lines: VecDeque<(LogStream, String)>,
}

impl Tail {
    pub fn new(keep: usize) -> Tail {
        Tail {
            keep,
            lines: VecDeque::with_capacity(keep.min(4096)),
        }
    }

    pub fn push(&mut self, stream: LogStream, lines: Vec<String>) {
        for line in lines {
            if self.lines.len() == self.keep {
                self.lines.pop_front();
            }
            if self.keep > 0 {
                self.lines.push_back((stream, line));
            }
        }
    }

    /// The kept lines, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = (LogStream, String)> + '_ {
        self.lines.drain(..)
    }
}

/// `--since`: `90s`, `10m`, `2h`, `1d`, `1h30m`, or plain seconds.
pub fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration like 30s, 10m, 2h, 1d or 1h30m");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| std::time::Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            _ => return Err(bad()),
        };
        let n: f64 = number.parse().map_err(|_| bad())?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || !total.is_finite() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{NodeId, WorkloadId};

    fn chunk(stream: LogStream, seq: u64, lines: &[&str], dropped: u64, eof: bool) -> LogChunk {
        attempt_chunk(stream, seq, lines, dropped, eof, 0)
    }

    fn attempt_chunk(
        stream: LogStream,
        seq: u64,
        lines: &[&str],
        dropped: u64,
        eof: bool,
        attempt: u32,
    ) -> LogChunk {
        LogChunk {
            node_id: NodeId::new("n1").unwrap(),
            workload_id: WorkloadId::new("w1").unwrap(),
            stream,
            seq,
            ts_ms: 0,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            dropped,
            eof,
            attempt,
        }
    }

    #[test]
    fn lines_come_in_order_with_a_marker_for_rate_capped_ones() {
        let mut p = LogPrinter::default();
        assert_eq!(
            p.lines(&chunk(LogStream::Stdout, 1, &["a", "b"], 0, false)),
            ["a", "b"]
        );
        assert_eq!(
            p.lines(&chunk(LogStream::Stdout, 2, &["c"], 1234, false)),
            ["c", "[herd: 1234 lines dropped by the rate cap]"]
        );
    }

    #[test]
    fn a_gap_in_seq_is_reported_but_a_fresh_count_is_not() {
        let mut p = LogPrinter::default();
        p.lines(&chunk(LogStream::Stderr, 7, &["x"], 0, false));
        assert_eq!(
            p.lines(&chunk(LogStream::Stderr, 10, &["y"], 0, false)),
            ["[herd: 2 chunks of stderr missing]", "y"]
        );
        assert_eq!(
            p.lines(&chunk(LogStream::Stderr, 1, &["after a restart"], 0, false)),
            ["after a restart"]
        );
        // Streams count apart.
        assert_eq!(
            p.lines(&chunk(LogStream::Stdout, 3, &["o"], 0, false)),
            ["o"]
        );
    }

    #[test]
    fn output_has_ended_once_every_stream_said_eof_last() {
        let both = [LogStream::Stdout, LogStream::Stderr];
        let mut p = LogPrinter::default();
        assert!(!p.ended(&both, 0));
        p.lines(&chunk(LogStream::Stdout, 1, &[], 0, true));
        assert!(!p.ended(&both, 0));
        assert!(p.ended(&[LogStream::Stdout], 0));
        p.lines(&chunk(LogStream::Stderr, 1, &["e"], 0, true));
        assert!(p.ended(&both, 0));
        // A restarted workload writes again: not ended any more.
        p.lines(&chunk(LogStream::Stdout, 1, &["again"], 0, false));
        assert!(!p.ended(&both, 0));
    }

    #[test]
    fn an_earlier_runs_end_is_not_the_last_runs() {
        let both = [LogStream::Stdout, LogStream::Stderr];
        let mut p = LogPrinter::default();
        for stream in both {
            p.lines(&attempt_chunk(stream, 1, &["try"], 0, true, 0));
        }
        assert!(p.ended(&both, 0));
        // The second run settled before its output arrived: wait for it.
        assert!(!p.ended(&both, 1));
        for stream in both {
            p.lines(&attempt_chunk(stream, 1, &["try"], 0, true, 1));
        }
        assert!(p.ended(&both, 1));
    }

    #[test]
    fn tail_keeps_the_last_lines_across_streams() {
        let mut t = Tail::new(3);
        t.push(LogStream::Stdout, vec!["1".into(), "2".into()]);
        t.push(LogStream::Stderr, vec!["e".into()]);
        t.push(LogStream::Stdout, vec!["3".into()]);
        let kept: Vec<_> = t.drain().collect();
        assert_eq!(
            kept,
            [
                (LogStream::Stdout, "2".to_string()),
                (LogStream::Stderr, "e".to_string()),
                (LogStream::Stdout, "3".to_string())
            ]
        );
        let mut none = Tail::new(0);
        none.push(LogStream::Stdout, vec!["x".into()]);
        assert_eq!(none.drain().count(), 0);
    }

    #[test]
    fn since_takes_durations_people_write() {
        let s = |t: &str| parse_since(t).map(|d| d.as_secs_f64());
        assert_eq!(s("10m"), Ok(600.0));
        assert_eq!(s("90s"), Ok(90.0));
        assert_eq!(s("1h30m"), Ok(5400.0));
        assert_eq!(s("2d"), Ok(172_800.0));
        assert_eq!(s("45"), Ok(45.0));
        assert_eq!(s("1.5h"), Ok(5400.0));
        for bad in ["", "10x", "m", "10m5", "-5", "yesterday"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
