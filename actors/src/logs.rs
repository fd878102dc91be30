//! Reads a workload's stdout or stderr line by line and publishes LogChunks in small batches,
//! with a rate cap: lines past the cap are counted (`dropped`), never buffered without bound.

use herd_bus::codec::{self, Encoding};
use herd_bus::{LogChunk, LogStream, NodeId, WorkloadId};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line kept; longer ones are split.
pub const MAX_LINE: usize = 16 * 1024;
const BATCH_LINES: usize = 64;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub struct LogTarget {
    pub client: async_nats::Client,
    pub subject: String,
    pub node_id: NodeId,
    pub workload_id: WorkloadId,
    pub stream: LogStream,
    pub max_lines_per_s: u32,
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

pub async fn pump(reader: impl AsyncRead + Unpin, target: LogTarget) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut lines: Vec<String> = Vec::new();
    let mut dropped = 0u64;
    let mut seq = 0u64;
    let mut budget = LineBudget::new(target.max_lines_per_s);
    let mut last_refill = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let mut partial: Vec<u8> = Vec::new();
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
                        let now = tokio::time::Instant::now();
                        budget.refill(now - last_refill);
                        last_refill = now;
                        if budget.take() {
                            let text = String::from_utf8_lossy(&partial);
                            lines.push(text.trim_end_matches(['\n', '\r']).to_string());
                        } else {
                            dropped += 1;
                        }
                        partial.clear();
                    }
                    false
                }
            },
            _ = tick.tick() => false,
        };
        if eof && !partial.is_empty() {
            lines.push(String::from_utf8_lossy(&partial).into_owned());
            partial.clear();
        }
        let due = lines.len() >= BATCH_LINES || eof || last_refill.elapsed() >= FLUSH_EVERY;
        if due && (!lines.is_empty() || dropped > 0) {
            seq += 1;
            let chunk = LogChunk {
                node_id: target.node_id.clone(),
                workload_id: target.workload_id.clone(),
                stream: target.stream,
                seq,
                ts_ms: crate::clock::now_ms(),
                lines: std::mem::take(&mut lines),
                dropped: std::mem::take(&mut dropped),
            };
            if let Ok(bytes) = codec::encode(&chunk, Encoding::MsgPack) {
                let _ = target
                    .client
                    .publish(target.subject.clone(), bytes.into())
                    .await;
            }
        }
        if eof {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
