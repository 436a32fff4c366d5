//! Shard leases: how several projector processes share the shards of one log, as the Kinesis
//! Client Library does.
//!
//! Layout (`control` table): PK `_projector#lease#<group>`, SK `<shard>`. Attributes: `owner`
//! (empty when free), `counter` (raised by every renewal, take and release), `updated_at`.
//!
//! Invariants and choices:
//! - every change is a conditional write: a renewal on `owner` being us, a take on `counter`
//!   being the value we saw, so two processes never both believe they took one lease;
//! - expiry is judged by the observer's own clock, as the KCL does: a lease whose counter has
//!   not moved for `lease_duration` since *we* first saw that counter is expired. No two
//!   machines' clocks are ever compared;
//! - a process balances towards `ceil(shards / live processes)` leases: free and expired leases
//!   first, else one lease stolen per tick from the most loaded process that holds more than
//!   that target;
//! - a process that cannot renew a lease for `lease_duration` stops its workers of that shard
//!   (someone else may have it by now), as does one whose renewal finds another owner;
//! - shutdown hands over gracefully: the shard's workers flush and checkpoint first, then the
//!   lease is released, so the next owner starts where this one stopped;
//! - leases only spread the work. Two workers on one shard for a moment (a steal noticed at the
//!   victim's next renewal) cannot double count: every item write is conditional on its last
//!   applied position (`flush.rs`).

use crate::engine::ProjectorHandle;
use crate::keys::lease_pk;
use crate::{Error, Result};
use shoal_schemas::ShardId;
use shoal_schemas::time::now_millis;
use shoal_storage::{Condition, Item, Query, ShardInfo, TableName, TransactOp, Update, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a process takes part in sharing the shards.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseConfig {
    /// This process's name in the lease table; unique per process.
    pub owner: String,
    /// Processes with the same group share the shards (one group per deployment).
    pub group: String,
    /// A lease not renewed for this long (by the observer's clock) may be taken.
    pub lease_duration: Duration,
    /// How often held leases are renewed and the table looked at.
    pub renew_interval: Duration,
    /// How often the log's shards are listed again (a reshard adds shards).
    pub shard_refresh: Duration,
}

impl LeaseConfig {
    /// The defaults for a process named `owner`: 10 s leases renewed every 2 s (the KCL's
    /// failover time is 10 s), shards listed every 10 s.
    pub fn new(owner: impl Into<String>) -> Self {
        LeaseConfig {
            owner: owner.into(),
            group: "projector".into(),
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            shard_refresh: Duration::from_secs(10),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.owner.is_empty() || self.group.is_empty() {
            return Err(Error::InvalidArgument(
                "leases need a non-empty owner and group".into(),
            ));
        }
        if self.renew_interval.is_zero() || self.renew_interval * 2 > self.lease_duration {
            return Err(Error::InvalidArgument(
                "lease renew_interval must be positive and at most half of lease_duration".into(),
            ));
        }
        if self.shard_refresh.is_zero() {
            return Err(Error::InvalidArgument(
                "lease shard_refresh must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// One lease as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub shard: ShardId,
    pub owner: String,
    pub counter: u64,
    pub updated_at: i64,
}

impl Lease {
    fn decode(shard: ShardId, item: &Item) -> Lease {
        Lease {
            shard,
            owner: item
                .get(OWNER)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            counter: item.get(COUNTER).and_then(Value::as_f64).unwrap_or(0.0) as u64,
            updated_at: item
                .get("updated_at")
                .and_then(Value::as_f64)
                .unwrap_or(0.0) as i64,
        }
    }
}

const OWNER: &str = "owner";
const COUNTER: &str = "counter";

/// Every lease of `group`, by shard.
pub async fn list(tables: &dyn shoal_storage::Table, group: &str) -> Result<Vec<Lease>> {
    let mut query = Query::partition(lease_pk(group));
    let mut found = Vec::new();
    loop {
        let page = tables.query(TableName::Control, &query).await?;
        found.extend(
            page.items
                .iter()
                .map(|(key, item)| Lease::decode(key.sk.clone(), item)),
        );
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(found),
        }
    }
}

/// The running coordinator of one process.
pub(crate) struct Coordinator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Coordinator {
    pub fn spawn(handle: ProjectorHandle, config: LeaseConfig) -> Coordinator {
        let (stop, stopped) = watch::channel(false);
        let leaser = Leaser {
            handle,
            config,
            shards: Vec::new(),
            refreshed: None,
            seen: HashMap::new(),
            held: BTreeMap::new(),
        };
        Coordinator {
            stop,
            task: tokio::spawn(leaser.run(stopped)),
        }
    }

    /// Stops the workers of every held shard (each flushes and checkpoints), then releases the
    /// leases.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the lease coordinator panicked");
        }
    }
}

/// What we last saw of a lease we do not hold, and since when (our clock).
struct Seen {
    owner: String,
    counter: u64,
    since: Instant,
}

/// A lease we hold: its counter after our last write, and when that write succeeded.
struct Held {
    counter: u64,
    renewed: Instant,
}

struct Leaser {
    handle: ProjectorHandle,
    config: LeaseConfig,
    shards: Vec<ShardInfo>,
    refreshed: Option<Instant>,
    seen: HashMap<ShardId, Seen>,
    held: BTreeMap<ShardId, Held>,
}

impl Leaser {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(owner = %self.config.owner, group = %self.config.group, "taking part in shard leases");
        while !*stop.borrow() {
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "lease round failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_interval) => {}
                _ = stop.changed() => {}
            }
        }
        self.release_all().await;
    }

    async fn tick(&mut self) -> Result<()> {
        self.renew().await;
        let due = self
            .refreshed
            .is_none_or(|at| at.elapsed() >= self.config.shard_refresh);
        if due {
            self.refresh_shards().await?;
        }
        self.balance().await
    }

    fn key(&self, shard: &ShardId) -> shoal_storage::Key {
        shoal_storage::Key::new(lease_pk(&self.config.group), shard.clone())
    }

    /// A bump of `shard`'s lease counter on condition that we still own it: a renewal, or with
    /// the owner cleared, a release.
    fn while_ours(&self, shard: &ShardId) -> Update {
        Update::new(self.key(shard))
            .add(COUNTER, 1.0)
            .set("updated_at", Value::N(now_millis() as f64))
            .when(Condition::Eq(
                OWNER.into(),
                Value::S(self.config.owner.clone()),
            ))
    }

    async fn renew(&mut self) {
        let shards: Vec<ShardId> = self.held.keys().cloned().collect();
        for shard in shards {
            let update = self.while_ours(&shard);
            match self
                .handle
                .tables()
                .update(TableName::Control, update)
                .await
            {
                Ok(item) => {
                    let counter = Lease::decode(shard.clone(), &item).counter;
                    self.held.insert(
                        shard,
                        Held {
                            counter,
                            renewed: Instant::now(),
                        },
                    );
                }
                Err(shoal_storage::Error::ConditionFailed) => {
                    tracing::info!(%shard, "lease taken by another process; stopping its workers");
                    self.lose(&shard).await;
                }
                Err(error) => {
                    let stale = self
                        .held
                        .get(&shard)
                        .is_some_and(|held| held.renewed.elapsed() >= self.config.lease_duration);
                    tracing::warn!(%shard, %error, stale, "could not renew a lease");
                    if stale {
                        self.lose(&shard).await;
                    }
                }
            }
        }
    }

    async fn lose(&mut self, shard: &ShardId) {
        self.held.remove(shard);
        self.handle.disown(shard).await;
    }

    /// Lists the shards and makes a free lease for each new one.
    async fn refresh_shards(&mut self) -> Result<()> {
        let shards = self.handle.log().shards().await?;
        let existing: HashMap<ShardId, Lease> =
            list(self.handle.tables().as_ref(), &self.config.group)
                .await?
                .into_iter()
                .map(|lease| (lease.shard.clone(), lease))
                .collect();
        for shard in &shards {
            if existing.contains_key(&shard.id) {
                continue;
            }
            let mut item = Item::new();
            item.insert(OWNER.into(), Value::S(String::new()));
            item.insert(COUNTER.into(), Value::N(0.0));
            item.insert("updated_at".into(), Value::N(now_millis() as f64));
            let put = TransactOp::Put {
                table: TableName::Control,
                key: self.key(&shard.id),
                item,
                condition: Some(Condition::ItemNotExists),
            };
            match self.handle.tables().transact(vec![put]).await {
                // Another process made it first: the same free lease.
                Ok(()) | Err(shoal_storage::Error::ConditionFailed) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.handle.set_known_shards(&shards);
        self.shards = shards;
        self.refreshed = Some(Instant::now());
        Ok(())
    }

    async fn balance(&mut self) -> Result<()> {
        let leases = list(self.handle.tables().as_ref(), &self.config.group).await?;
        let now = Instant::now();
        let shards = self.shards.clone();
        let known: HashMap<&ShardId, &ShardInfo> =
            shards.iter().map(|info| (&info.id, info)).collect();
        let mut expired: Vec<&Lease> = Vec::new();
        let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for lease in leases
            .iter()
            .filter(|lease| known.contains_key(&lease.shard))
        {
            if lease.owner == self.config.owner {
                continue;
            }
            let seen = self
                .seen
                .entry(lease.shard.clone())
                .and_modify(|seen| {
                    if seen.counter != lease.counter || seen.owner != lease.owner {
                        *seen = Seen {
                            owner: lease.owner.clone(),
                            counter: lease.counter,
                            since: now,
                        };
                    }
                })
                .or_insert_with(|| Seen {
                    owner: lease.owner.clone(),
                    counter: lease.counter,
                    since: now,
                });
            let is_expired = lease.owner.is_empty()
                || now.duration_since(seen.since) >= self.config.lease_duration;
            if is_expired {
                expired.push(lease);
            } else {
                load.entry(lease.owner.as_str()).or_default().push(lease);
            }
        }
        let total = known.len();
        let workers = load.len() + 1;
        let target = total.div_ceil(workers);
        let mut wanted = target.saturating_sub(self.held.len());
        if wanted == 0 {
            return Ok(());
        }
        // Free leases before expired ones, in the log's order (parents before children).
        let order: HashMap<&ShardId, usize> = shards
            .iter()
            .enumerate()
            .map(|(at, info)| (&info.id, at))
            .collect();
        expired.sort_by_key(|lease| (!lease.owner.is_empty(), order.get(&lease.shard).copied()));
        let mut taken_any = false;
        for lease in expired {
            if wanted == 0 {
                break;
            }
            if self.take(lease, &known).await? {
                wanted -= 1;
                taken_any = true;
            }
        }
        if taken_any || wanted == 0 {
            return Ok(());
        }
        // Nothing free: steal one lease from the most loaded process above the target.
        let victim = load
            .values()
            .filter(|leases| leases.len() > target)
            .max_by_key(|leases| leases.len());
        if let Some(lease) = victim.and_then(|leases| leases.last()) {
            tracing::info!(shard = %lease.shard, from = %lease.owner, "stealing a lease to balance");
            self.take(lease, &known).await?;
        }
        Ok(())
    }

    /// Takes `lease` if it is still as we saw it; whether we got it.
    async fn take(&mut self, lease: &Lease, known: &HashMap<&ShardId, &ShardInfo>) -> Result<bool> {
        let Some(info) = known.get(&lease.shard) else {
            return Ok(false);
        };
        let update = Update::new(self.key(&lease.shard))
            .set(OWNER, Value::S(self.config.owner.clone()))
            .add(COUNTER, 1.0)
            .set("updated_at", Value::N(now_millis() as f64))
            .when(Condition::Eq(
                COUNTER.into(),
                Value::N(lease.counter as f64),
            ));
        match self
            .handle
            .tables()
            .update(TableName::Control, update)
            .await
        {
            Ok(item) => {
                let counter = Lease::decode(lease.shard.clone(), &item).counter;
                tracing::info!(shard = %lease.shard, previous = %lease.owner, "took a lease");
                self.held.insert(
                    lease.shard.clone(),
                    Held {
                        counter,
                        renewed: Instant::now(),
                    },
                );
                self.seen.remove(&lease.shard);
                self.handle.own((*info).clone());
                Ok(true)
            }
            Err(shoal_storage::Error::ConditionFailed) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Graceful handover: stop each shard's workers (they flush and checkpoint), then free its
    /// lease so another process takes it at its next round rather than after expiry.
    async fn release_all(&mut self) {
        let held: Vec<(ShardId, Held)> = std::mem::take(&mut self.held).into_iter().collect();
        for (shard, held) in held {
            self.handle.disown(&shard).await;
            let update = self.while_ours(&shard).set(OWNER, Value::S(String::new()));
            match self
                .handle
                .tables()
                .update(TableName::Control, update)
                .await
            {
                Ok(_) => tracing::info!(%shard, counter = held.counter, "released a lease"),
                Err(error) => {
                    tracing::warn!(%shard, %error, "could not release a lease; it expires instead")
                }
            }
        }
    }
}
