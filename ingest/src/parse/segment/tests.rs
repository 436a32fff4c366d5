//! The Segment parser's tests: every kind of call, batches, limits and bad messages.

use super::*;
use crate::Error;

const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn context() -> Context<'static> {
    Context {
        tenant: "acme",
        received_at: NOW,
        max_event_bytes: 32 * 1024,
    }
}

fn parse_batch(body: &str) -> Vec<std::result::Result<Vec<Event>, Rejection>> {
    let batch = split_batch(body.as_bytes(), 100).unwrap();
    batch
        .messages
        .iter()
        .map(|message| parse_message(message, None, &batch.shared, &context()))
        .collect()
}

fn parse_one(kind: EventKind, body: &str) -> std::result::Result<Vec<Event>, Rejection> {
    let batch = split_single(body.as_bytes()).unwrap();
    parse_message(batch.messages[0], Some(kind), &batch.shared, &context())
}

fn props(event: &Event) -> Value {
    serde_json::from_str(&event.properties).unwrap()
}

#[test]
fn batch_merges_context_and_corrects_skew() {
    // The client clock is 1 hour fast: sentAt 01:00, event at 00:59 → 23:59 server time.
    let results = parse_batch(
        r#"{"batch":[
            {"type":"track","userId":"u1","event":"Signed Up","properties":{"plan":"pro"},
             "context":{"ip":"10.0.0.1"},"timestamp":"2026-01-01T00:59:00Z","messageId":"m-1",
             "_metadata":{"x":1},"integrations":{"All":true}}
        ],"context":{"library":{"name":"py"},"ip":"0.0.0.0"},
          "sentAt":"2026-01-01T01:00:00.000+00:00","writeKey":"wk"}"#,
    );
    let events = results[0].as_ref().unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, EventKind::Track);
    assert_eq!(event.name, "Signed Up");
    assert_eq!(event.entity, "u1");
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.timestamp, NOW - 60_000);
    assert_eq!(event.id, event_id("m-1"));
    assert_eq!(
        props(event),
        serde_json::json!({"plan":"pro","$context":{"library":{"name":"py"},"ip":"10.0.0.1"}})
    );
}

#[test]
fn write_key_from_body() {
    let batch = split_batch(br#"{"batch":[{}],"writeKey":"wk_1"}"#, 10).unwrap();
    assert_eq!(batch.write_key.as_deref(), Some("wk_1"));
    let single = split_single(br#"{"userId":"u","event":"e","writeKey":"wk_2"}"#).unwrap();
    assert_eq!(single.write_key.as_deref(), Some("wk_2"));
    let none = split_single(br#"{"userId":"u","event":"e"}"#).unwrap();
    assert_eq!(none.write_key, None);
}

#[test]
fn identify_keeps_traits_clean() {
    let events = parse_one(
        EventKind::Identify,
        r#"{"userId":42,"anonymousId":"a-1","traits":{"email":"a@b.c","seats":3},"context":{"ip":"1.2.3.4"}}"#,
    )
    .unwrap();
    assert_eq!(events[0].entity, "42");
    assert_eq!(events[0].name, "identify");
    assert_eq!(
        props(&events[0]),
        serde_json::json!({"email":"a@b.c","seats":3})
    );
    assert_eq!(events[0].id.get_version_num(), 7);
}

#[test]
fn identify_traits_from_context_too() {
    let events = parse_one(
        EventKind::Identify,
        r#"{"userId":"u","traits":{"plan":"pro"},"context":{"traits":{"plan":"free","email":"a@b.c"}}}"#,
    )
    .unwrap();
    assert_eq!(
        props(&events[0]),
        serde_json::json!({"plan":"pro","email":"a@b.c"})
    );
}

#[test]
fn group_links_user_and_makes_the_account() {
    let events = parse_one(
        EventKind::Group,
        r#"{"userId":"u1","groupId":"acct-9","traits":{"name":"Acme","employees":40},"messageId":"g-1"}"#,
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].entity, "u1");
    assert_eq!(props(&events[0]), serde_json::json!({"groupId":"acct-9"}));
    assert_eq!(events[1].entity, "group:acct-9");
    assert_eq!(
        props(&events[1]),
        serde_json::json!({"name":"Acme","employees":40})
    );
    assert_eq!(events[0].id, event_id("g-1"));
    assert_ne!(events[0].id, events[1].id);
    let again = parse_one(
        EventKind::Group,
        r#"{"userId":"u1","groupId":"acct-9","messageId":"g-1"}"#,
    )
    .unwrap();
    assert_eq!(
        again[1].id, events[1].id,
        "the account event deduplicates too"
    );
}

#[test]
fn page_screen_alias() {
    let page = parse_one(
        EventKind::Page,
        r#"{"anonymousId":"a","name":"Home","properties":{"url":"/"}}"#,
    )
    .unwrap();
    assert_eq!(
        (page[0].entity.as_str(), page[0].name.as_str()),
        ("a", "Home")
    );
    let screen = parse_one(EventKind::Screen, r#"{"userId":"u"}"#).unwrap();
    assert_eq!(screen[0].name, "screen");
    let alias = parse_one(EventKind::Alias, r#"{"userId":"new","previousId":"old"}"#).unwrap();
    assert_eq!(alias[0].kind, EventKind::Alias);
    assert_eq!(props(&alias[0]), serde_json::json!({"previousId":"old"}));
}

#[test]
fn each_problem_names_its_field() {
    let cases = [
        (EventKind::Track, r#"{"event":"e"}"#, "missing", "userId"),
        (EventKind::Track, r#"{"userId":"u"}"#, "missing", "event"),
        (
            EventKind::Track,
            r#"{"userId":"u","event":5}"#,
            "invalid_type",
            "event",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","properties":[1]}"#,
            "invalid_type",
            "properties",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","timestamp":"soon"}"#,
            "invalid_value",
            "timestamp",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","sentAt":false}"#,
            "invalid_type",
            "sentAt",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","type":"page"}"#,
            "invalid_value",
            "type",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","context":"x"}"#,
            "invalid_type",
            "context",
        ),
        (
            EventKind::Track,
            r#"{"userId":"","event":"e"}"#,
            "empty",
            "userId",
        ),
        (EventKind::Group, r#"{"userId":"u"}"#, "missing", "groupId"),
        (
            EventKind::Alias,
            r#"{"userId":"u"}"#,
            "missing",
            "previousId",
        ),
        (
            EventKind::Alias,
            r#"{"anonymousId":"a","previousId":"p"}"#,
            "missing",
            "userId",
        ),
        (
            EventKind::Identify,
            r#"{"userId":"u","traits":true}"#,
            "invalid_type",
            "traits",
        ),
        (
            EventKind::Track,
            r#"{"userId":"u","event":"e","event":"f"}"#,
            "duplicate_field",
            "event",
        ),
    ];
    for (kind, text, code, field) in cases {
        let rejection = parse_one(kind, text).unwrap_err();
        assert_eq!(
            (rejection.code, rejection.field.as_str()),
            (code, field),
            "{text}"
        );
    }
    let in_batch = parse_batch(r#"{"batch":[{"userId":"u"},{"type":"click","userId":"u"}]}"#);
    assert_eq!(in_batch[0].as_ref().unwrap_err().field, "type");
    assert_eq!(in_batch[1].as_ref().unwrap_err().code, "invalid_value");
}

#[test]
fn limits_and_bad_bodies() {
    let big = format!(
        r#"{{"userId":"u","event":"e","properties":{{"x":"{}"}}}}"#,
        "y".repeat(33 * 1024)
    );
    assert_eq!(
        parse_one(EventKind::Track, &big).unwrap_err().code,
        "event_too_large"
    );
    let huge = format!(r#"{{"batch":[],"pad":"{}"}}"#, "y".repeat(MAX_BATCH_BYTES));
    assert!(matches!(
        split_batch(huge.as_bytes(), 10),
        Err(Error::Invalid {
            code: "body_too_large",
            ..
        })
    ));
    assert!(matches!(
        split_batch(b"{\"batch\":[]}", 10),
        Err(Error::EmptyBatch)
    ));
    assert!(matches!(
        split_batch(b"{\"batch\":[{},{}]}", 1),
        Err(Error::TooManyEvents { .. })
    ));
    assert!(matches!(
        split_batch(b"{\"batch\":", 10),
        Err(Error::MalformedJson { .. })
    ));
    assert!(matches!(
        split_batch(b"{\"context\":{}}", 10),
        Err(Error::Invalid {
            code: "missing",
            ..
        })
    ));
    assert!(matches!(
        split_single(b"[1]"),
        Err(Error::Invalid {
            code: "invalid_type",
            ..
        })
    ));
}
