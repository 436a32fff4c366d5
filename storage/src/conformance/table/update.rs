//! Updates (SET, ADD, REMOVE), their conditions, and the last-applied-position guard the
//! projector writes with.

use super::*;

/// An update of a missing item creates it and returns it.
pub async fn update_creates_a_missing_item(table: Arc<dyn Table>) {
    let key = Key::new(partition("create"), "item");
    let update = Update::new(key.clone())
        .set("name", s("first"))
        .add("count", 1.0);
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    let expected = item(&[("name", s("first")), ("count", n(1.0))]);
    assert_eq!(returned, expected);
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(expected));
}

/// SET overwrites or adds, ADD adds (absent counts as 0), REMOVE drops; the item after the
/// update is returned and stored.
pub async fn update_sets_adds_and_removes(table: Arc<dyn Table>) {
    let key = Key::new(partition("set-add-remove"), "item");
    let start = item(&[
        ("keep", s("k")),
        ("replace", n(1.0)),
        ("count", n(10.0)),
        ("drop", Value::Bool(true)),
    ]);
    put_one(&*table, TableName::Views, &key, start).await;
    let update = Update::new(key.clone())
        .set("replace", s("now a string"))
        .set("new", Value::L(vec![n(1.0)]))
        .add("count", -2.5)
        .add("fresh", 4.0)
        .remove("drop")
        .remove("never-there");
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    let expected = item(&[
        ("keep", s("k")),
        ("replace", s("now a string")),
        ("new", Value::L(vec![n(1.0)])),
        ("count", n(7.5)),
        ("fresh", n(4.0)),
    ]);
    assert_eq!(returned, expected);
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(expected));
    // Counters stay exact up to 2^53.
    let big = Update::new(key.clone()).add("big", 9_007_199_254_740_991.0);
    table.update(TableName::Views, big).await.expect("update");
    let returned = table
        .update(TableName::Views, Update::new(key).add("big", 1.0))
        .await
        .expect("update");
    assert_eq!(returned.get("big"), Some(&n(9_007_199_254_740_992.0)));
}

/// ADD to an attribute that is not a number is invalid and changes nothing.
pub async fn update_add_to_a_non_number_is_invalid(table: Arc<dyn Table>) {
    let key = Key::new(partition("add-non-number"), "item");
    let start = item(&[("text", s("x")), ("count", n(1.0))]);
    put_one(&*table, TableName::Views, &key, start.clone()).await;
    let update = Update::new(key.clone()).add("count", 1.0).add("text", 1.0);
    let answer = table.update(TableName::Views, update).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(start));
}

/// Every condition kind, true and false, against an existing and a missing item.
pub async fn update_conditions(table: Arc<dyn Table>) {
    let pk = partition("conditions");
    let stored = item(&[
        ("n", n(5.0)),
        ("s", s("m")),
        ("b", Value::B(vec![1, 2])),
        ("flag", Value::Bool(true)),
    ]);
    let absent = || Condition::Exists("absent".into());
    let cases: Vec<(Condition, bool)> = vec![
        (Condition::ItemExists, true),
        (Condition::ItemNotExists, false),
        (Condition::Exists("n".into()), true),
        (absent(), false),
        (Condition::NotExists("absent".into()), true),
        (Condition::NotExists("n".into()), false),
        (Condition::Eq("n".into(), n(5.0)), true),
        (Condition::Eq("n".into(), n(6.0)), false),
        (Condition::Eq("n".into(), s("5")), false),
        (Condition::Eq("flag".into(), Value::Bool(true)), true),
        (Condition::Eq("absent".into(), Value::Null), false),
        (Condition::Lt("n".into(), n(10.0)), true),
        (Condition::Lt("n".into(), n(5.0)), false),
        (Condition::Le("n".into(), n(5.0)), true),
        (Condition::Le("n".into(), n(4.0)), false),
        (Condition::Gt("n".into(), n(-1.0)), true),
        (Condition::Gt("n".into(), n(5.0)), false),
        (Condition::Ge("n".into(), n(5.0)), true),
        (Condition::Ge("n".into(), n(5.5)), false),
        // Numbers compare numerically, strings and binaries byte-wise.
        (Condition::Lt("n".into(), n(40.0)), true),
        (Condition::Gt("s".into(), s("B")), true),
        (Condition::Lt("s".into(), s("ma")), true),
        (Condition::Lt("s".into(), s("é")), true),
        (Condition::Gt("s".into(), s("m")), false),
        (Condition::Lt("b".into(), Value::B(vec![1, 3])), true),
        (Condition::Gt("b".into(), Value::B(vec![1, 2, 0])), false),
        // Different types and absent attributes never compare.
        (Condition::Lt("n".into(), s("9")), false),
        (Condition::Ge("s".into(), n(0.0)), false),
        (Condition::Lt("absent".into(), n(1.0)), false),
        (
            Condition::Not(Box::new(Condition::Lt("absent".into(), n(1.0)))),
            true,
        ),
        (Condition::Not(Box::new(Condition::ItemExists)), false),
        (
            Condition::And(vec![
                Condition::ItemExists,
                Condition::Eq("s".into(), s("m")),
            ]),
            true,
        ),
        (Condition::And(vec![Condition::ItemExists, absent()]), false),
        (
            Condition::Or(vec![absent(), Condition::Ge("n".into(), n(5.0))]),
            true,
        ),
        (
            Condition::Or(vec![absent(), Condition::Lt("n".into(), n(0.0))]),
            false,
        ),
    ];
    for (index, (condition, holds)) in cases.into_iter().enumerate() {
        let key = Key::new(pk.clone(), format!("case-{index:03}"));
        put_one(&*table, TableName::Views, &key, stored.clone()).await;
        let update = Update::new(key.clone())
            .set("touched", Value::Bool(true))
            .when(condition.clone());
        let answer = table.update(TableName::Views, update).await;
        let after = get(&*table, TableName::Views, &key).await;
        if holds {
            let mut expected = stored.clone();
            expected.insert("touched".into(), Value::Bool(true));
            assert_eq!(
                answer.ok().as_ref(),
                Some(&expected),
                "{condition:?} should hold"
            );
            assert_eq!(after, Some(expected));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{condition:?}: {answer:?}"
            );
            assert_eq!(
                after,
                Some(stored.clone()),
                "{condition:?} changed the item"
            );
        }
    }
    // Against a missing item.
    let missing_cases = [
        (Condition::ItemNotExists, true),
        (Condition::NotExists("n".into()), true),
        (Condition::ItemExists, false),
        (Condition::Exists("n".into()), false),
        (Condition::Eq("n".into(), n(5.0)), false),
        (
            Condition::Not(Box::new(Condition::Eq("n".into(), n(5.0)))),
            true,
        ),
    ];
    for (index, (condition, holds)) in missing_cases.into_iter().enumerate() {
        let key = Key::new(pk.clone(), format!("missing-{index:03}"));
        let update = Update::new(key.clone())
            .add("count", 1.0)
            .when(condition.clone());
        let answer = table.update(TableName::Views, update).await;
        let after = get(&*table, TableName::Views, &key).await;
        if holds {
            assert!(answer.is_ok(), "{condition:?}: {answer:?}");
            assert_eq!(after, Some(item(&[("count", n(1.0))])));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{condition:?}: {answer:?}"
            );
            assert_eq!(after, None, "{condition:?} created the item");
        }
    }
}

/// A failed condition leaves the item exactly as it was, SET, ADD and REMOVE alike.
pub async fn failed_condition_changes_nothing(table: Arc<dyn Table>) {
    let key = Key::new(partition("unchanged"), "item");
    let start = item(&[("version", n(3.0)), ("name", s("x")), ("count", n(1.0))]);
    put_one(&*table, TableName::Control, &key, start.clone()).await;
    let update = Update::new(key.clone())
        .set("name", s("y"))
        .add("count", 1.0)
        .remove("version")
        .when(Condition::Eq("version".into(), n(2.0)));
    let answer = table.update(TableName::Control, update).await;
    assert!(matches!(answer, Err(Error::ConditionFailed)), "{answer:?}");
    assert_eq!(get(&*table, TableName::Control, &key).await, Some(start));
}

/// The projector's idiom on DynamoDB: apply only when the item's last applied position is older,
/// comparing `Position::sortable()` strings (positions of different digit counts included).
pub async fn last_applied_position(table: Arc<dyn Table>) {
    let key = Key::new(partition("positions"), "aggregate");
    let position =
        |sequence: u64, index: u32| Position::new(Sequence::from_u64(sequence), index).sortable();
    let apply = |at: String| {
        Update::new(key.clone())
            .add("count", 1.0)
            .set("pos", Value::S(at.clone()))
            .when(Condition::Or(vec![
                Condition::NotExists("pos".into()),
                Condition::Lt("pos".into(), Value::S(at)),
            ]))
    };
    // 99:7 < 100:0 < 100:2 < 1000:0, although "99" > "100" as plain text.
    let steps = [
        (position(99, 7), true),
        (position(99, 7), false),
        (position(99, 6), false),
        (position(100, 0), true),
        (position(100, 2), true),
        (position(100, 1), false),
        (position(99, 9), false),
        (position(1000, 0), true),
        (position(100, 3), false),
    ];
    let mut applied = 0.0;
    for (at, newer) in steps {
        let answer = table.update(TableName::Views, apply(at.clone())).await;
        if newer {
            applied += 1.0;
            let returned = answer.expect("a newer position applies");
            assert_eq!(returned.get("pos"), Some(&Value::S(at)));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{at}: {answer:?}"
            );
        }
        let current = get(&*table, TableName::Views, &key).await.expect("item");
        assert_eq!(current.get("count"), Some(&n(applied)));
    }
    let last = get(&*table, TableName::Views, &key).await.expect("item");
    assert_eq!(last.get("pos"), Some(&Value::S(position(1000, 0))));
}
