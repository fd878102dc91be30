//! Reads a workload's stdout or stderr line by line and publishes LogChunks in small batches,
//! with a rate cap: lines past the cap are counted (`dropped`), never buffered without bound.
//! The last chunk says `eof`. The node's log stream ([`super::log_history`]) keeps them all.

use super::log_history::LogsKept;
use herd_bus::codec::{self, Encoding};
use herd_bus::{LogChunk, LogStream, NodeId, WorkloadId};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line kept; longer ones are split.
pub const MAX_LINE: usize = 16 * 1024;
const BATCH_LINES: usize = 64;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Longest wait of a workload's first chunk for the node's log stream to be made.
const KEPT_WAIT: Duration = Duration::from_secs(2);

pub struct LogTarget {
    pub client: async_nats::Client,
    pub subject: String,
    pub node_id: NodeId,
    pub workload_id: WorkloadId,
    pub stream: LogStream,
    /// The workload's `restarts` when this run of it started.
    pub attempt: u32,
    pub max_lines_per_s: u32,
    pub kept: LogsKept,
}

/// Token bucket: `rate` lines a second, bursting up to one second's worth.
#[derive(Debug)]
pub struct LineBudget {
    rate: f64,
    tokens: f64,
}

impl LineBudget {
    pub fn new(rate: u32) -> LineBudget {
        LineBudget {
            rate: rate as f64,
            tokens: rate as f64,
        }
    }

    pub fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.rate);
    }

    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decides what goes into the next LogChunk and when: every 100 ms, or at 64 lines, whichever
/// comes first; lines past the rate cap are counted. Sans-IO: `now` is passed in.
#[derive(Debug)]
pub struct Batcher {
    lines: Vec<String>,
    dropped: u64,
    seq: u64,
    budget: LineBudget,
    last_refill: Instant,
    last_flush: Instant,
}

/// One chunk's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub lines: Vec<String>,
    /// Lines dropped by the rate cap since the previous chunk.
    pub dropped: u64,
    /// The output ended: nothing follows this chunk.
    pub eof: bool,
}

impl Batcher {
    pub fn new(max_lines_per_s: u32, now: Instant) -> Batcher {
        Batcher {
            lines: Vec::new(),
            dropped: 0,
            seq: 0,
            budget: LineBudget::new(max_lines_per_s),
            last_refill: now,
            last_flush: now,
        }
    }

    pub fn line(&mut self, text: String, now: Instant) {
        self.budget
            .refill(now.saturating_duration_since(self.last_refill));
        self.last_refill = now;
        if self.budget.take() {
            self.lines.push(text);
        } else {
            self.dropped += 1;
        }
    }

    /// Whether a chunk should go out now.
    pub fn due(&self, now: Instant) -> bool {
        (!self.lines.is_empty() || self.dropped > 0)
            && (self.lines.len() >= BATCH_LINES
                || now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY)
    }

    /// Whether lines (or a count of dropped ones) wait to go out.
    pub fn pending(&self) -> bool {
        !self.lines.is_empty() || self.dropped > 0
    }

    /// The next chunk, if there is anything to say.
    pub fn take(&mut self, now: Instant) -> Option<Batch> {
        self.last_flush = now;
        if self.lines.is_empty() && self.dropped == 0 {
            return None;
        }
        Some(self.next(false))
    }

    /// The last chunk, sent even when empty: it tells followers that the output ended.
    pub fn finish(&mut self) -> Batch {
        self.next(true)
    }

    fn next(&mut self, eof: bool) -> Batch {
        self.seq += 1;
        Batch {
            seq: self.seq,
            lines: std::mem::take(&mut self.lines),
            dropped: std::mem::take(&mut self.dropped),
            eof,
        }
    }
}

pub async fn pump(reader: impl AsyncRead + Unpin, mut target: LogTarget) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut batcher = Batcher::new(target.max_lines_per_s, Instant::now());
    // Ticks only while something waits to go out: an idle workload's pumps cost nothing.
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut partial: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let eof = tokio::select! {
            read = reader.fill_buf() => match read {
                Ok([]) | Err(_) => true,
                Ok(buf) => {
                    let (take, line_end) = match buf.iter().position(|b| *b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (buf.len(), false),
                    };
                    partial.extend_from_slice(&buf[..take]);
                    reader.consume(take);
                    if line_end || partial.len() >= MAX_LINE {
                        let text = String::from_utf8_lossy(&partial);
                        batcher.line(text.trim_end_matches(['\n', '\r']).to_string(), Instant::now());
                        partial.clear();
                    }
                    false
                }
            },
            _ = tick.tick(), if batcher.pending() => false,
        };
        if eof && !partial.is_empty() {
            batcher.line(
                String::from_utf8_lossy(&partial).into_owned(),
                Instant::now(),
            );
            partial.clear();
        }
        let now = Instant::now();
        let batch = if eof {
            Some(batcher.finish())
        } else if batcher.due(now) {
            batcher.take(now)
        } else {
            None
        };
        if let Some(batch) = batch {
            if first {
                target.kept.wait(KEPT_WAIT).await;
                first = false;
            }
            publish(&target, batch).await;
        }
        if eof {
            return;
        }
    }
}

async fn publish(target: &LogTarget, batch: Batch) {
    let chunk = LogChunk {
        node_id: target.node_id.clone(),
        workload_id: target.workload_id.clone(),
        stream: target.stream,
        seq: batch.seq,
        ts_ms: crate::edges::clock::now_ms(),
        lines: batch.lines,
        dropped: batch.dropped,
        eof: batch.eof,
        attempt: target.attempt,
    };
    if let Ok(bytes) = codec::encode(&chunk, Encoding::MsgPack) {
        let _ = target
            .client
            .publish(target.subject.clone(), bytes.into())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_is_flushed_every_100_ms_not_every_64_lines() {
        let t0 = Instant::now();
        let mut b = Batcher::new(1000, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // One line every 50 ms.
        b.line("a".into(), at(50));
        assert!(!b.due(at(50)));
        b.line("b".into(), at(100));
        assert!(b.due(at(100)), "100 ms since the last flush");
        assert_eq!(
            b.take(at(100)),
            Some(Batch {
                seq: 1,
                lines: vec!["a".to_string(), "b".to_string()],
                dropped: 0,
                eof: false
            })
        );
        b.line("c".into(), at(150));
        assert!(!b.due(at(150)));
        assert!(b.due(at(200)));
        assert_eq!(b.take(at(200)).unwrap().seq, 2, "seq counts chunks");
        assert!(!b.due(at(1000)), "nothing to say");
        assert_eq!(b.take(at(1000)), None);
    }

    #[test]
    fn the_end_of_the_output_is_a_chunk_of_its_own_even_when_empty() {
        let t0 = Instant::now();
        let mut b = Batcher::new(1000, t0);
        b.line("last words".into(), t0);
        assert_eq!(
            b.finish(),
            Batch {
                seq: 1,
                lines: vec!["last words".to_string()],
                dropped: 0,
                eof: true
            }
        );
        let mut quiet = Batcher::new(1000, t0);
        let end = quiet.finish();
        assert!(end.eof && end.lines.is_empty(), "{end:?}");
    }

    #[test]
    fn a_burst_goes_out_at_64_lines_and_the_cap_counts_drops() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, t0);
        for i in 0..64 {
            b.line(format!("{i}"), t0);
        }
        assert!(b.due(t0), "64 lines");
        let batch = b.take(t0).unwrap();
        assert_eq!((batch.lines.len(), batch.dropped), (64, 0));
        for i in 0..100 {
            b.line(format!("{i}"), t0);
        }
        let batch = b.take(t0).unwrap();
        assert_eq!(
            (batch.lines.len(), batch.dropped),
            (36, 64),
            "100 lines/s budget, 64 already used"
        );
    }

    #[test]
    fn budget_caps_the_rate() {
        let mut b = LineBudget::new(10);
        assert_eq!((0..20).filter(|_| b.take()).count(), 10);
        b.refill(Duration::from_millis(500));
        assert_eq!((0..20).filter(|_| b.take()).count(), 5);
        b.refill(Duration::from_secs(60));
        assert_eq!(
            (0..20).filter(|_| b.take()).count(),
            10,
            "bursts are capped"
        );
    }
}
