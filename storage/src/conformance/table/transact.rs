//! Transactions across tables: all or nothing, durable or relaxed, and refused when empty
//! or naming a key twice.

use super::*;

/// A transaction across two tables applies nothing when one condition fails, everything when
/// all hold.
pub async fn transact_is_all_or_nothing(table: Arc<dyn Table>) {
    all_or_nothing(table, false).await;
}

/// `transact_relaxed` keeps every promise of `transact` a running process can see: all or
/// nothing, conditions checked, visible to the next read.
pub async fn transact_relaxed_is_all_or_nothing(table: Arc<dyn Table>) {
    all_or_nothing(table, true).await;
}

async fn all_or_nothing(table: Arc<dyn Table>, relaxed: bool) {
    let transact = |ops: Vec<TransactOp>| {
        let table = Arc::clone(&table);
        async move {
            if relaxed {
                table.transact_relaxed(ops).await
            } else {
                table.transact(ops).await
            }
        }
    };
    let pk = partition("transact");
    let view = Key::new(pk.clone(), "view");
    let checkpoint = Key::new(pk.clone(), "checkpoint");
    let doomed = Key::new(pk.clone(), "doomed");
    let guard = Key::new(pk.clone(), "guard");
    put_one(
        &*table,
        TableName::Views,
        &doomed,
        item(&[("alive", Value::Bool(true))]),
    )
    .await;
    put_one(
        &*table,
        TableName::Control,
        &guard,
        item(&[("epoch", n(1.0))]),
    )
    .await;
    put_one(
        &*table,
        TableName::Control,
        &checkpoint,
        item(&[("pos", s("001")), ("n", n(1.0))]),
    )
    .await;
    let ops = |epoch: f64| {
        vec![
            TransactOp::Put {
                table: TableName::Views,
                key: view.clone(),
                item: item(&[("total", n(10.0))]),
                condition: Some(Condition::ItemNotExists),
            },
            TransactOp::Update {
                table: TableName::Control,
                update: Update::new(checkpoint.clone())
                    .set("pos", s("002"))
                    .add("n", 1.0)
                    .when(Condition::Lt("pos".into(), s("002"))),
            },
            TransactOp::Delete {
                table: TableName::Views,
                key: doomed.clone(),
                condition: Some(Condition::Exists("alive".into())),
            },
            TransactOp::Check {
                table: TableName::Control,
                key: guard.clone(),
                condition: Condition::Eq("epoch".into(), n(epoch)),
            },
        ]
    };
    let failed = transact(ops(2.0)).await;
    assert!(matches!(failed, Err(Error::ConditionFailed)), "{failed:?}");
    assert_eq!(get(&*table, TableName::Views, &view).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("001")), ("n", n(1.0))]))
    );
    assert!(get(&*table, TableName::Views, &doomed).await.is_some());

    transact(ops(1.0)).await.expect("every condition holds");
    assert_eq!(
        get(&*table, TableName::Views, &view).await,
        Some(item(&[("total", n(10.0))]))
    );
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("002")), ("n", n(2.0))]))
    );
    assert_eq!(get(&*table, TableName::Views, &doomed).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &guard).await,
        Some(item(&[("epoch", n(1.0))]))
    );

    // Replaying the same transaction fails on its first condition and changes nothing.
    let replay = transact(ops(1.0)).await;
    assert!(matches!(replay, Err(Error::ConditionFailed)), "{replay:?}");
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("002")), ("n", n(2.0))]))
    );
    assert!(table.max_transact_ops() >= 100);
}

/// An empty transaction, and one naming the same key of the same table twice, are invalid; the
/// same key in two tables is fine.
pub async fn transact_rejects_empty_and_duplicates(table: Arc<dyn Table>) {
    let key = Key::new(partition("transact-invalid"), "item");
    let answer = table.transact(Vec::new()).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    let write = |name| TransactOp::Put {
        table: name,
        key: key.clone(),
        item: item(&[("table", s(TableName::as_str(name)))]),
        condition: None,
    };
    let answer = table
        .transact(vec![write(TableName::Views), write(TableName::Views)])
        .await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
    table
        .transact(vec![write(TableName::Views), write(TableName::Control)])
        .await
        .expect("one key in two tables");
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(item(&[("table", s("views"))]))
    );
    assert_eq!(
        get(&*table, TableName::Control, &key).await,
        Some(item(&[("table", s("control"))]))
    );
}
