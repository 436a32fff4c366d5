//! The one pass must answer exactly as split-then-parse does; these tests compare the two on a
//! table of bodies and on generated ones.

use super::*;
use proptest::prelude::*;
use shoal_storage::IdOrigin;
use uuid::Uuid;

const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn context(max_event_bytes: usize) -> Context<'static> {
    Context {
        tenant: "acme",
        received_at: NOW,
        max_event_bytes,
    }
}

/// A result with minted ids blanked (they are random), and errors by their debug text.
fn comparable(result: Result<Vec<Item>>) -> std::result::Result<Vec<Item>, String> {
    result
        .map(|items| {
            items
                .into_iter()
                .map(|item| {
                    item.map(|mut new| {
                        if new.id_origin == IdOrigin::Server {
                            assert_eq!(new.event.id.get_version_num(), 7);
                            new.event.id = Uuid::nil();
                        }
                        new
                    })
                })
                .collect()
        })
        .map_err(|error| format!("{error:?}"))
}

fn assert_same(body: &[u8], layout: Layout, max_items: usize, max_event_bytes: usize) {
    let context = context(max_event_bytes);
    let fast = comparable(parse_events(body, layout, max_items, &context));
    let general = comparable(per_item(body, layout, max_items, &context));
    assert_eq!(
        fast,
        general,
        "{layout:?} max_items {max_items} max_event_bytes {max_event_bytes}: {}",
        String::from_utf8_lossy(body)
    );
}

/// Items of every kind: valid, with bad values, with bad shapes, and not JSON at all.
const ITEMS: &[&str] = &[
    r#"{"name":"page_viewed","entity":"cust-1"}"#,
    r#"{"kind":"identify","entity":"c","traits":{"plan":"pro"}}"#,
    r#"{"id":"msg-1","name":"a","entity":"c","timestamp":"2026-01-01T00:00:00Z","properties":{"a":[1,2,{"b":null}]}}"#,
    r#"{"id":"0190b2a8-0000-7000-8000-000000000001","name":"a","entity":"c"}"#,
    r#"{"name":"a","entity":"c","id":null,"value":null}"#,
    r#"{"name":"a\"b","entity":"c\u00e9","kind":"tr\u0061ck"}"#,
    r#"{"kind":"metric","name":"m","entity":"c","value":1.5}"#,
    "{ \"name\" :\t\"a\" ,\r\n \"entity\" : \"c\" \n}",
    r#"{"name":"a","entity":"c","timestamp":1767225600000,"sent_at":1767225660000}"#,
    r#"{"name":"a","entity":"c","properties":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
    r#"{"name":5,"entity":"c"}"#,
    r#"{"name":"a"}"#,
    r#"{"name":"","entity":"c"}"#,
    r#"{"name":"a","entity":"c","timestamp":"soon"}"#,
    r#"{"name":"a","entity":"c","properties":{},"traits":{}}"#,
    r#"{"name":"a","entity":"c","value":"x"}"#,
    r#"{"name":"a","entity":"c","kind":"metric"}"#,
    r#"{"name":"a","entity":"c","colour":"red"}"#,
    r#"{"name":"a","name":"b","entity":"c"}"#,
    r#"{"name":null,"name":"b","entity":"c"}"#,
    r#"{"n\u0061me":"a","entity":"c"}"#,
    r#"{"entity":"c","na\"me":"a"}"#,
    "{}",
    "{ }",
    "[1,2]",
    "[1,2,3,4,5,6,7,8,9]",
    "1",
    "null",
    r#""x""#,
    r#"{"name":"#,
    r#"{"name":"a",}"#,
    "nul",
];

/// What may surround an item: JSON whitespace, nothing, and form feed (not JSON whitespace).
const GAPS: &[&str] = &["", " ", "\n", "\t", "\r\n", "  \n  ", "\x0c"];

#[test]
fn table_of_bodies() {
    let mut bodies: Vec<(String, Layout)> = Vec::new();
    for item in ITEMS {
        bodies.push((format!("[{item}]"), Layout::Json));
        bodies.push((format!(" {item} "), Layout::Json));
        bodies.push((format!("[{},{item},{}]", ITEMS[0], ITEMS[1]), Layout::Json));
        bodies.push((
            format!("{}\n{item}\n\n{}\n", ITEMS[0], ITEMS[1]),
            Layout::Ndjson,
        ));
    }
    for body in [
        "",
        "  ",
        "[]",
        "[ ]",
        "42",
        "[{\"name\":\"a\",\"entity\":\"c\"}] x",
        "[{\"name\":\"a\",\"entity\":\"c\"}],",
        "[{\"name\":\"a\",\"entity\":\"c\"},]",
        "\x0c[{\"name\":\"a\",\"entity\":\"c\"}]",
        "{\"name\":\"a\",\"entity\":\"c\"}{\"name\":\"a\",\"entity\":\"c\"}",
    ] {
        bodies.push((body.to_owned(), Layout::Json));
        bodies.push((body.to_owned(), Layout::Ndjson));
    }
    for (body, layout) in &bodies {
        for max_items in [0, 1, 2, 3, 10] {
            for max_event_bytes in [10, 40, 41, 42, 60, 1024] {
                assert_same(body.as_bytes(), *layout, max_items, max_event_bytes);
            }
        }
    }
}

#[test]
fn valid_bodies_take_the_one_pass() {
    let context = context(1024);
    let body = format!("[{}, {},\n{}]", ITEMS[0], ITEMS[2], ITEMS[10]);
    let items = one_pass_json(body.as_bytes(), 10, &context).expect("one pass");
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    // A bad value is answered in the one pass too.
    assert_eq!(items[2].as_ref().unwrap_err().field, "name");
    assert!(one_pass_json(ITEMS[7].as_bytes(), 1, &context).is_some());
    assert!(one_pass_line(ITEMS[5].as_bytes()).is_some());
}

#[test]
fn shape_problems_leave_the_one_pass() {
    let context = context(1024);
    for item in [
        ITEMS[17], ITEMS[18], ITEMS[19], ITEMS[20], "{}", "[1,2]", "1",
    ] {
        let body = format!("[{},{item}]", ITEMS[0]);
        assert!(
            one_pass_json(body.as_bytes(), 10, &context).is_none(),
            "{item}"
        );
        assert!(one_pass_line(item.as_bytes()).is_none(), "{item}");
    }
    let three = format!("[{0},{0},{0}]", ITEMS[0]);
    assert!(one_pass_json(three.as_bytes(), 2, &context).is_none());
}

#[test]
fn measured_length_is_the_items_text() {
    for item in [ITEMS[0], ITEMS[2], ITEMS[4], ITEMS[7]] {
        for gap in ["", " ", "\r\n\t "] {
            let line = format!("{gap}{item}{gap}");
            assert_eq!(one_pass_line(line.as_bytes()).unwrap().bytes, item.len());
            // In an array, the limit falls exactly at the item's length.
            let body = format!("[{gap}{},{gap}{item}{gap}]", ITEMS[1]);
            let at_limit = one_pass_json(body.as_bytes(), 10, &context(item.len())).unwrap();
            assert!(at_limit[1].is_ok(), "{item}");
            let over = one_pass_json(body.as_bytes(), 10, &context(item.len() - 1)).unwrap();
            assert_eq!(over[1].as_ref().unwrap_err().code, "event_too_large");
        }
    }
}

fn body_strategy() -> impl Strategy<Value = (String, Layout)> {
    let item = prop::sample::select(ITEMS);
    let gap = prop::sample::select(GAPS);
    let entry = (gap.clone(), item, gap.clone());
    (
        prop::collection::vec(entry, 0..6),
        prop::sample::select(&["[", "", " [", "\n"][..]),
        prop::sample::select(&["]", "", "] ", "],", "]x"][..]),
        any::<bool>(),
    )
        .prop_map(|(entries, open, close, ndjson)| {
            let texts: Vec<String> = entries
                .into_iter()
                .map(|(before, item, after)| format!("{before}{item}{after}"))
                .collect();
            if ndjson {
                (texts.join("\n"), Layout::Ndjson)
            } else {
                (format!("{open}{}{close}", texts.join(",")), Layout::Json)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn one_pass_equals_split_then_parse(
        (body, layout) in body_strategy(),
        max_items in 0usize..7,
        max_event_bytes in prop::sample::select(&[30usize, 45, 60, 90, 1024][..]),
    ) {
        assert_same(body.as_bytes(), layout, max_items, max_event_bytes);
    }
}
