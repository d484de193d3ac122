//! Paper mode's engines and their checkpoints: the store of `[state]`, one
//! engine (or one per input partition number), loading a shard from its
//! checkpoint, and reading back what a run before a restart published.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Loaded, StateStore};
use crate::engine::{Engine, EngineSpec};
use crate::kafka::{self, Publisher};
use crate::state::{self, Checkpoint, Offsets, Store};
use crate::summary::Summary;

/// The checkpoint store of `[state]`, if any.
pub(super) async fn open_store(
    cfg: &Loaded,
    base: &rdkafka::ClientConfig,
) -> anyhow::Result<Option<Store>> {
    let app = &cfg.app;
    Ok(match app.state.resolve(app.kafka.brokers == "embedded") {
        StateStore::None => None,
        StateStore::File => Some(Store::File(app.state.file_for(&app.kafka.group_id))),
        StateStore::Kafka => {
            if app.kafka.create_topics {
                kafka::ensure_topics(base, &[app.state.topic.as_str()], 1).await?;
            }
            let mut pc = base.clone();
            pc.set("message.max.bytes", "100000000");
            Some(Store::Kafka {
                base: base.clone(),
                producer: kafka::producer(&pc)?,
                topic: app.state.topic.clone(),
                key: app.kafka.group_id.clone(),
            })
        }
    })
}

/// Write checkpoints (each atomically).
pub(super) async fn save_all(checkpoints: Vec<(Store, Checkpoint)>) -> anyhow::Result<()> {
    for (target, ck) in &checkpoints {
        target.save(ck).await?;
    }
    Ok(())
}

/// The ids on the output topics from `from` to their end.
pub(super) async fn read_back(
    base: &rdkafka::ClientConfig,
    publisher: &Publisher,
    from: &Offsets,
    rescan: bool,
) -> anyhow::Result<HashSet<String>> {
    let (base, topics, from) = (base.clone(), publisher.topic_names(), from.clone());
    tokio::task::spawn_blocking(move || {
        state::published_ids(&base, &topics, &from, rescan, Duration::from_secs(30))
    })
    .await?
}

/// Input offsets by (topic, partition): the next offset to process.
pub(super) type Positions = BTreeMap<(String, i32), i64>;

/// What a checkpoint must match to be continued from: the consumer group, the
/// configuration (its engine fingerprint) and the Kafka cluster.
pub(super) struct Ident {
    pub(super) group: String,
    pub(super) fingerprint: String,
    pub(super) cluster: String,
}

/// The engines of a run: one, or (`engine.shards = "partition"`) one per
/// input partition number, each checkpointed on its own and handed over to
/// another process of the group on a rebalance.
pub(super) struct Shards {
    spec: EngineSpec,
    ident: Ident,
    by_partition: bool,
    engines: BTreeMap<i32, Engine>,
    /// Shards handed over to another process (kept for the summary only).
    retired: Vec<(i32, Engine)>,
}

impl Shards {
    pub(super) fn new(spec: EngineSpec, ident: Ident, by_partition: bool) -> Self {
        Shards {
            spec,
            ident,
            by_partition,
            engines: BTreeMap::new(),
            retired: Vec::new(),
        }
    }

    /// What loading a shard needs.
    pub(super) fn loading(&self) -> ShardsSpec<'_> {
        ShardsSpec {
            spec: &self.spec,
            ident: &self.ident,
        }
    }

    pub(super) fn by_partition(&self) -> bool {
        self.by_partition
    }

    /// The shard of an input partition: partition `p`'s, or the one engine.
    pub(super) fn key(&self, partition: i32) -> i32 {
        if self.by_partition {
            partition
        } else {
            0
        }
    }

    pub(super) fn has(&self, key: i32) -> bool {
        self.engines.contains_key(&key)
    }

    pub(super) fn insert(&mut self, key: i32, engine: Engine) {
        self.engines.insert(key, engine);
    }

    /// The engine of `partition`.
    ///
    /// # Panics
    /// If its shard was not loaded: the loop loads every held partition's
    /// shard before it processes the partition's messages.
    pub(super) fn engine(&mut self, partition: i32) -> &mut Engine {
        let key = self.key(partition);
        self.engines
            .get_mut(&key)
            .expect("the shard of every held partition is loaded")
    }

    pub(super) fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.engines.values_mut()
    }

    /// Retire the shards of partition numbers no longer held; returns them.
    pub(super) fn hand_over(
        &mut self,
        held: &std::collections::BTreeSet<(String, i32)>,
    ) -> Vec<i32> {
        if !self.by_partition {
            return Vec::new();
        }
        let gone: Vec<i32> = self
            .engines
            .keys()
            .copied()
            .filter(|p| !held.iter().any(|(_, q)| q == p))
            .collect();
        for p in &gone {
            tracing::info!(
                partition = p,
                "shard handed over; its state goes with its checkpoint"
            );
            let engine = self.engines.remove(p).expect("a held shard");
            self.retired.push((*p, engine));
        }
        gone
    }

    /// The checkpoint of every engine at the given input offsets, each with
    /// the store it goes to. Synchronous: the engines never cross an await.
    pub(super) fn checkpoints(
        &self,
        store: &Store,
        inputs: &Positions,
        publisher: &Publisher,
    ) -> Vec<(Store, Checkpoint)> {
        let outputs = publisher.written();
        self.engines
            .iter()
            .map(|(p, engine)| {
                let mut by_topic: Offsets = BTreeMap::new();
                for ((t, q), o) in inputs {
                    if !self.by_partition || q == p {
                        by_topic.entry(t.clone()).or_default().insert(*q, *o);
                    }
                }
                let ck = Checkpoint {
                    format: state::FORMAT,
                    group: self.ident.group.clone(),
                    cluster: self.ident.cluster.clone(),
                    inputs: by_topic,
                    outputs: outputs.clone(),
                    engine: engine.state(&self.ident.fingerprint),
                };
                let target = if self.by_partition {
                    store.shard(*p)
                } else {
                    store.clone()
                };
                (target, ck)
            })
            .collect()
    }

    /// The summary of every engine, the handed-over shards' included.
    pub(super) fn summary(&self) -> Summary {
        if self.by_partition {
            let mut parts: Vec<(i32, Summary)> = self
                .engines
                .iter()
                .map(|(p, e)| (*p, e.summary()))
                .collect();
            parts.extend(self.retired.iter().map(|(p, e)| (*p, e.summary())));
            Summary::of_shards(parts)
        } else {
            self.engines[&0].summary()
        }
    }
}

/// What loading a shard needs of [`Shards`]: no engine.
pub(super) struct ShardsSpec<'a> {
    spec: &'a EngineSpec,
    ident: &'a Ident,
}

impl ShardsSpec<'_> {
    /// A checkpoint of another consumer group or another Kafka cluster is refused.
    fn check(&self, ck: &Checkpoint, store: &Store) -> anyhow::Result<()> {
        anyhow::ensure!(
            ck.group == self.ident.group,
            "the checkpoint in {} belongs to consumer group {:?}, not {:?} (kafka.group_id)\n  fix: {CHECKPOINT_FIX}",
            store.describe(),
            ck.group,
            self.ident.group
        );
        anyhow::ensure!(
            ck.cluster == self.ident.cluster,
            "the checkpoint in {} was written against Kafka cluster {:?}, and kafka.brokers is cluster {:?}: its offsets mean nothing here\n  fix: {CHECKPOINT_FIX}",
            store.describe(),
            ck.cluster,
            self.ident.cluster
        );
        Ok(())
    }
}

/// A fresh engine, or the one in `store`'s checkpoint (then its input
/// positions go to `positions`, and the ids already published past it are
/// returned).
/// (Takes the spec and ident, not [`Shards`]: its engines are not `Sync` and
/// must not be borrowed across an await.)
pub(super) async fn load(
    shards: &ShardsSpec<'_>,
    store: Option<&Store>,
    base: &rdkafka::ClientConfig,
    publisher: &Publisher,
    rescan: bool,
    positions: &Mutex<Positions>,
) -> anyhow::Result<(Engine, HashSet<String>)> {
    let mut engine = Engine::new(shards.spec)?;
    let Some(store) = store else {
        return Ok((engine, HashSet::new()));
    };
    let Some(ck) = store.load().await? else {
        tracing::info!(store = %store.describe(), "no checkpoint; starting fresh");
        return Ok((engine, HashSet::new()));
    };
    shards.check(&ck, store)?;
    engine
        .restore(ck.engine, &shards.ident.fingerprint)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot continue from the checkpoint in {}: {e}\n  fix: {CHECKPOINT_FIX}",
                store.describe()
            )
        })?;
    {
        let mut pos = positions.lock().expect("positions lock");
        for (t, parts) in &ck.inputs {
            for (p, o) in parts {
                pos.insert((t.clone(), *p), *o);
            }
        }
    }
    publisher.merge_written(&ck.outputs);
    let published = read_back(base, publisher, &ck.outputs, rescan).await?;
    tracing::info!(
        store = %store.describe(),
        inputs = ?ck.inputs,
        already_published = published.len(),
        "continuing from the checkpoint"
    );
    Ok((engine, published))
}

const CHECKPOINT_FIX: &str = "move the checkpoint away to start from scratch, or run with the configuration it was written under";
