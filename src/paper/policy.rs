//! Paper mode's timing policies, apart from Kafka so that they are tested on
//! their own: when a checkpoint falls due, and how long a failed publish waits
//! before it is retried.

use std::time::{Duration, Instant};

/// The wait before retry `attempt` (1, 2, ...) of a failed publish: 200 ms,
/// doubling, at most 6.4 s.
pub fn publish_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.clamp(1, 6)))
}

/// When the engines' state is checkpointed: after `every_events` input
/// messages (0: not by count) or once `every` has passed since the last
/// checkpoint, whichever comes first, and at the stop when anything is new.
#[derive(Debug, Clone)]
pub struct CheckpointClock {
    every_events: u64,
    every: Duration,
    /// Input messages processed since the last checkpoint.
    since: u64,
    /// When the last checkpoint was written (or last tried while idle).
    last: Instant,
}

impl CheckpointClock {
    pub fn new(every_events: u64, every: Duration, now: Instant) -> Self {
        CheckpointClock {
            every_events,
            every: every.max(Duration::from_nanos(1)),
            since: 0,
            last: now,
        }
    }

    /// `n` more input messages were processed and published.
    pub fn processed(&mut self, n: u64) {
        self.since += n;
    }

    /// Something is not checkpointed yet.
    pub fn pending(&self) -> bool {
        self.since > 0
    }

    /// After a batch: is a checkpoint due (by count or by time)?
    pub fn due_after_batch(&self, now: Instant) -> bool {
        (self.every_events > 0 && self.since >= self.every_events)
            || now.duration_since(self.last) >= self.every
    }

    /// While the input is quiet: when a checkpoint of what is pending falls due.
    pub fn due_while_idle(&self) -> Option<Instant> {
        self.pending().then(|| self.last + self.every)
    }

    /// A checkpoint was written at `now`.
    pub fn written(&mut self, now: Instant) {
        self.since = 0;
        self.last = now;
    }

    /// A checkpoint due while idle failed at `now`: it is tried again after
    /// `every`, not at once.
    pub fn idle_attempt_failed(&mut self, now: Instant) {
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_200ms_and_stops_at_6_4s() {
        let waits: Vec<u64> = (1..=8)
            .map(|a| publish_backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 6400, 6400]);
    }

    #[test]
    fn checkpoint_due_by_count_or_by_time() {
        let t0 = Instant::now();
        let mut c = CheckpointClock::new(100, Duration::from_secs(10), t0);
        assert!(!c.pending());
        assert_eq!(c.due_while_idle(), None, "nothing pending, nothing due");
        c.processed(99);
        assert!(!c.due_after_batch(t0 + Duration::from_secs(1)));
        c.processed(1);
        assert!(
            c.due_after_batch(t0 + Duration::from_secs(1)),
            "100 messages"
        );
        c.written(t0 + Duration::from_secs(1));
        c.processed(5);
        assert!(!c.due_after_batch(t0 + Duration::from_secs(10)));
        assert!(
            c.due_after_batch(t0 + Duration::from_secs(11)),
            "10 s since the last"
        );
        assert_eq!(c.due_while_idle(), Some(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn count_zero_means_by_time_only_and_a_failed_idle_checkpoint_waits_a_period() {
        let t0 = Instant::now();
        let mut c = CheckpointClock::new(0, Duration::from_secs(2), t0);
        c.processed(1_000_000);
        assert!(!c.due_after_batch(t0 + Duration::from_secs(1)));
        assert!(c.due_after_batch(t0 + Duration::from_secs(2)));
        c.idle_attempt_failed(t0 + Duration::from_secs(2));
        assert!(
            c.pending(),
            "a failed checkpoint leaves the messages pending"
        );
        assert_eq!(c.due_while_idle(), Some(t0 + Duration::from_secs(4)));
    }
}
