//! Paper mode's side of the consumer group: where each assigned input
//! partition starts ([`SeekOnAssign`]), receiving with a deadline, librdkafka's
//! cached watermarks, and committing offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

/// The high watermark of a partition as last reported by a fetch response
/// (librdkafka's cache: no request to the broker, so cheap per batch).
pub(super) fn cached_high_watermark<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    cached_watermarks(consumer, topic, partition).map(|(_, high)| high)
}

/// `(low, high)` watermarks of a partition from librdkafka's cache (see
/// [`crate::kafka::cached_watermarks`]).
pub(super) fn cached_watermarks<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    crate::kafka::cached_watermarks(consumer.client(), topic, partition)
}

/// Assigns each input partition at the offset paper mode has reached (from the
/// checkpoint, then as it processes), or at the group's committed offset for a
/// partition it has not seen; and notes each such offset in `resumed`, so that
/// the loop can check the first record the broker delivers against it
/// ([`super::Session`]'s `verify_resumed`).
pub struct SeekOnAssign {
    pub(super) positions: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    pub(super) assigned: Arc<Mutex<BTreeSet<(String, i32)>>>,
    /// Read every assigned partition from its start; the loop skips what is done.
    pub(super) rescan: bool,
    /// The offset each partition was resumed at, and when, until its first
    /// record is checked.
    pub(super) resumed: Arc<Mutex<Resumed>>,
}

/// Resumed input partitions: the offset asked for and when it was asked.
pub(super) type Resumed = BTreeMap<(String, i32), (i64, std::time::Instant)>;

impl SeekOnAssign {
    /// Set where each newly assigned partition starts: its start (`rescan`),
    /// the position reached, or the group's committed offset; the last two are
    /// noted in `resumed`.
    fn position(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut resumed = self.resumed.lock().expect("resumed lock");
        let mut unknown = TopicPartitionList::new();
        {
            let pos = self.positions.lock().expect("positions lock");
            for (t, p) in parts {
                if self.rescan {
                    let _ = tpl.set_partition_offset(&t, p, Offset::Beginning);
                } else if let Some(o) = pos.get(&(t.clone(), p)) {
                    let _ = tpl.set_partition_offset(&t, p, Offset::Offset(*o));
                    resumed.insert((t, p), (*o, std::time::Instant::now()));
                } else {
                    unknown.add_partition(&t, p);
                }
            }
        }
        if unknown.count() == 0 {
            return;
        }
        // Where librdkafka would resume them anyway, asked for explicitly so
        // that the first record can be checked against it.
        match consumer.committed_offsets(unknown, Duration::from_secs(10)) {
            Ok(committed) => {
                for e in committed.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let _ =
                            tpl.set_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
                        resumed.insert(
                            (e.topic().to_string(), e.partition()),
                            (o, std::time::Instant::now()),
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the group's committed offsets at assignment")
            }
        }
    }
}

/// `topic/partition` of each element, sorted, with where it starts when
/// `starts`: `at N`, `from its start`, or `at auto.offset.reset` for a
/// partition with no checkpoint and no committed offset (librdkafka's
/// `Invalid`, which says nothing to a reader).
pub(super) fn describe(tpl: &TopicPartitionList, starts: bool) -> String {
    let mut parts: Vec<(String, i32, Offset)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
        .collect();
    parts.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let one = |(t, p, o): &(String, i32, Offset)| {
        if !starts {
            return format!("{t}/{p}");
        }
        match o {
            Offset::Offset(n) => format!("{t}/{p} at {n}"),
            Offset::Beginning => format!("{t}/{p} from its start"),
            Offset::End => format!("{t}/{p} at its end"),
            _ => format!("{t}/{p} at auto.offset.reset"),
        }
    };
    parts.iter().map(one).collect::<Vec<_>>().join(", ")
}

impl rdkafka::ClientContext for SeekOnAssign {}

impl ConsumerContext for SeekOnAssign {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::bindings::rd_kafka_resp_err_t,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::bindings::rd_kafka_resp_err_t as E;
        use rdkafka::consumer::RebalanceProtocol;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = if err == E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            self.position(consumer, tpl);
            let mut held = self.assigned.lock().expect("assignment lock");
            if !cooperative {
                held.clear();
            }
            held.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
            drop(held);
            tracing::info!(partitions = %describe(tpl, true), "input partitions assigned");
            if cooperative {
                consumer.incremental_assign(tpl)
            } else {
                consumer.assign(tpl)
            }
        } else if err == E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            tracing::info!(partitions = %describe(tpl, false), "input partitions revoked");
            let mut held = self.assigned.lock().expect("assignment lock");
            if cooperative {
                for e in tpl.elements() {
                    held.remove(&(e.topic().to_string(), e.partition()));
                }
            } else {
                held.clear();
            }
            drop(held);
            if cooperative {
                consumer.incremental_unassign(tpl)
            } else {
                consumer.unassign()
            }
        } else {
            tracing::error!(?err, "rebalance error");
            self.assigned.lock().expect("assignment lock").clear();
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the assignment failed");
        }
    }
}

/// Commit `offsets` to the consumer group; a failure is logged (the checkpoint
/// is what a restart goes by).
pub(super) fn commit<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    offsets: &BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "offset list");
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "committing offsets failed");
    }
}

/// The group's committed offsets of every partition of `topics`.
pub(super) fn group_offsets<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    base: &rdkafka::ClientConfig,
    topics: &[&str],
) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let probe: Result<BaseConsumer, _> = base.create();
    for t in topics {
        let parts = probe
            .as_ref()
            .ok()
            .and_then(|c| c.fetch_metadata(Some(t), Duration::from_secs(10)).ok())
            .map(|md| {
                md.topics()
                    .first()
                    .map(|tm| tm.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for p in parts {
            tpl.add_partition(t, p);
        }
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => {
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    out.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the group's committed offsets"),
    }
    out
}

/// The next message, or `None` after `wait` without one.
pub(super) async fn recv_within<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    wait: Option<Duration>,
) -> Option<rdkafka::message::OwnedMessage> {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, consumer.recv()).await {
                Ok(r) => r,
                Err(_) => return None,
            },
            None => consumer.recv().await,
        };
        match next {
            Ok(m) => return Some(m.detach()),
            // librdkafka queues one error event per failed connection attempt
            // and reconnects by itself: take the next event at once, or the
            // backlog of an outage delays the rejoin and the fetches behind it.
            Err(e) => tracing::warn!(error = %e, "consumer error; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression ("partition logs print `Invalid` for offsets not yet known").
    #[test]
    fn assignment_logs_say_where_each_partition_starts() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("live_prices", 1, Offset::Offset(46))
            .unwrap();
        tpl.add_partition("live_prices", 0);
        tpl.add_partition_offset("news_sentiment", 0, Offset::Beginning)
            .unwrap();
        assert_eq!(
            describe(&tpl, true),
            "live_prices/0 at auto.offset.reset, live_prices/1 at 46, news_sentiment/0 from its start"
        );
        assert_eq!(
            describe(&tpl, false),
            "live_prices/0, live_prices/1, news_sentiment/0"
        );
        assert!(!describe(&tpl, true).contains("Invalid"));
    }
}
