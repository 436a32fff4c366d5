//! The DynamoDB [`Table`] backend against DynamoDB Local (`scripts/emulators.sh start`): the
//! shared conformance suite, `init` run twice, and retries exercised by client-side fault
//! injection (DynamoDB Local never throttles nor leaves items unprocessed).

mod aws_common;

use shoal_storage::aws::{self, Fault, Operation};
use shoal_storage::{
    Condition, Error, Item, Key, Query, Table, TableName, TransactOp, Update, Value, WriteOp,
};

mod conformance {
    shoal_storage::table_conformance!(super::aws_common::tables().await);
}

fn put(key: &Key, index: usize) -> WriteOp {
    WriteOp::Put {
        key: key.clone(),
        item: Item::from([("i".to_owned(), Value::N(index as f64))]),
    }
}

fn unique_pk(name: &str) -> String {
    format!("t-{}#{name}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn init_is_safe_to_run_twice() {
    let (_tables, clients, resources) = aws_common::tables_with_clients().await;
    aws::init_tables(&clients, resources.config())
        .await
        .expect("second init");
    aws::init_tables(&clients, resources.config())
        .await
        .expect("third init");
}

#[tokio::test]
async fn unprocessed_items_are_retried_until_written() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    let pk = unique_pk("unprocessed");
    let keys: Vec<Key> = (0..60)
        .map(|index| Key::new(pk.clone(), format!("{index:03}")))
        .collect();
    // Three batches in a row come back with some items unprocessed.
    clients.faults().inject(
        Operation::BatchWriteItem,
        Fault::WithholdEntries(vec![0, 3, 24]),
        3,
    );
    let ops = keys
        .iter()
        .enumerate()
        .map(|(index, key)| put(key, index))
        .collect();
    tables.write(TableName::Views, ops).await.expect("write");
    assert_eq!(clients.faults().pending(Operation::BatchWriteItem), 0);
    // 3 chunks of ≤25, plus one re-send per withheld batch.
    assert!(clients.faults().calls(Operation::BatchWriteItem) >= 6);
    // Every item, once, through a batch get that also meets unprocessed keys.
    clients.faults().inject(
        Operation::BatchGetItem,
        Fault::WithholdEntries(vec![1, 2, 50]),
        2,
    );
    let found = tables
        .batch_get(TableName::Views, &keys)
        .await
        .expect("batch get");
    for (index, item) in found.iter().enumerate() {
        assert_eq!(
            item.as_ref().and_then(|item| item.get("i")),
            Some(&Value::N(index as f64)),
            "item {index}"
        );
    }
}

#[tokio::test]
async fn items_left_unprocessed_for_good_are_throttled() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    let key = Key::new(unique_pk("stuck"), "item");
    clients.faults().inject(
        Operation::BatchWriteItem,
        Fault::WithholdEntries(vec![0]),
        100,
    );
    let answer = tables.write(TableName::Views, vec![put(&key, 1)]).await;
    assert!(matches!(answer, Err(Error::Throttled(_))), "{answer:?}");
    clients.faults().clear();
    assert_eq!(tables.get(TableName::Views, &key).await.expect("get"), None);
}

#[tokio::test]
async fn throttled_and_unavailable_calls_are_retried() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    let key = Key::new(unique_pk("throttled"), "counter");
    clients
        .faults()
        .inject(Operation::UpdateItem, Fault::Throttle, 2);
    clients
        .faults()
        .inject(Operation::UpdateItem, Fault::Unavailable, 1);
    let item = tables
        .update(TableName::Views, Update::new(key.clone()).add("count", 1.0))
        .await
        .expect("update after retries");
    assert_eq!(item.get("count"), Some(&Value::N(1.0)));
    assert_eq!(clients.faults().calls(Operation::UpdateItem), 4);
    clients
        .faults()
        .inject(Operation::GetItem, Fault::Throttle, 3);
    let got = tables
        .get(TableName::Views, &key)
        .await
        .expect("get after retries");
    assert_eq!(got, Some(item));
}

#[tokio::test]
async fn a_transaction_retried_after_a_transient_failure_applies_once() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    let key = Key::new(unique_pk("transact"), "counter");
    clients
        .faults()
        .inject(Operation::TransactWriteItems, Fault::Unavailable, 2);
    let ops = vec![TransactOp::Update {
        table: TableName::Control,
        update: Update::new(key.clone()).add("count", 1.0),
    }];
    tables.transact(ops).await.expect("transact after retries");
    let item = tables.get(TableName::Control, &key).await.expect("get");
    assert_eq!(
        item.and_then(|item| item.get("count").cloned()),
        Some(Value::N(1.0))
    );
}

#[tokio::test]
async fn throttling_that_never_ends_surfaces_as_throttled() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    clients
        .faults()
        .inject(Operation::Query, Fault::Throttle, 100);
    let answer = tables
        .query(TableName::Views, &Query::partition(unique_pk("query")))
        .await;
    assert!(matches!(answer, Err(Error::Throttled(_))), "{answer:?}");
    let policy = shoal_storage::aws::RetryPolicy::fast();
    assert_eq!(
        clients.faults().calls(Operation::Query),
        u64::from(policy.max_attempts)
    );
}

#[tokio::test]
async fn a_non_retryable_error_surfaces_at_once() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    clients
        .faults()
        .inject(Operation::UpdateItem, Fault::Reject, 1);
    let key = Key::new(unique_pk("reject"), "item");
    let answer = tables
        .update(
            TableName::Views,
            Update::new(key).set("a", Value::Bool(true)),
        )
        .await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(
        clients.faults().calls(Operation::UpdateItem),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn oversize_items_are_refused_before_sending() {
    let (tables, clients, _resources) = aws_common::tables_with_clients().await;
    let key = Key::new(unique_pk("large"), "item");
    let item = Item::from([("blob".to_owned(), Value::B(vec![7; 410 * 1024]))]);
    let answer = tables
        .write(
            TableName::Views,
            vec![WriteOp::Put {
                key: key.clone(),
                item: item.clone(),
            }],
        )
        .await;
    assert!(
        matches!(answer, Err(Error::TooLarge { what: "item", .. })),
        "{answer:?}"
    );
    assert_eq!(clients.faults().calls(Operation::BatchWriteItem), 0);
    // Grown past the limit by an update: DynamoDB finds it, and it is TooLarge all the same.
    let half = Item::from([("a".to_owned(), Value::B(vec![1; 250 * 1024]))]);
    tables
        .write(
            TableName::Views,
            vec![WriteOp::Put {
                key: key.clone(),
                item: half,
            }],
        )
        .await
        .expect("put half");
    let grow = Update::new(key.clone()).set("b", Value::B(vec![2; 250 * 1024]));
    let answer = tables.update(TableName::Views, grow).await;
    assert!(
        matches!(answer, Err(Error::TooLarge { what: "item", .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn conditions_on_reserved_words_and_odd_names_are_literal() {
    let (tables, _clients, _resources) = aws_common::tables_with_clients().await;
    let key = Key::new(unique_pk("names"), "item");
    let update = Update::new(key.clone())
        .set("ttl", Value::N(5.0))
        .set("count", Value::N(1.0))
        .set("a.b", Value::S("dotted".into()))
        .set("with space", Value::Bool(true))
        .when(Condition::And(vec![
            Condition::NotExists("ttl".into()),
            Condition::NotExists("a.b".into()),
        ]));
    let item = tables
        .update(TableName::Control, update)
        .await
        .expect("update");
    assert_eq!(item.get("a.b"), Some(&Value::S("dotted".into())));
    let again = Update::new(key)
        .add("count", 1.0)
        .when(Condition::Lt("ttl".into(), Value::N(6.0)));
    let item = tables
        .update(TableName::Control, again)
        .await
        .expect("update");
    assert_eq!(item.get("count"), Some(&Value::N(2.0)));
}
