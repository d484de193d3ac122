//! Paper mode's event-time merge of its input partitions (`engine.order = "event_time"`).
//!
//! A backtest merges every partition of every input topic by the head of each,
//! smallest `(event ts, topic, partition, offset)` first
//! ([`crate::backtest::merge_partitions`]). Paper mode does the same on a live
//! stream: a message is held until every other assigned partition either has a
//! message held (so its next event time is known) or has nothing more to give:
//!
//! * **caught up**: it has delivered everything up to librdkafka's cached high
//!   watermark (from the last fetch response; no request to the broker), or
//! * **idle**: it has delivered nothing for `idle` of wall time (a stalled fetch,
//!   or offsets past its last message that hold no message, such as transaction
//!   markers). It stops holding the others back until it delivers again.
//!
//! Then the earliest head is taken. Over topics recorded before the run, every
//! partition is either held from or fetching, so paper mode takes exactly the
//! backtest's order: paper runs over the same topics are reproducible, equal to a
//! backtest, and a restart from a checkpoint (a prefix of that order) continues
//! it. On a live stream, caught-up partitions hold nothing back, so a message
//! waits only for partitions that are still catching up.
//!
//! At most `max_held` messages are held. Past that, the earliest head is taken
//! even though a partition is behind; such releases are counted
//! ([`Merge::forced`]), because from then on the order depends on fetch timing.
//!
//! Order within a partition is never changed. A message that does not decode
//! takes the event time of the message before it in its partition (the lowest
//! time when it is the first), as in backtests, so it stays in place.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::domain::Ts;

/// How often held messages are looked at again while no message comes.
pub const POLL: Duration = Duration::from_millis(20);

/// An input partition: topic and partition number.
pub type PartitionId = (String, i32);

/// Where a partition was assigned to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At its low watermark.
    Beginning,
    /// At this offset.
    At(i64),
    /// Not known (the group's committed offset).
    Unknown,
}

/// What librdkafka knows of a partition's watermarks, `(low, high)`, from its
/// last fetch response; `None` before the first.
pub type Watermarks<'a> = dyn Fn(&str, i32) -> Option<(i64, i64)> + 'a;

struct Held<M> {
    ts: Ts,
    arrived: Instant,
    msg: M,
}

struct Part<M> {
    id: PartitionId,
    queue: VecDeque<Held<M>>,
    /// Event time of the last message received (for messages without one).
    last_ts: Ts,
    /// Offset after the last message received.
    next: Option<i64>,
    start: Start,
    /// When it last delivered a message, or was assigned.
    active: Instant,
}

impl<M> Part<M> {
    fn new(id: PartitionId, start: Start, now: Instant) -> Self {
        Part {
            id,
            queue: VecDeque::new(),
            last_ts: Ts::MIN,
            next: None,
            start,
            active: now,
        }
    }

    fn is(&self, topic: &str, partition: i32) -> bool {
        self.id.1 == partition && self.id.0 == topic
    }
}

/// The held messages of every assigned input partition.
pub struct Merge<M> {
    /// In `PartitionId` order.
    parts: Vec<Part<M>>,
    held: usize,
    hold: Duration,
    idle: Duration,
    max_held: usize,
    forced: u64,
}

impl<M> Merge<M> {
    /// `hold`: how long a message waits at least when a partition behind it is
    /// caught up or idle rather than holding a message itself. `idle`: how long a
    /// partition may deliver nothing and still hold the others back.
    pub fn new(hold: Duration, idle: Duration, max_held: usize) -> Self {
        Merge {
            parts: Vec::new(),
            held: 0,
            hold,
            idle,
            max_held: max_held.max(1),
            forced: 0,
        }
    }

    /// Follow the assignment: partitions not in `assigned` are dropped with what
    /// they hold (another process reads them now); new ones start at `start(p)`.
    /// Returns how many held messages were dropped.
    pub fn assign(
        &mut self,
        assigned: &BTreeSet<PartitionId>,
        start: impl Fn(&PartitionId) -> Start,
        now: Instant,
    ) -> usize {
        let same = self.parts.len() == assigned.len()
            && self
                .parts
                .iter()
                .zip(assigned)
                .all(|(part, p)| &part.id == p);
        if same {
            return 0;
        }
        let mut old: BTreeMap<PartitionId, Part<M>> = self
            .parts
            .drain(..)
            .map(|part| (part.id.clone(), part))
            .collect();
        for p in assigned {
            let part = old
                .remove(p)
                .unwrap_or_else(|| Part::new(p.clone(), start(p), now));
            self.parts.push(part);
        }
        let dropped: usize = old.values().map(|part| part.queue.len()).sum();
        self.held -= dropped;
        dropped
    }

    /// Hold a message of a partition at `offset`, with its event time if it
    /// decoded. A partition not assigned yet is added (start unknown). A message
    /// at an offset this partition has already delivered (librdkafka seeking
    /// back after a rebalance) is not held again: returns false.
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        ts: Option<Ts>,
        msg: M,
        now: Instant,
    ) -> bool {
        let i = match self.parts.iter().position(|part| part.is(topic, partition)) {
            Some(i) => i,
            None => {
                let id = (topic.to_string(), partition);
                let i = self.parts.partition_point(|part| part.id < id);
                self.parts.insert(i, Part::new(id, Start::Unknown, now));
                i
            }
        };
        let part = &mut self.parts[i];
        if part.next.is_some_and(|n| offset < n) {
            return false;
        }
        let ts = ts.unwrap_or(part.last_ts);
        part.last_ts = ts;
        part.next = Some(offset + 1);
        part.active = now;
        part.queue.push_back(Held {
            ts,
            arrived: now,
            msg,
        });
        self.held += 1;
        true
    }

    /// Count `partition` as speaking now, so that it holds the others back for
    /// another `idle` although it delivers nothing: a resumed partition whose
    /// first record is still to come (paper mode checks it against the offset
    /// asked for, and re-reads a partition the broker stalls).
    pub fn keep_waiting(&mut self, id: &PartitionId, now: Instant) {
        if let Some(part) = self.parts.iter_mut().find(|part| &part.id == id) {
            part.active = now;
        }
    }

    /// Messages held now.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Messages taken before every partition could speak (over `max_held`).
    pub fn forced(&self) -> u64 {
        self.forced
    }

    /// Whether `part`, holding nothing, has nothing more to give for now.
    fn done(&self, part: &Part<M>, marks: &Watermarks, now: Instant) -> bool {
        if now.duration_since(part.active) >= self.idle {
            return true;
        }
        let Some((low, high)) = marks(&part.id.0, part.id.1) else {
            return false;
        };
        let next = match (part.next, part.start) {
            (Some(n), _) => n,
            (None, Start::At(o)) => o,
            (None, Start::Beginning) => low,
            (None, Start::Unknown) => return high <= low,
        };
        next >= high
    }

    /// The partition whose head is earliest by `(ts, topic, partition, offset)`.
    fn earliest(&self) -> Option<usize> {
        let mut best: Option<(usize, &Held<M>)> = None;
        for (i, part) in self.parts.iter().enumerate() {
            let Some(h) = part.queue.front() else {
                continue;
            };
            // Partitions are in id order, so on equal times the first wins:
            // `(ts, topic, partition)`; offsets order only within a partition.
            if best.is_none_or(|(_, b)| h.ts < b.ts) {
                best = Some((i, h));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Take up to `max` messages in event-time order. The earliest is taken when
    /// every partition holds a message, or when those holding none have nothing
    /// more to give and it has been held for `hold`, or when more than
    /// `max_held` are held. Each partition's watermarks are looked up at most
    /// once per call.
    pub fn pop_up_to(&mut self, max: usize, marks: &Watermarks, now: Instant) -> Vec<M> {
        let mut out = Vec::new();
        // For partitions holding nothing: whether they have nothing more to give.
        let mut done: Vec<Option<bool>> = vec![None; self.parts.len()];
        while out.len() < max {
            let Some(first) = self.earliest() else {
                break;
            };
            let head = self.parts[first].queue.front().expect("a head");
            let held_long = now.duration_since(head.arrived) >= self.hold;
            let mut ready = true;
            for (j, part) in self.parts.iter().enumerate() {
                if !part.queue.is_empty() {
                    continue;
                }
                if !held_long || !*done[j].get_or_insert_with(|| self.done(part, marks, now)) {
                    ready = false;
                    break;
                }
            }
            if !ready {
                if self.held <= self.max_held {
                    break;
                }
                self.forced += 1;
            }
            out.extend(self.take(first));
        }
        out
    }

    /// Take the next message in event-time order, if it may go (see
    /// [`Merge::pop_up_to`]).
    pub fn pop(&mut self, marks: &Watermarks, now: Instant) -> Option<M> {
        self.pop_up_to(1, marks, now).pop()
    }

    /// The partitions the earliest message waits for (holding nothing, still
    /// behind and not idle), for diagnostics.
    pub fn waiting_for(&self, marks: &Watermarks, now: Instant) -> Vec<&PartitionId> {
        self.parts
            .iter()
            .filter(|part| part.queue.is_empty() && !self.done(part, marks, now))
            .map(|part| &part.id)
            .collect()
    }

    /// Take the earliest held message, whatever the partitions behind (when the
    /// input has gone idle and the run ends).
    pub fn pop_any(&mut self) -> Option<M> {
        let first = self.earliest()?;
        self.take(first)
    }

    fn take(&mut self, i: usize) -> Option<M> {
        let h = self.parts[i].queue.pop_front()?;
        self.held -= 1;
        Some(h.msg)
    }

    /// When to look again if no message comes: when the earliest message has
    /// been held for `hold` or the next partition that may hold others back
    /// turns idle, and at least every [`POLL`] (a watermark can come in with a
    /// fetch response that brings no message). `None` when nothing is held.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        let head = self.parts[self.earliest()?].queue.front()?;
        self.parts
            .iter()
            .filter(|part| part.queue.is_empty())
            .map(|part| part.active + self.idle)
            .chain([head.arrived + self.hold])
            .filter(|at| *at > now)
            .chain([now + POLL])
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str, n: i32) -> PartitionId {
        (t.to_string(), n)
    }

    fn assigned(ps: &[PartitionId]) -> BTreeSet<PartitionId> {
        ps.iter().cloned().collect()
    }

    /// Both partitions are behind their high watermark of 10.
    fn behind(_: &str, _: i32) -> Option<(i64, i64)> {
        Some((0, 10))
    }

    #[test]
    fn holds_until_every_partition_speaks_then_takes_the_earliest() {
        let now = Instant::now();
        let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 100);
        m.assign(
            &assigned(&[p("a", 0), p("b", 0)]),
            |_| Start::Beginning,
            now,
        );
        m.push("a", 0, 0, Some(20), "a20", now);
        assert_eq!(m.pop(&behind, now), None, "b has not spoken and is behind");
        m.push("b", 0, 0, Some(10), "b10", now);
        assert_eq!(m.pop(&behind, now), Some("b10"));
        // b is empty again and still behind its watermark: a waits.
        assert_eq!(m.pop(&behind, now), None);
        m.push("b", 0, 1, Some(20), "b20", now);
        // Equal times: topic "a" before "b".
        assert_eq!(m.pop(&behind, now), Some("a20"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_caught_up_partition_does_not_hold_others_back() {
        let now = Instant::now();
        let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 100);
        m.assign(
            &assigned(&[p("a", 0), p("b", 0), p("c", 0)]),
            |q| {
                if q.0 == "c" {
                    Start::At(7)
                } else {
                    Start::Beginning
                }
            },
            now,
        );
        m.push("b", 0, 4, Some(5), "b5", now);
        // a: delivered offsets up to 9 of 10; c: starts at 7 of 7.
        m.push("a", 0, 9, Some(9), "a9", now);
        let marks = |t: &str, _| match t {
            "a" => Some((0, 10)),
            "b" => Some((0, 10)),
            _ => Some((0, 7)),
        };
        assert_eq!(m.pop(&marks, now), Some("b5"));
        // b is behind (next 5 < 10): a waits for it.
        assert_eq!(m.pop(&marks, now), None);
        // An unknown watermark holds back too.
        let unknown = |t: &str, _| (t != "b").then_some((0, 10));
        assert_eq!(m.pop(&unknown, now), None);
        let b_caught_up = |t: &str, _| match t {
            "b" => Some((0, 5)),
            "c" => Some((0, 7)),
            _ => Some((0, 10)),
        };
        assert_eq!(m.pop(&b_caught_up, now), Some("a9"));
    }

    #[test]
    fn a_partition_kept_waiting_holds_back_past_idle() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(500);
        let mut m = Merge::new(Duration::ZERO, idle, 100);
        m.assign(&assigned(&[p("a", 0), p("b", 0)]), |_| Start::At(3), t0);
        m.push("a", 0, 3, Some(1), "a1", t0);
        // b delivers nothing, but is kept waiting (a resumed partition not yet
        // checked): past `idle` from its assignment it still holds a back.
        m.keep_waiting(&p("b", 0), t0 + idle);
        assert_eq!(m.pop(&behind, t0 + idle), None);
        assert_eq!(m.pop(&behind, t0 + idle * 2 - POLL), None);
        // Without more keeping, it turns idle `idle` after the last.
        assert_eq!(m.pop(&behind, t0 + idle * 2), Some("a1"));
    }

    #[test]
    fn an_idle_partition_stops_holding_back() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(500);
        let mut m = Merge::new(Duration::ZERO, idle, 100);
        m.assign(&assigned(&[p("a", 0), p("b", 0)]), |_| Start::Unknown, t0);
        m.push("a", 0, 0, Some(1), "a1", t0);
        assert_eq!(m.pop(&behind, t0), None);
        assert_eq!(m.wake_at(t0), Some(t0 + POLL));
        assert_eq!(m.wake_at(t0 + idle - POLL / 2), Some(t0 + idle));
        assert_eq!(
            m.wake_at(t0 + idle),
            Some(t0 + idle + POLL),
            "b is idle now"
        );
        assert_eq!(m.pop(&behind, t0 + idle), Some("a1"));
        assert_eq!(m.forced(), 0);
        assert_eq!(m.wake_at(t0), None);
    }

    #[test]
    fn behind_a_caught_up_partition_a_message_waits_for_hold() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(100);
        let mut m = Merge::new(hold, Duration::from_secs(60), 100);
        m.assign(&assigned(&[p("a", 0), p("b", 0)]), |_| Start::Beginning, t0);
        m.push("a", 0, 0, Some(5), "a5", t0);
        let caught_up = |t: &str, _| Some((0, if t == "a" { 1 } else { 0 }));
        assert_eq!(
            m.pop(&caught_up, t0),
            None,
            "b is caught up but a5 is fresh"
        );
        assert_eq!(m.wake_at(t0 + hold - POLL / 2), Some(t0 + hold));
        // A late message of b, earlier in event time, still comes first.
        m.push("b", 0, 0, Some(4), "b4", t0 + hold / 2);
        assert_eq!(m.pop(&caught_up, t0 + hold / 2), Some("b4"));
        assert_eq!(m.pop(&caught_up, t0 + hold / 2), None);
        assert_eq!(m.pop(&caught_up, t0 + hold), Some("a5"));
        // Every partition holding a message: no wait.
        m.push("a", 0, 1, Some(7), "a7", t0 + hold);
        m.push("b", 0, 1, Some(6), "b6", t0 + hold);
        assert_eq!(m.pop(&caught_up, t0 + hold), Some("b6"));
    }

    #[test]
    fn a_redelivered_offset_is_held_once() {
        let now = Instant::now();
        let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 100);
        m.assign(&assigned(&[p("a", 0)]), |_| Start::Beginning, now);
        assert!(m.push("a", 0, 0, Some(1), "a0", now));
        assert!(m.push("a", 0, 1, Some(2), "a1", now));
        // librdkafka seeks back to offset 0 after a rebalance.
        assert!(!m.push("a", 0, 0, Some(1), "a0 again", now));
        assert!(!m.push("a", 0, 1, Some(2), "a1 again", now));
        assert!(m.push("a", 0, 2, Some(3), "a2", now));
        assert_eq!(
            std::iter::from_fn(|| m.pop_any()).collect::<Vec<_>>(),
            ["a0", "a1", "a2"]
        );
    }

    #[test]
    fn over_max_held_the_earliest_is_forced_out() {
        let now = Instant::now();
        let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 2);
        m.assign(
            &assigned(&[p("a", 0), p("b", 0)]),
            |_| Start::Beginning,
            now,
        );
        for i in 0..3 {
            m.push("a", 0, i, Some(i), i, now);
        }
        assert_eq!(m.pop(&behind, now), Some(0));
        assert_eq!(m.forced(), 1);
        assert_eq!(m.pop(&behind, now), None);
    }

    #[test]
    fn undecoded_messages_keep_their_place_and_revoked_partitions_drop() {
        let now = Instant::now();
        let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 100);
        m.assign(
            &assigned(&[p("a", 0), p("b", 0)]),
            |_| Start::Beginning,
            now,
        );
        m.push("a", 0, 0, Some(30), "a30", now);
        m.push("a", 0, 1, None, "a-bad", now);
        m.push("a", 0, 2, Some(31), "a31", now);
        m.push("b", 0, 0, None, "b-bad", now);
        m.push("b", 0, 1, Some(30), "b30", now);
        assert_eq!(
            std::iter::from_fn(|| m.pop_any()).collect::<Vec<_>>(),
            vec!["b-bad", "a30", "a-bad", "b30", "a31"],
            "b-bad takes the lowest time; a-bad the 30 of a30, before b30 by topic"
        );
        m.push("b", 0, 2, Some(40), "b40", now);
        assert_eq!(
            m.assign(&assigned(&[p("a", 0)]), |_| Start::Beginning, now),
            1
        );
        assert!(m.is_empty());
    }

    #[test]
    fn the_order_is_the_backtests() {
        // Three partitions of random event times, fed in random interleavings:
        // holding until every partition speaks gives one order, the k-way merge.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let parts = [p("news", 0), p("prices", 0), p("prices", 1)];
        let lists: Vec<Vec<Ts>> = parts
            .iter()
            .map(|_| {
                let mut t = 0;
                (0..50)
                    .map(|_| {
                        t += rng.gen_range(0..5);
                        t
                    })
                    .collect()
            })
            .collect();
        let mut want: Vec<(Ts, PartitionId, i64)> = lists
            .iter()
            .zip(&parts)
            .flat_map(|(l, q)| {
                l.iter()
                    .enumerate()
                    .map(move |(o, t)| (*t, q.clone(), o as i64))
            })
            .collect();
        want.sort();
        for _ in 0..20 {
            let now = Instant::now();
            let mut m = Merge::new(Duration::ZERO, Duration::from_secs(60), 1000);
            m.assign(&parts.iter().cloned().collect(), |_| Start::Beginning, now);
            let mut next = [0usize; 3];
            let mut got = Vec::new();
            // Offsets 0..50: a partition read to its end has nothing more to give.
            let marks = |_: &str, _| Some((0, 50));
            while got.len() < want.len() {
                let i = rng.gen_range(0..3);
                if next[i] < 50 {
                    let o = next[i];
                    m.push(
                        &parts[i].0,
                        parts[i].1,
                        o as i64,
                        Some(lists[i][o]),
                        (lists[i][o], parts[i].clone(), o as i64),
                        now,
                    );
                    next[i] += 1;
                }
                while let Some(x) = m.pop(&marks, now) {
                    got.push(x);
                }
            }
            assert_eq!(got, want);
        }
    }
}
