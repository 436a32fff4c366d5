//! The embedded (redb) tables: the shared conformance suite, the in-memory double on the same
//! suite, persistence across reopening, and a rough throughput measurement (ignored by default).

use shoal_storage::embedded::EmbeddedTables;
use shoal_storage::memory::MemoryTables;
use shoal_storage::{Error, Item, Key, Query, Table, TableName, Update, Value, WriteOp};
use std::sync::Arc;
use std::time::Instant;
use tempfile::TempDir;

/// A fresh embedded database in its own temporary directory (removed when the check ends).
fn embedded() -> (Arc<dyn Table>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = EmbeddedTables::open(&dir.path().join("tables.redb")).expect("open");
    (Arc::new(tables), dir)
}

mod embedded_conformance {
    use super::*;
    shoal_storage::table_conformance!(embedded());
}

mod memory_conformance {
    use super::*;
    shoal_storage::table_conformance!(Arc::new(MemoryTables::new()) as Arc<dyn Table>);
}

fn counter(count: f64) -> Item {
    [("count".to_owned(), Value::N(count))].into()
}

/// The nice value of each thread of this process: (thread id, name, nice).
#[cfg(target_os = "linux")]
fn thread_priorities() -> Vec<(String, String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // After the parenthesised name: state is field 3 and nice field 19 of the whole line.
        let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        let nice = after_name
            .split(' ')
            .nth(16)
            .expect("nice")
            .parse()
            .expect("a number");
        let id = path
            .file_name()
            .expect("an id")
            .to_string_lossy()
            .into_owned();
        threads.push((id, name.trim().to_owned(), nice));
    }
    threads
}

/// A rebuild writes from threads at the lowest priority (here nice 19), and its writes share group
/// commits with live flushes: the commit must run on a thread that kept the opener's
/// priority, or live flushes wait behind a starved thread. Threads inherit the nice value of
/// the thread that creates them, so a commit led from a pool the low-priority writer grew
/// would run at nice 19.
#[cfg(target_os = "linux")]
#[test]
fn a_low_priority_writer_does_not_lower_the_commit() {
    let me = unsafe { libc::gettid() }.to_string();
    let opener = thread_priorities()
        .into_iter()
        .find(|(id, _, _)| *id == me)
        .map(|(_, _, nice)| nice)
        .expect("this thread in /proc/self/task");
    assert!(
        opener < 19,
        "the test runs at nice {opener}: it cannot tell a lowered commit apart"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = Arc::new(EmbeddedTables::open(&dir.path().join("tables.redb")).expect("open"));
    let writer = Arc::clone(&tables);
    let seen = std::thread::spawn(move || {
        shoal_storage::priority::set_current_thread_nice(shoal_storage::priority::LOWEST)
            .expect("setpriority");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for round in 0..3 {
                let ops = vec![WriteOp::Put {
                    key: Key::new("rebuild", format!("item-{round}")),
                    item: counter(f64::from(round)),
                }];
                writer.write(TableName::Views, ops).await.expect("write");
            }
        });
        // Before the runtime (and any pool it grew) goes away.
        let own = unsafe { libc::gettid() }.to_string();
        thread_priorities()
            .into_iter()
            .filter(|(id, _, _)| *id != own)
            .collect::<Vec<_>>()
    })
    .join()
    .expect("the writer thread");
    let lowered: Vec<_> = seen.iter().filter(|(_, _, nice)| *nice == 19).collect();
    assert!(
        lowered.is_empty(),
        "threads at nice 19 besides the writer: {lowered:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, name, nice)| name == "shoal-tables-co" && *nice == opener),
        "no committer thread at the opener's nice {opener} in {seen:?}"
    );
}

#[tokio::test]
async fn items_survive_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nested").join("tables.redb");
    let key = Key::new("tenant#entity", "aggregate");
    {
        let tables = EmbeddedTables::open(&path).expect("open");
        for name in TableName::ALL {
            let update = Update::new(key.clone()).add("count", 1.0);
            tables.update(name, update).await.expect("update");
        }
        let update = Update::new(key.clone()).add("count", 1.0);
        tables
            .update(TableName::Views, update)
            .await
            .expect("update");
        // A second handle on an open file is refused rather than corrupting it.
        assert!(matches!(
            EmbeddedTables::open(&path),
            Err(Error::Backend(_))
        ));
    }
    let reopened = EmbeddedTables::open(&path).expect("reopen");
    assert_eq!(
        reopened.get(TableName::Views, &key).await.expect("get"),
        Some(counter(2.0))
    );
    assert_eq!(
        reopened.get(TableName::Control, &key).await.expect("get"),
        Some(counter(1.0))
    );
    assert_eq!(
        reopened.get(TableName::Events, &key).await.expect("get"),
        Some(counter(1.0))
    );
    let page = reopened
        .query(TableName::Views, &Query::partition("tenant#entity"))
        .await
        .expect("query");
    assert_eq!(page.items, vec![(key, counter(2.0))]);
}

#[tokio::test]
async fn clones_share_one_database() {
    let (table, _dir) = embedded();
    let tables: Arc<dyn Table> = Arc::clone(&table);
    let key = Key::new("p", "s");
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let tables = Arc::clone(&tables);
            let key = key.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let update = Update::new(key.clone()).add("count", 1.0);
                    tables
                        .update(TableName::Views, update)
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    // Every read-modify-write is one transaction, so none of the 40 increments is lost.
    assert_eq!(
        table.get(TableName::Views, &key).await.expect("get"),
        Some(counter(40.0))
    );
}

/// The commit count moves with every kind of write, before the writer is answered, and not
/// with reads: what a reader keeps while it stands still (a projection's freshness) is never
/// older than a write already answered.
#[tokio::test]
async fn the_commit_count_moves_with_writes_only() {
    let (table, _dir) = embedded();
    let key = Key::new("p", "s");
    let mut last = table
        .commit_count()
        .expect("the embedded tables count commits");
    let mut moved = |table: &Arc<dyn Table>, what: &str| {
        let now = table.commit_count().expect("count");
        assert!(
            now > last,
            "{what} did not move the count ({last} -> {now})"
        );
        last = now;
    };
    table
        .write(
            TableName::Views,
            vec![WriteOp::Put {
                key: key.clone(),
                item: counter(1.0),
            }],
        )
        .await
        .expect("write");
    moved(&table, "write");
    table
        .update(TableName::Views, Update::new(key.clone()).add("count", 1.0))
        .await
        .expect("update");
    moved(&table, "update");
    let put = shoal_storage::TransactOp::Put {
        table: TableName::Views,
        key: key.clone(),
        item: counter(5.0),
        condition: None,
    };
    table.transact_relaxed(vec![put]).await.expect("transact");
    moved(&table, "relaxed transact");
    let before = table.commit_count();
    table.get(TableName::Views, &key).await.expect("get");
    table
        .query(TableName::Views, &Query::partition("p"))
        .await
        .expect("query");
    assert_eq!(table.commit_count(), before, "reads moved the count");
    assert_eq!(MemoryTables::new().commit_count(), None);
}

/// Set in the child process of `a_crash_undoes_only_a_suffix_of_relaxed_commits`: the tables'
/// path it writes to before it aborts.
const CRASH_CHILD: &str = "SHOAL_TEST_RELAXED_CRASH_CHILD";

/// Runs `test` of this binary again as a child with `variable` set to `path`, checks that it
/// aborted (as a crash would stop it), and opens the tables it left.
fn crashed_child(test: &str, variable: &str, path: &std::path::Path) -> EmbeddedTables {
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--test-threads=1"])
        .env(variable, path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running the child");
    assert!(
        !status.success(),
        "the child must abort, not exit: {status}"
    );
    EmbeddedTables::open(path).expect("reopen after the crash")
}

/// What a crash undoes of relaxed commits is a suffix: never a checkpoint without the items it
/// was committed with, never a later flush without the earlier ones, and never a durable write.
/// The test runs itself again as a child that commits, then aborts without closing the file.
#[tokio::test]
async fn a_crash_undoes_only_a_suffix_of_relaxed_commits() {
    use shoal_storage::TransactOp;
    let checkpoint = Key::new("_projector", "checkpoint");
    let flushed = |i: usize| Key::new("tenant#entity", format!("item-{i:03}"));
    if let Some(path) = std::env::var_os(CRASH_CHILD) {
        let tables = EmbeddedTables::open(std::path::Path::new(&path)).expect("open");
        let durable = Update::new(Key::new("tenant#entity", "durable")).add("count", 1.0);
        tables
            .update(TableName::Views, durable)
            .await
            .expect("update");
        for i in 0..50 {
            let ops = vec![
                TransactOp::Put {
                    table: TableName::Views,
                    key: flushed(i),
                    item: counter(i as f64),
                    condition: None,
                },
                TransactOp::Put {
                    table: TableName::Control,
                    key: checkpoint.clone(),
                    item: counter(i as f64),
                    condition: None,
                },
            ];
            tables.transact_relaxed(ops).await.expect("transact");
        }
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = crashed_child(
        "a_crash_undoes_only_a_suffix_of_relaxed_commits",
        CRASH_CHILD,
        &dir.path().join("tables.redb"),
    );
    assert_eq!(
        tables
            .get(TableName::Views, &Key::new("tenant#entity", "durable"))
            .await
            .expect("get"),
        Some(counter(1.0)),
        "a durable write is never undone"
    );
    let kept = match tables
        .get(TableName::Control, &checkpoint)
        .await
        .expect("get")
    {
        Some(item) => item.get("count").and_then(Value::as_f64).expect("count") as usize + 1,
        None => 0,
    };
    for i in 0..50 {
        let item = tables
            .get(TableName::Views, &flushed(i))
            .await
            .expect("get");
        assert_eq!(
            item.is_some(),
            i < kept,
            "item {i} against a checkpoint covering {kept} flushes"
        );
    }
}

/// Set in the child process of `a_zero_sync_interval_makes_every_relaxed_commit_durable`.
const ZERO_INTERVAL_CHILD: &str = "SHOAL_TEST_ZERO_SYNC_INTERVAL_CHILD";

/// With `set_sync_interval(ZERO)` every group is committed durably, so a crash right after a run
/// of relaxed commits keeps all of them (with the default interval, the same run of commits in
/// well under a second after a durable write would be undone; see the test above).
#[tokio::test]
async fn a_zero_sync_interval_makes_every_relaxed_commit_durable() {
    use shoal_storage::TransactOp;
    let flushed = |i: usize| Key::new("tenant#entity", format!("item-{i:03}"));
    if let Some(path) = std::env::var_os(ZERO_INTERVAL_CHILD) {
        let tables = EmbeddedTables::open(std::path::Path::new(&path)).expect("open");
        tables.set_sync_interval(std::time::Duration::ZERO);
        for i in 0..20 {
            let put = TransactOp::Put {
                table: TableName::Views,
                key: flushed(i),
                item: counter(i as f64),
                condition: None,
            };
            tables.transact_relaxed(vec![put]).await.expect("transact");
        }
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = crashed_child(
        "a_zero_sync_interval_makes_every_relaxed_commit_durable",
        ZERO_INTERVAL_CHILD,
        &dir.path().join("tables.redb"),
    );
    for i in 0..20 {
        assert_eq!(
            tables
                .get(TableName::Views, &flushed(i))
                .await
                .expect("get"),
            Some(counter(i as f64)),
            "relaxed commit {i} was undone by the crash"
        );
    }
}

/// Rough figures, not an assertion: `cargo test -p shoal-storage --release --test
/// embedded_table -- --ignored --nocapture throughput`. Uses the target directory's disk, not
/// a tmpfs, so the fsync per commit is real.
/// Writes that arrive together share a commit (`commit.rs`), yet each stays its own atomic
/// call: a refused one changes nothing and does not fail the others, each sees the writes of
/// those committed before it, and everything answered Ok is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_but_stay_separate_calls() {
    use shoal_storage::{Condition, TransactOp};
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tables.redb");
    let tables = Arc::new(EmbeddedTables::open(&path).expect("open"));
    let counter_key = Key::new("group", "counter");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let tables = Arc::clone(&tables);
        let counter_key = counter_key.clone();
        tasks.spawn(async move {
            // Odd calls ask for a condition that never holds, with a put beside it.
            let condition = if n % 2 == 0 {
                None
            } else {
                Some(Condition::Exists("never-set".into()))
            };
            let put = TransactOp::Put {
                table: TableName::Views,
                key: Key::new("group", format!("item-{n:03}")),
                item: counter(f64::from(n)),
                condition,
            };
            let add = TransactOp::Update {
                table: TableName::Views,
                update: Update::new(counter_key).add("count", 1.0),
            };
            (n, tables.transact(vec![put, add]).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, outcome) = joined.expect("task");
        if n % 2 == 0 {
            outcome.expect("an unconditional transaction");
        } else {
            assert!(
                matches!(outcome, Err(Error::ConditionFailed)),
                "{n}: {outcome:?}"
            );
        }
    }
    drop(tables);
    let reopened = EmbeddedTables::open(&path).expect("reopen");
    assert_eq!(
        reopened
            .get(TableName::Views, &counter_key)
            .await
            .expect("get"),
        Some(counter(100.0)),
        "every accepted call added once, no refused one did"
    );
    let page = reopened
        .query(TableName::Views, &Query::partition("group").limit(1000))
        .await
        .expect("query");
    let items: Vec<&str> = page
        .items
        .iter()
        .map(|(key, _)| key.sk.as_str())
        .filter(|sk| sk.starts_with("item-"))
        .collect();
    assert_eq!(items.len(), 100);
    assert!(
        items
            .iter()
            .all(|sk| sk[5..].parse::<u32>().expect("n") % 2 == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn throughput() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let tables = EmbeddedTables::open(&dir.path().join("tables.redb")).expect("open");

    let updates = 500;
    let started = Instant::now();
    for index in 0..updates {
        let key = Key::new("tenant#entity", format!("counter-{}", index % 10));
        let update = Update::new(key).add("count", 1.0);
        tables
            .update(TableName::Views, update)
            .await
            .expect("update");
    }
    let elapsed = started.elapsed();
    println!(
        "sequential update ADD: {updates} in {elapsed:?} = {:.0}/s",
        f64::from(updates) / elapsed.as_secs_f64()
    );

    let concurrent = 8;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrent)
        .map(|task| {
            let tables = tables.clone();
            tokio::spawn(async move {
                for index in 0..updates / concurrent {
                    let key = Key::new(format!("tenant#{task}"), format!("counter-{}", index % 10));
                    let update = Update::new(key).add("count", 1.0);
                    tables
                        .update(TableName::Views, update)
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed();
    println!(
        "update ADD from {concurrent} tasks: {updates} in {elapsed:?} = {:.0}/s",
        f64::from(updates) / elapsed.as_secs_f64()
    );

    let batches = 20;
    let batch = 1000;
    let started = Instant::now();
    for round in 0..batches {
        let ops = (0..batch)
            .map(|index| WriteOp::Put {
                key: Key::new(
                    format!("tenant#entity-{}", index % 50),
                    format!("{round:04}#{index:06}"),
                ),
                item: [
                    ("name".to_owned(), Value::S("page_viewed".to_owned())),
                    ("value".to_owned(), Value::N(f64::from(index))),
                    ("path".to_owned(), Value::S(format!("/docs/{index}"))),
                ]
                .into(),
            })
            .collect();
        tables.write(TableName::Events, ops).await.expect("write");
    }
    let elapsed = started.elapsed();
    let items = f64::from(batches * batch);
    println!(
        "write of {batch}-item batches: {items} items in {elapsed:?} = {:.0} items/s, {:.1} ms a batch",
        items / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / f64::from(batches)
    );
}

/// A query reads its first rows on the calling task and the rest of a long page on the
/// blocking pool: pages across that seam (by rows and by bytes) are the memory double's pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_queries_page_as_the_memory_double_does() {
    let (embedded, _dir) = embedded();
    let memory: Arc<dyn Table> = Arc::new(MemoryTables::new());
    let pk = "tenant#long";
    // 300 items; every tenth one large, so the byte budget runs out before the row budget.
    let ops: Vec<WriteOp> = (0..300)
        .map(|index| {
            let size = if index % 10 == 0 { 40_000 } else { 10 };
            WriteOp::Put {
                key: Key::new(pk, format!("item#{index:04}")),
                item: [("data".to_owned(), Value::B(vec![index as u8; size]))].into(),
            }
        })
        .collect();
    for table in [&embedded, &memory] {
        table
            .write(TableName::Views, ops.clone())
            .await
            .expect("write");
    }
    for limit in [1, 3, 63, 64, 65, 200, 1000] {
        for reverse in [false, true] {
            let mut query = Query::partition(pk).limit(limit);
            if reverse {
                query = query.reverse();
            }
            let mut pages = 0;
            loop {
                let ours = embedded
                    .query(TableName::Views, &query)
                    .await
                    .expect("embedded query");
                let theirs = memory
                    .query(TableName::Views, &query)
                    .await
                    .expect("memory query");
                assert_eq!(ours, theirs, "limit {limit} reverse {reverse} page {pages}");
                pages += 1;
                match ours.next {
                    Some(next) => query = query.after(Some(next)),
                    None => break,
                }
            }
            assert_eq!(pages, 300usize.div_ceil(limit), "limit {limit}");
        }
    }
}

/// `query_many` reads on the calling task, yielding between slices, until its rows (over all
/// its queries) or bytes run out, then moves the scan it is in and the queries after it to the
/// blocking pool, in the same snapshot: every page, on either side of those seams, is the
/// memory double's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queries_page_as_the_memory_double_does() {
    let (embedded, _dir) = embedded();
    let memory: Arc<dyn Table> = Arc::new(MemoryTables::new());
    // 150 partitions of 30 items (4,500 rows in all, past the 4,096 read on the calling task);
    // in the last ten, every fifth item large (1.2 MB, past the 1 MiB).
    let ops: Vec<WriteOp> = (0..150)
        .flat_map(|partition| {
            (0..30).map(move |index| {
                let size = if partition >= 140 && index % 5 == 0 {
                    20_000
                } else {
                    10
                };
                WriteOp::Put {
                    key: Key::new(
                        format!("tenant#p{partition:03}"),
                        format!("item#{index:02}"),
                    ),
                    item: [("data".to_owned(), Value::B(vec![index as u8; size]))].into(),
                }
            })
        })
        .collect();
    for table in [&embedded, &memory] {
        for chunk in ops.chunks(500) {
            table
                .write(TableName::Views, chunk.to_vec())
                .await
                .expect("write");
        }
    }
    for (count, limit) in [
        (1, 100),
        (10, 100),
        (40, 7),
        (139, 100),
        (140, 30),
        (150, 100),
    ] {
        for reverse in [false, true] {
            let queries: Vec<Query> = (0..count)
                .map(|partition| {
                    let query = Query::partition(format!("tenant#p{partition:03}")).limit(limit);
                    if reverse { query.reverse() } else { query }
                })
                .collect();
            let ours = embedded
                .query_many(TableName::Views, &queries)
                .await
                .expect("embedded query_many");
            let theirs = memory
                .query_many(TableName::Views, &queries)
                .await
                .expect("memory query_many");
            assert_eq!(
                ours, theirs,
                "{count} queries, limit {limit}, reverse {reverse}"
            );
        }
    }
}
