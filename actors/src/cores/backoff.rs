//! Retry delays that double from a floor to a ceiling and start over after a success: the one
//! rule every "until NATS answers" loop of herd follows (event delivery, results uploads, stream
//! and bucket creation, the coordinator's consumer). Sans-IO: the caller sleeps.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// A try failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// A try succeeded: the next failure waits the floor again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }

    /// Whether the next failure would be the first since the start or a success.
    pub fn is_fresh(&self) -> bool {
        self.next == self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_start_over_after_a_success() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        assert!(b.is_fresh());
        let delays: Vec<_> = (0..5).map(|_| b.failed()).collect();
        assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert!(!b.is_fresh());
        b.succeeded();
        assert!(b.is_fresh());
        assert_eq!(b.failed(), ms(200));
    }
}
