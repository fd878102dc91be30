//! What herdd does with its workloads when it stops, sans-IO.

/// The workloads' fate at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtShutdown {
    /// Leave them running; the next herdd re-adopts them.
    Keep,
    /// Stop each with its grace period (capped), then kill what is left. `why` says why
    /// keeping was configured but cannot be honoured.
    Stop { why: Option<String> },
}

/// `keep_configured` is `shutdown.on_shutdown = "keep"`; `keeping_blocks_restart` is the cgroup
/// backend's reason why a kept workload would keep the next herdd from starting (systemd
/// without a delegated subgroup).
pub fn at_shutdown(keep_configured: bool, keeping_blocks_restart: Option<String>) -> AtShutdown {
    match (keep_configured, keeping_blocks_restart) {
        (true, None) => AtShutdown::Keep,
        (true, Some(why)) => AtShutdown::Stop { why: Some(why) },
        (false, _) => AtShutdown::Stop { why: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_kept_only_when_asked_and_a_restart_would_not_be_blocked() {
        assert_eq!(at_shutdown(true, None), AtShutdown::Keep);
        assert_eq!(at_shutdown(false, None), AtShutdown::Stop { why: None });
        assert_eq!(
            at_shutdown(true, Some("no delegated subgroup".into())),
            AtShutdown::Stop {
                why: Some("no delegated subgroup".into())
            }
        );
        assert_eq!(
            at_shutdown(false, Some("x".into())),
            AtShutdown::Stop { why: None }
        );
    }
}
