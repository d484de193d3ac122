//! The embedded Kafka broker: tansu, started in-process on a loopback port.
//!
//! Behind `kafka.brokers = "embedded"` (the default) and `papertrader broker`.
//! It speaks the real Kafka protocol over TCP; every client, papertrader's own and
//! any other (kcat, confluent-kafka), talks to it as to any Kafka cluster. Storage
//! is in memory: the data lives as long as the process. tansu creates no topics
//! by itself, so callers create them ([`crate::kafka::ensure_topics`]).

use std::net::SocketAddr;
use std::time::Duration;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use url::Url;
use uuid::Uuid;

/// A running embedded broker. Dropping it stops the broker.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
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
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
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
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = ?e, "embedded broker stopped");
            }
        });
        // Wait until it accepts connections.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(advertised).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                task.abort();
                anyhow::bail!(
                    "the embedded broker did not accept connections on {advertised} within 10 s"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(%advertised, "embedded tansu broker listening");
        Ok(EmbeddedBroker {
            addr: advertised,
            task,
        })
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Wait until the broker stops (it runs until the process ends).
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
