//! Items one at a time and in batches: every value type, keys, get, put, batch get, batch
//! write; the three tables kept apart, and input outside the limits refused.

use super::*;

fn every_value_type() -> Item {
    let nested = item(&[
        (
            "list",
            Value::L(vec![n(1.0), s("two"), Value::Null, Value::Bool(false)]),
        ),
        (
            "map",
            Value::M(item(&[("deep", Value::B(vec![0, 1, 254, 255]))])),
        ),
    ]);
    item(&[
        ("string", s("plain")),
        ("empty_string", s("")),
        ("unicode", s("ünïcödé 日本語 🐟")),
        ("integer", n(42.0)),
        ("negative", n(-7.25)),
        ("fraction", n(0.1)),
        ("zero", n(0.0)),
        ("max_exact", n(9_007_199_254_740_992.0)),
        ("min_exact", n(-9_007_199_254_740_992.0)),
        ("tiny", n(1.5e-100)),
        ("huge", n(1.25e120)),
        ("binary", Value::B((0..=255).collect())),
        ("empty_binary", Value::B(Vec::new())),
        ("yes", Value::Bool(true)),
        ("no", Value::Bool(false)),
        ("null", Value::Null),
        (
            "list",
            Value::L(vec![
                n(1.0),
                Value::L(vec![s("inner")]),
                Value::M(nested.clone()),
            ]),
        ),
        ("empty_list", Value::L(Vec::new())),
        ("map", Value::M(nested)),
        ("empty_map", Value::M(BTreeMap::new())),
    ])
}

/// Put, get, delete of an item holding every value type, nested lists and maps included.
pub async fn round_trips_every_value_type(table: Arc<dyn Table>) {
    let key = Key::new(partition("values"), "item");
    let stored = every_value_type();
    put_one(&*table, TableName::Views, &key, stored.clone()).await;
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(stored.clone())
    );
    // The same values through an update's SET.
    let updated_key = Key::new(key.pk.clone(), "updated");
    let update = stored
        .iter()
        .fold(Update::new(updated_key.clone()), |update, (name, value)| {
            update.set(name.clone(), value.clone())
        });
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    assert_eq!(returned, stored);
    assert_eq!(
        get(&*table, TableName::Views, &updated_key).await,
        Some(stored)
    );
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table.write(TableName::Views, delete).await.expect("delete");
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
}

/// Keys with `#`, unicode and other separators come back exactly, from get and query alike.
pub async fn keys_keep_unicode_and_separators(table: Arc<dyn Table>) {
    let pk = format!("{}#ünï#日本", partition("keys"));
    let sort_keys_in = [
        "2024-01-01T00:00:00Z#id",
        "a#b#c",
        "é",
        "🐟",
        "with space",
        "dot.ted",
    ];
    for (index, sk) in sort_keys_in.iter().enumerate() {
        let key = Key::new(pk.clone(), *sk);
        put_one(
            &*table,
            TableName::Events,
            &key,
            item(&[("i", n(index as f64))]),
        )
        .await;
        assert_eq!(
            get(&*table, TableName::Events, &key).await,
            Some(item(&[("i", n(index as f64))]))
        );
    }
    let page = table
        .query(TableName::Events, &Query::partition(pk.clone()))
        .await
        .expect("query");
    let mut expected: Vec<&str> = sort_keys_in.to_vec();
    expected.sort_unstable();
    assert_eq!(sort_keys(&page), expected);
    assert!(page.items.iter().all(|(key, _)| key.pk == pk));
}

/// A key never written reads as `None`, and deleting it is not an error.
pub async fn missing_items_are_none(table: Arc<dyn Table>) {
    let key = Key::new(partition("missing"), "nothing");
    for name in TableName::ALL {
        assert_eq!(get(&*table, name, &key).await, None);
    }
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table
        .write(TableName::Views, delete)
        .await
        .expect("delete of a missing item");
    let empty = table
        .query(TableName::Views, &Query::partition(key.pk.clone()))
        .await
        .expect("query");
    assert_eq!(empty, Page::default());
}

/// A put replaces the whole item; it does not merge attributes.
pub async fn put_replaces_the_whole_item(table: Arc<dyn Table>) {
    let key = Key::new(partition("replace"), "item");
    put_one(
        &*table,
        TableName::Views,
        &key,
        item(&[("a", n(1.0)), ("b", n(2.0))]),
    )
    .await;
    put_one(&*table, TableName::Views, &key, item(&[("c", n(3.0))])).await;
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(item(&[("c", n(3.0))]))
    );
}

/// One answer per key, in the order asked, `None` for missing keys; more keys than one DynamoDB
/// `BatchGetItem` takes (100).
pub async fn batch_get_answers_in_the_order_asked(table: Arc<dyn Table>) {
    let pk = partition("batch");
    let ops = (0..120u8)
        .map(|index| {
            put(
                &Key::new(pk.clone(), format!("{index:03}")),
                item(&[("i", n(index.into()))]),
            )
        })
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    // Descending, with missing keys among them and one from another partition at the end.
    let mut keys: Vec<Key> = (0..120u8)
        .rev()
        .map(|index| Key::new(pk.clone(), format!("{index:03}")))
        .collect();
    keys.insert(3, Key::new(pk.clone(), "missing-1"));
    keys.insert(101, Key::new(pk.clone(), "missing-2"));
    keys.push(Key::new(partition("other"), "000"));
    let answers = table
        .batch_get(TableName::Views, &keys)
        .await
        .expect("batch get");
    assert_eq!(answers.len(), keys.len());
    for (key, answer) in keys.iter().zip(&answers) {
        let expected = key
            .sk
            .parse::<u8>()
            .ok()
            .filter(|_| key.pk == pk)
            .map(|index| item(&[("i", n(index.into()))]));
        assert_eq!(answer, &expected, "{key:?}");
    }
    let none = table
        .batch_get(TableName::Views, &[])
        .await
        .expect("empty batch get");
    assert!(none.is_empty());
}

/// A batch of puts and deletes, larger than DynamoDB's 25 per request, all applied.
pub async fn write_applies_puts_and_deletes(table: Arc<dyn Table>) {
    let pk = partition("write");
    let key = |index: usize| Key::new(pk.clone(), format!("{index:03}"));
    let ops = (0..60)
        .map(|index| put(&key(index), item(&[("i", n(index as f64))])))
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    // Delete the even ones, overwrite the odd ones below 20, in one batch.
    let ops = (0..60)
        .filter_map(|index| match index {
            _ if index % 2 == 0 => Some(WriteOp::Delete { key: key(index) }),
            _ if index < 20 => Some(put(&key(index), item(&[("odd", Value::Bool(true))]))),
            _ => None,
        })
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    let pages = all_pages(&*table, TableName::Views, Query::partition(pk.clone())).await;
    let found: Vec<(Key, Item)> = pages.into_iter().flat_map(|page| page.items).collect();
    let expected: Vec<(Key, Item)> = (1..60)
        .step_by(2)
        .map(|index| {
            let attributes = if index < 20 {
                item(&[("odd", Value::Bool(true))])
            } else {
                item(&[("i", n(index as f64))])
            };
            (key(index), attributes)
        })
        .collect();
    assert_eq!(found, expected);
    table
        .write(TableName::Views, Vec::new())
        .await
        .expect("an empty batch is a no-op");
}

/// The same key in each table is a different item.
pub async fn tables_are_independent(table: Arc<dyn Table>) {
    let key = Key::new(partition("independent"), "item");
    for name in TableName::ALL {
        put_one(&*table, name, &key, item(&[("table", s(name.as_str()))])).await;
    }
    for name in TableName::ALL {
        assert_eq!(
            get(&*table, name, &key).await,
            Some(item(&[("table", s(name.as_str()))]))
        );
    }
    let update = Update::new(key.clone()).add("count", 1.0);
    table
        .update(TableName::Control, update)
        .await
        .expect("update");
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table.write(TableName::Views, delete).await.expect("delete");
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &key).await,
        Some(item(&[("table", s("control")), ("count", n(1.0))]))
    );
    assert_eq!(
        get(&*table, TableName::Events, &key).await,
        Some(item(&[("table", s("events"))]))
    );
    let events = table
        .query(TableName::Events, &Query::partition(key.pk.clone()))
        .await
        .expect("query");
    assert_eq!(events.items.len(), 1);
}

/// What DynamoDB refuses is refused everywhere, as `InvalidArgument`: empty key parts, numbers
/// it cannot store, one attribute twice in an update, one key twice in a batch write.
pub async fn invalid_input_is_rejected(table: Arc<dyn Table>) {
    let pk = partition("invalid");
    let invalid = |answer: crate::Result<()>, what: &str| {
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "{what}: {answer:?}"
        );
    };
    let empty_sk = Key::new(pk.clone(), "");
    let empty_pk = Key::new("", "item");
    for key in [&empty_sk, &empty_pk] {
        invalid(
            table.get(TableName::Views, key).await.map(drop),
            "get of an empty key part",
        );
        let ops = vec![put(key, Item::new())];
        invalid(
            table.write(TableName::Views, ops).await,
            "put of an empty key part",
        );
        let update = Update::new(key.clone()).add("n", 1.0);
        invalid(
            table.update(TableName::Views, update).await.map(drop),
            "update of an empty key part",
        );
    }
    let key = Key::new(pk.clone(), "item");
    for number in [f64::NAN, f64::INFINITY] {
        let ops = vec![put(&key, item(&[("n", n(number))]))];
        invalid(
            table.write(TableName::Views, ops).await,
            "a non-finite number",
        );
        let update = Update::new(key.clone()).add("n", number);
        invalid(
            table.update(TableName::Views, update).await.map(drop),
            "adding a non-finite number",
        );
    }
    let twice = Update::new(key.clone()).set("a", n(1.0)).remove("a");
    invalid(
        table.update(TableName::Views, twice).await.map(drop),
        "one attribute twice",
    );
    let ops = vec![put(&key, Item::new()), WriteOp::Delete { key: key.clone() }];
    invalid(
        table.write(TableName::Views, ops).await,
        "one key twice in a batch",
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
}
