//! The embedded Kafka broker: tansu, started in-process on a loopback port.
//!
//! Behind `kafka.brokers = "embedded"` (the default) and `papertrader broker`.
//! It speaks the real Kafka protocol over TCP; every client, papertrader's own and
//! any other (kcat, confluent-kafka), talks to it as to any Kafka cluster. Storage
//! is in memory: the data lives as long as the process. tansu creates no topics
//! by itself, so callers create them ([`crate::kafka::ensure_topics`]).
//!
//! # Stopping and restarting (outage tests)
//!
//! [`EmbeddedBroker::stop`] takes the broker off the network at once, as a crash
//! would: the listener and every client connection close, and requests in
//! flight get no answer (tansu 0.6 has no graceful stop). While it is stopped,
//! clients get "connection refused". [`EmbeddedBroker::restart`] listens again
//! on the same address with the same storage and the same group coordinator:
//! topics, records, high watermarks, committed offsets and group membership
//! survive, as they do when a broker with durable storage restarts. A produce
//! request that the broker had already stored when it stopped stays stored even
//! though its acknowledgement was lost. `tests/it/broker_restart.rs` runs paper
//! mode through such an outage.

use std::net::SocketAddr;
use std::time::Duration;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use url::Url;
use uuid::Uuid;

/// The tansu broker with in-memory storage: every clone shares the storage (its
/// object store and watermarks are behind `Arc`s) and the group coordinator.
type Tansu = Broker<Controller<StorageContainer>, StorageContainer>;

/// A running (or [stopped](EmbeddedBroker::stop)) embedded broker. Dropping it
/// stops the broker.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    /// Never served itself: each start serves a clone of it, so the storage and
    /// the group coordinator outlive a stop.
    broker: Tansu,
    /// The serving task while running. It owns the listener and, in its
    /// `JoinSet`, every connection: aborting it closes them all.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Start a broker on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Start a broker listening on `addr` (the port must be given, not 0).
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(
            addr.port() != 0,
            "the embedded broker needs an explicit port"
        );
        // Clients must be told a reachable address: advertise loopback for 0.0.0.0.
        let advertised = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let listener = Url::parse(&format!("tcp://{addr}"))?;
        let advertised_url = Url::parse(&format!("tcp://{advertised}"))?;
        let broker = Tansu::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id("papertrader")
            .incarnation_id(Uuid::now_v7())
            .advertised_listener(advertised_url)
            .listener(listener)
            .storage(Url::parse("memory://tansu/")?)
            .silent(true)
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("starting the embedded broker: {e:?}"))?;
        let mut b = EmbeddedBroker {
            addr: advertised,
            broker,
            task: None,
        };
        b.serve().await?;
        tracing::info!(%advertised, "embedded tansu broker listening");
        Ok(b)
    }

    /// Serve a clone of the broker and wait until it accepts connections.
    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut broker = self.broker.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = ?e, "embedded broker stopped");
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if task.is_finished() {
                anyhow::bail!(
                    "the embedded broker could not listen on {} (is the port taken?)",
                    self.addr
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                task.abort();
                anyhow::bail!(
                    "the embedded broker did not accept connections on {} within 10 s",
                    self.addr
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task = Some(task);
        Ok(())
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the broker is serving (not [stopped](Self::stop)).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Take the broker off the network, as a crash would: close the listener
    /// and every client connection without answering the requests in flight.
    /// Its data, committed offsets and groups are kept for [`Self::restart`].
    /// Returns once the listener is closed. Stopping a stopped broker does nothing.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The serve future is dropped when the task ends: the listener
            // closes, and its `JoinSet` aborts every connection task.
            let _ = task.await;
            tracing::info!(addr = %self.addr, "embedded tansu broker stopped");
        }
    }

    /// Listen again on the same address with the same storage and group
    /// coordinator, after [`Self::stop`]; returns once it accepts connections.
    /// Restarting a running broker does nothing.
    ///
    /// # Errors
    /// The address cannot be bound again (another process took the port), or the
    /// broker does not accept connections within 10 s.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.serve().await?;
        tracing::info!(addr = %self.addr, "embedded tansu broker listening again");
        Ok(())
    }

    /// Wait until the broker stops (it runs until the process ends).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
