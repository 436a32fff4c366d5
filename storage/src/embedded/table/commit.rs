//! Group commit of the embedded tables' writes: every write that arrives while a transaction
//! is being committed waits, and the next transaction carries all of them, with one fsync.
//!
//! Why: each projector worker (a projection on a shard), the search annotations' sources, the
//! canary, leases and checkpoints all write through `transact`/`update`/`write`. redb runs one
//! write transaction at a time, so with one fsync per call the writers queue behind each
//! other's fsyncs, and how fresh the read models are becomes a function of how many workers
//! there are times the disk's fsync latency. With group commit, a round of flushes costs one.
//!
//! Why it is still one atomic, durable call per caller:
//! - the requests of a group run one after the other inside one redb write transaction, each
//!   seeing the writes of those before it: the same outcome as running them one by one, in that
//!   order (redb serialised them in some order before, too);
//! - every operation checks all its conditions and input before its first write (`ops`), so a
//!   request refused for its own reasons (a failed condition, invalid input) has written
//!   nothing, and the others go on. A transaction's input is checked (and its ops put in key
//!   order) before it is queued, on the caller's task (`ops::Prepared`): it needs no database,
//!   and this thread is the one every flush waits for;
//! - any other failure (I/O, a corrupt page, redb) may have left a request half-written, so it
//!   fails the whole group: the transaction is dropped (redb rolls it back) and every request
//!   of the group gets an error;
//! - a caller is answered only after the commit has returned. A group is committed with
//!   `Durability::Immediate` (fsync) when any of its requests asks for durability, or when the
//!   last durable commit is the sync interval old (`DEFAULT_SYNC_INTERVAL`, or
//!   `EmbeddedTables::set_sync_interval`); a group of relaxed requests only
//!   (`transact_relaxed`) is otherwise committed with `Durability::None`. A durable commit makes
//!   every commit before it durable too, and redb frees pages only in durable commits, so the
//!   interval also bounds how far the file grows with pages it cannot reuse yet.
//!
//! Why relaxed commits: a projector flush is the largest writer, and the log can always replay
//! it, so syncing each one buys nothing: its fsync only delays the moment the flush becomes
//! visible (the freshness of every read model) by the disk's latency.
//!
//! The leader: the first request that finds no commit under way wakes the committer, a thread
//! of its own started with the tables, which commits groups until the queue is empty. Why a
//! thread of its own and not tokio's blocking pool: Linux threads inherit the nice value of
//! the thread that creates them (their scheduling policy too), and a rebuild runs at the
//! lowest priority (`shoal_projector`'s background runtime); a leader started from there would commit every live flush of its
//! group at the lowest priority, behind the very work it should have priority over. The
//! committer is created by whoever opens the tables (the server, at startup), and keeps that
//! priority unless told otherwise: the server sets it to the live projections' own
//! (`EmbeddedTables::set_commit_nice`), below ingest and above rebuilds. The leader holds the
//! database only while it commits, and lets go of it before it answers: once every call has
//! returned and every handle is dropped, the committer ends and the file is closed and can be
//! opened again.

use super::ops;
use super::{Inner, RedbStore, redb_error};
use crate::{Error, Item, Result, TableName, Update, WriteOp};
use redb::Durability;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One write call of the [`crate::Table`] API.
pub(crate) enum Request {
    Write(TableName, Vec<WriteOp>),
    Update(TableName, Update),
    Transact(ops::Prepared),
    /// A transact that a crash may undo until the next durable commit.
    TransactRelaxed(ops::Prepared),
}

impl Request {
    fn durable(&self) -> bool {
        !matches!(self, Request::TransactRelaxed(_))
    }
}

/// The longest a relaxed commit waits for a durable one, unless the opener sets another: while
/// relaxed writes keep coming, one group in this interval is committed durably.
///
/// Why one second: a durable commit writes out every page the relaxed commits since the last
/// one changed, then fsyncs, and no other group commits meanwhile, so every read model waits
/// for it; the interval sets how much it writes. Under 20,000 events/s of background batches,
/// durable commits every 5 s took 80–280 ms, every second 30–90 ms: the slowest write-to-
/// readable wait halved (median of six runs' maxima 293 → 141 ms; the p99, set by the ordinary
/// commits, stayed at ~90 ms), peak RSS fell 7–10 %, and batched ingest did not slow
/// (BENCHMARKS.md, "Session 18"). Every 250 ms the fsyncs began to delay the median write.
/// A crash costs at most this much replay.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// No priority asked for: the committer keeps the opener's.
pub(crate) const NICE_UNSET: i32 = i32::MIN;

/// What a request answers: `Some(item)` for an update, `None` otherwise.
type Answer = Result<Option<Item>>;

pub(crate) struct Queue {
    pending: Vec<(Request, oneshot::Sender<Answer>)>,
    /// A leader is committing: new requests join its next group.
    leading: bool,
    /// When the last durable commit started; `None` before the first.
    last_durable: Option<Instant>,
    /// How long relaxed commits may go on without a durable one.
    pub(crate) sync_interval: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            pending: Vec::new(),
            leading: false,
            last_durable: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

pub(crate) fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Holders only push, take or flip a flag: a panic elsewhere cannot leave it half-changed.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Queues `request`, starts a leader when none is committing, and waits for the answer.
pub(crate) async fn submit(inner: &Arc<Inner>, request: Request) -> Answer {
    let (answer, answered) = oneshot::channel();
    let lead = {
        let mut queue = lock(&inner.queue);
        queue.pending.push((request, answer));
        !std::mem::replace(&mut queue.leading, true)
    };
    if lead && inner.committer.send(()).is_err() {
        // The committer ends only once the tables are dropped, so this does not happen; if
        // it ever did, leading from the blocking pool beats a write that never returns.
        let (database, queue) = (Arc::downgrade(inner), Arc::clone(&inner.queue));
        tokio::task::spawn_blocking(move || lead_commits(&database, &queue));
    }
    answered
        .await
        .map_err(|_| Error::Backend("the table writer stopped before answering".to_owned()))?
}

/// Starts the committer of the tables `database` will point to: it leads once per wake-up,
/// and ends when the tables are dropped (with them, the sender).
pub(crate) fn start_committer(
    database: Weak<Inner>,
    queue: Arc<Mutex<Queue>>,
    nice: Arc<AtomicI32>,
    wakes: mpsc::Receiver<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shoal-tables-commit".to_owned())
        .spawn(move || {
            let mut applied = None;
            for () in wakes {
                apply_nice(&nice, &mut applied);
                // A panicking commit has failed its group already (`Leading`); the next
                // write still finds a committer.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    lead_commits(&database, &queue);
                }));
            }
        })
        .map(drop)
}

/// Takes the nice value asked for with [`super::EmbeddedTables::set_commit_nice`], once per
/// change: the committer's priority is its own thread's, so only it can set it.
fn apply_nice(wanted: &AtomicI32, applied: &mut Option<i32>) {
    let nice = wanted.load(Ordering::Relaxed);
    if nice == NICE_UNSET || *applied == Some(nice) {
        return;
    }
    *applied = Some(nice);
    if let Err(error) = crate::priority::lower_current_thread_to(nice) {
        tracing::warn!(%error, nice, "could not set the priority of the tables' committer");
    }
}

/// Commits groups until no request is waiting.
fn lead_commits(database: &Weak<Inner>, queue: &Mutex<Queue>) {
    let _leading = Leading(queue);
    loop {
        let (group, durability) = {
            let mut queue = lock(queue);
            if queue.pending.is_empty() {
                queue.leading = false;
                return;
            }
            let group = std::mem::take(&mut queue.pending);
            let due = queue
                .last_durable
                .is_none_or(|last| last.elapsed() >= queue.sync_interval);
            let durability = if due || group.iter().any(|(request, _)| request.durable()) {
                queue.last_durable = Some(Instant::now());
                Durability::Immediate
            } else {
                Durability::None
            };
            (group, durability)
        };
        // A caller waits in the group, so its handle (a strong reference) is alive.
        let Some(inner) = database.upgrade() else {
            return;
        };
        let answers = commit_group(&inner, group, durability);
        // Counted once the group is visible, and before any writer of it is answered
        // (`Table::commit_count`).
        inner
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        drop(inner);
        for (answer, outcome) in answers {
            // A caller that went away no longer needs its answer.
            let _ = answer.send(outcome);
        }
    }
}

/// Hands the lead back if a commit panics, failing what waits (their senders are dropped), so
/// that later writes start a new leader instead of queueing behind one that is gone.
struct Leading<'a>(&'a Mutex<Queue>);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = lock(self.0);
            queue.pending.clear();
            queue.leading = false;
        }
    }
}

/// A refusal of the request itself, raised before it wrote anything (see `ops`).
fn refused_before_writing(error: &Error) -> bool {
    matches!(
        error,
        Error::ConditionFailed
            | Error::InvalidArgument(_)
            | Error::TooLarge { .. }
            | Error::InvalidCursor
    )
}

/// Commits one group; the answers to hand out once the database is let go of.
fn commit_group(
    inner: &Inner,
    group: Vec<(Request, oneshot::Sender<Answer>)>,
    durability: Durability,
) -> Vec<(oneshot::Sender<Answer>, Answer)> {
    let size = group.len();
    let (requests, answers): (Vec<Request>, Vec<oneshot::Sender<Answer>>) =
        group.into_iter().unzip();
    match run_group(inner, requests, durability) {
        Ok(outcomes) => {
            metrics::histogram!("shoal_table_group_commit_requests").record(size as f64);
            answers.into_iter().zip(outcomes).collect()
        }
        Err(error) => {
            tracing::warn!(%error, requests = size, "a table write group failed; none of it was committed");
            let message = error.to_string();
            let mut error = Some(error);
            answers
                .into_iter()
                .map(|answer| {
                    let failure = error.take().unwrap_or_else(|| {
                        Error::Backend(format!("the write group failed: {message}"))
                    });
                    (answer, Err(failure))
                })
                .collect()
        }
    }
}

/// Runs the requests in one transaction and commits it; the outer error fails them all.
fn run_group(inner: &Inner, requests: Vec<Request>, durability: Durability) -> Result<Vec<Answer>> {
    let mut txn = inner.db.begin_write().map_err(redb_error)?;
    txn.set_durability(durability).map_err(redb_error)?;
    let mut outcomes = Vec::with_capacity(requests.len());
    {
        let mut store = RedbStore::new(&txn, &inner.path);
        for request in requests {
            let outcome = match request {
                Request::Write(table, ops) => ops::write(&mut store, table, ops).map(|()| None),
                Request::Update(table, update) => ops::update(&mut store, table, &update).map(Some),
                Request::Transact(ops) | Request::TransactRelaxed(ops) => {
                    ops::transact_prepared(&mut store, ops).map(|()| None)
                }
            };
            match outcome {
                Err(error) if !refused_before_writing(&error) => return Err(error),
                outcome => outcomes.push(outcome),
            }
        }
        // The open tables borrow the transaction: they close here, before the commit.
    }
    txn.commit().map_err(redb_error)?;
    Ok(outcomes)
}
