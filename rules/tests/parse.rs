//! Documents in JSON and YAML, and errors that name the field and the line.

use shoal_rules::{Format, parse};

const VALID: &str = r#"
conditions:
  logins: { event_count: { event: login, days: 14, at_least: 5 } }
stages:
  - { name: trial }
scorecards:
  default:
    weights: { logins: 1 }
    bands: { good_from: 70, bad_below: 40 }
search: { properties: all, traits: [plan] }
series: { retention_days: { raw: 7, minute: 90 } }
"#;

#[test]
fn yaml_and_json_give_the_same_rules() {
    let yaml = parse(VALID, Format::Yaml).expect("yaml");
    let json_text = serde_json::to_string(yaml.document()).expect("json");
    let json = parse(&json_text, Format::Json).expect("json");
    assert_eq!(yaml, json);
    assert!(yaml.searchable_property("anything"));
    assert!(yaml.searchable_trait("plan"));
    assert!(!yaml.searchable_trait("email"));
}

fn error(text: &str, format: Format) -> shoal_rules::Error {
    parse(text, format).expect_err("invalid document")
}

#[test]
fn type_errors_name_the_field_and_line() {
    let text = VALID.replace("days: 14", "days: fourteen");
    let error = error(&text, Format::Yaml);
    assert_eq!(error.field, "conditions.logins.event_count.days");
    assert_eq!(error.line, Some(3), "{error}");
    let json = r#"{"conditions": {"logins": {"event_count": {"event": "login", "days": -1, "at_least": 1}}},
"scorecards": {}}"#;
    let error = self::error(json, Format::Json);
    assert_eq!(error.field, "conditions.logins.event_count.days");
    assert_eq!(error.line, Some(1));
}

#[test]
fn unknown_fields_are_errors() {
    let text = VALID.replace("at_least: 5", "at_leats: 5");
    let error = error(&text, Format::Yaml);
    assert!(error.message.contains("at_leats"), "{error}");
    assert_eq!(error.line, Some(3));
    let text = VALID.replace("event_count:", "event_counts:");
    assert!(error_of(&text).message.contains("event_counts"));
}

fn error_of(text: &str) -> shoal_rules::Error {
    error(text, Format::Yaml)
}

#[test]
fn syntax_errors_have_a_line() {
    let error = error("conditions: {\n  a: [\n", Format::Yaml);
    assert!(error.line.is_some(), "{error}");
    let error = self::error("{\"conditions\": }", Format::Json);
    assert_eq!((error.line, error.column), (Some(1), Some(16)));
}

#[test]
fn semantic_errors_name_the_field_and_line() {
    let cases = [
        (
            VALID.replace("weights: { logins: 1 }", "weights: { login: 1 }"),
            "scorecards.default.weights.login",
            8,
        ),
        (
            VALID.replace("days: 14", "days: 0"),
            "conditions.logins.event_count.days",
            3,
        ),
        (
            VALID.replace("at_least: 5", "at_least: 5, at_most: 4"),
            "conditions.logins.event_count.at_most",
            3,
        ),
        (
            VALID.replace(
                "good_from: 70, bad_below: 40",
                "good_from: 30, bad_below: 40",
            ),
            "scorecards.default.bands.bad_below",
            9,
        ),
        (
            VALID.replace("  - { name: trial }", "  - { name: trial, all: [nope] }"),
            "stages.0.all.0",
            5,
        ),
        (VALID.replace("default:", "trail:"), "scorecards.trail", 7),
        (
            VALID.replace("minute: 90", "minute: 3"),
            "series.retention_days.minute",
            11,
        ),
    ];
    for (text, field, line) in cases {
        let error = error_of(&text);
        assert_eq!(error.field, field, "{error}");
        assert_eq!(error.line, Some(line), "{error}");
    }
}

#[test]
fn exactly_one_choice_is_enforced() {
    let text = VALID.replace(
        "logins: { event_count: { event: login, days: 14, at_least: 5 } }",
        "logins: { recency: { event: login, within_days: 3, more_than_days: 4 } }",
    );
    let error = error_of(&text);
    assert_eq!(error.field, "conditions.logins.recency");
    assert!(error.message.contains("exactly one"), "{error}");
}

#[test]
fn stage_names_are_unique_and_default_is_needed() {
    let text = VALID.replace(
        "  - { name: trial }",
        "  - { name: trial }\n  - { name: trial }",
    );
    assert_eq!(error_of(&text).field, "stages.1.name");
    let text = VALID.replace("default:", "trial:").replace(
        "  - { name: trial }",
        "  - { name: trial }\n  - { name: paid }",
    );
    assert_eq!(error_of(&text).field, "scorecards.default");
}
