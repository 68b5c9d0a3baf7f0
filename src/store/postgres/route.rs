//! Citus routing (`store.route_to_workers`): a portal's one-call writes and
//! its streams go straight to the node that holds the portal's shard group
//! instead of through the coordinator. The placement is read from the
//! coordinator's catalog and read again every few seconds; a stale one only
//! costs the hop it meant to save (every node of a Citus 11+ cluster runs
//! any statement and forwards it), never a wrong answer, and a node that
//! cannot be reached is skipped until the next reading.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// How long a placement reading serves before it is read again.
const PLACEMENT_TTL: Duration = Duration::from_secs(5);

/// How long a node that refused a connection is passed over.
const NODE_BACKOFF: Duration = Duration::from_secs(5);

/// The shards of the colocation group every table of the service joins,
/// with the node of each placement (hash ranges as Citus stores them); none
/// before the first `migrate` made the table.
const PLACEMENTS: &str =
    "SELECT s.shardminvalue::int4, s.shardmaxvalue::int4, n.nodename, n.nodeport
     FROM pg_dist_shard s
     JOIN pg_dist_placement p ON p.shardid = s.shardid
     JOIN pg_dist_node n ON n.groupid = p.groupid
    WHERE s.logicalrelid = to_regclass('portal_type_ids')
      AND n.isactive AND n.noderole = 'primary'
    ORDER BY 1";

/// PostgreSQL's `hashint8`, which Citus applies to a `bigint` distribution
/// column to find its shard (lookup3's final mix of the folded halves).
pub fn hash_bigint(value: i64) -> i32 {
    let lo = value as u32;
    let hi = (value >> 32) as u32;
    let k = lo ^ if value >= 0 { hi } else { !hi };
    let seed = 0x9e37_79b9u32.wrapping_add(4).wrapping_add(3_923_095);
    // lookup3's final(a, b, c): each step mixes one word into the next by
    // a rotation, c from b, a from c, b from a, and round again.
    let mut words = [seed.wrapping_add(k), seed, seed];
    for (step, rotation) in [14, 11, 25, 16, 4, 14, 24].into_iter().enumerate() {
        let (into, from) = [(2, 1), (0, 2), (1, 0)][step % 3];
        words[into] ^= words[from];
        words[into] = words[into].wrapping_sub(words[from].rotate_left(rotation));
    }
    words[2] as i32
}

/// Whether a failed acquire means the node refused to connect (so its
/// portals go through the coordinator for a while) rather than that its
/// pool stayed full for the acquire timeout (the caller's own load).
pub fn is_refusal(err: &sqlx::Error) -> bool {
    !matches!(err, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
}

/// One node's pools: calls (with the statement timeout) and streams.
pub(super) struct Node {
    /// `host:port` as the coordinator's catalog names it.
    name: String,
    pub pool: PgPool,
    pub scan_pool: PgPool,
    /// Until when the node is passed over after refusing a connection.
    down_until: RwLock<Option<Instant>>,
}

impl Node {
    /// Marks the node unreachable for a while (its portals go through the
    /// coordinator meanwhile).
    pub fn failed(&self, err: &sqlx::Error) {
        tracing::warn!(node = %self.name, error = %err, "a Citus node refused a connection; its portals go through the coordinator for a while");
        *self.down_until.write().expect("node state") = Some(Instant::now() + NODE_BACKOFF);
    }

    fn is_up(&self) -> bool {
        match *self.down_until.read().expect("node state") {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }
}

struct Placement {
    read_at: Instant,
    /// Hash ranges, sorted by their lower bound, each with its node.
    shards: Vec<(i32, i32, Arc<Node>)>,
}

/// How to reach the nodes: the coordinator's connect options (each node's
/// host and port put in) and pool settings.
pub(super) struct NodeOptions {
    pub calls: PgConnectOptions,
    pub scans: PgConnectOptions,
    pub pool: PgPoolOptions,
}

pub(super) struct Router {
    coordinator: PgPool,
    options: NodeOptions,
    placement: RwLock<Arc<Placement>>,
    /// Every node's pools seen so far, by host and port (a node keeps its
    /// pools across readings).
    nodes: RwLock<HashMap<(String, u16), Arc<Node>>>,
    refreshing: AtomicBool,
}

impl Router {
    /// A router reading its first placement now; none when the database is
    /// not a Citus coordinator. Until the tables are distributed (the
    /// first `migrate`) it routes nothing and reads the placement again.
    pub async fn start(coordinator: PgPool, options: NodeOptions) -> Option<Arc<Router>> {
        let citus: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
        )
        .fetch_one(&coordinator)
        .await;
        match citus {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("store.route_to_workers is set but the database has no citus extension: every call goes to store.url");
                return None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "store.route_to_workers is set but the database cannot say whether it is Citus: every call goes to store.url");
                return None;
            }
        }
        let router = Arc::new(Router {
            coordinator,
            options,
            placement: RwLock::new(Arc::new(Placement {
                read_at: Instant::now(),
                shards: Vec::new(),
            })),
            nodes: RwLock::new(HashMap::new()),
            refreshing: AtomicBool::new(false),
        });
        router.read_now().await;
        Some(router)
    }

    /// Reads the placement and, when it names nodes the service has not
    /// connected to, tries each once so a node it cannot reach (its catalog
    /// name does not resolve here, say) is said at once.
    pub async fn read_now(&self) {
        let known = self.nodes.read().expect("nodes").len();
        match self.read().await {
            Ok(placement) => {
                let nodes: Vec<Arc<Node>> = self
                    .nodes
                    .read()
                    .expect("nodes")
                    .values()
                    .cloned()
                    .collect();
                if nodes.len() > known {
                    for node in &nodes {
                        if let Err(err) = node.pool.acquire().await {
                            node.failed(&err);
                        }
                    }
                    tracing::info!(
                        shards = placement.shards.len(),
                        nodes = nodes.len(),
                        "routing each portal's one-call writes and streams to the Citus node that holds it"
                    );
                }
                *self.placement.write().expect("placement") = Arc::new(placement);
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the Citus placement failed; the last one serves on")
            }
        }
    }

    /// The node holding `portal`, when it is known and reachable.
    pub fn node(self: &Arc<Self>, portal: i64) -> Option<Arc<Node>> {
        let placement = self.placement.read().expect("placement").clone();
        if placement.read_at.elapsed() >= PLACEMENT_TTL {
            self.refresh();
        }
        let hash = hash_bigint(portal);
        let at = placement.shards.partition_point(|(min, _, _)| *min <= hash);
        let (_, max, node) = placement.shards.get(at.checked_sub(1)?)?;
        (hash <= *max && node.is_up()).then(|| node.clone())
    }

    /// Reads the placement again in the background (one reading at a time).
    fn refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let router = self.clone();
        tokio::spawn(async move {
            router.read_now().await;
            router.refreshing.store(false, Ordering::Release);
        });
    }

    async fn read(&self) -> Result<Placement, sqlx::Error> {
        let rows: Vec<(i32, i32, String, i32)> = sqlx::query_as(PLACEMENTS)
            .fetch_all(&self.coordinator)
            .await?;
        let mut shards = Vec::with_capacity(rows.len());
        for (min, max, host, port) in rows {
            let port = u16::try_from(port).unwrap_or(5432);
            shards.push((min, max, self.node_at(host, port)));
        }
        Ok(Placement {
            read_at: Instant::now(),
            shards,
        })
    }

    fn node_at(&self, host: String, port: u16) -> Arc<Node> {
        if let Some(node) = self.nodes.read().expect("nodes").get(&(host.clone(), port)) {
            return node.clone();
        }
        let pool = |options: &PgConnectOptions| {
            (self.options.pool.clone())
                .min_connections(0)
                .connect_lazy_with(options.clone().host(&host).port(port))
        };
        let node = Arc::new(Node {
            name: format!("{host}:{port}"),
            pool: pool(&self.options.calls),
            scan_pool: pool(&self.options.scans),
            down_until: RwLock::new(None),
        });
        self.nodes
            .write()
            .expect("nodes")
            .entry((host, port))
            .or_insert(node)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::hash_bigint;

    #[test]
    fn hashes_as_postgresql_does() {
        // What PostgreSQL 15's `SELECT hashint8(v)` prints; the differential
        // test in tests/citus.rs compares many more.
        for (value, hash) in [
            (0, -272_711_505),
            (1, -1_905_060_026),
            (-1, 385_747_274),
            (4_294_967_296, -1_905_060_026),
            (i64::MIN, -96_758_253),
            (i64::MAX, -1_524_351_049),
            (123_456_789_012, 1_645_134_813),
        ] {
            assert_eq!(hash_bigint(value), hash, "hashint8({value})");
        }
    }
}
