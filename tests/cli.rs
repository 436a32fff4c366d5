//! The operator's command line against the real binary: `shoal tenants|keys|rules|status|dlq|
//! replay|import` run as processes against a running server, their output and exit codes
//! checked, and their effects checked over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, shoal_bin, wait_caught_up};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one CLI command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", self.stdout))
    }
}

/// Runs `shoal ARGS` (with `--server` and `--data-dir` of `shoal` appended), feeding `stdin`,
/// killed if it outlives `COMMAND_TIMEOUT`.
fn shoal_cli(shoal: &Shoal, args: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let mut command = Command::new(shoal_bin());
    command
        .args(args)
        .arg("--server")
        .arg(&shoal.base)
        .arg("--data-dir")
        .arg(&shoal.data_dir);
    run(command, stdin)
}

fn run(mut command: Command, stdin: Option<&[u8]>) -> Outcome {
    command
        .env("SHOAL_LOG", "warn")
        .env_remove("SHOAL_SERVER")
        .env_remove("SHOAL_ADMIN_TOKEN")
        .env_remove("SHOAL_KEY")
        .env_remove("SHOAL_DATA_DIR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn shoal");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.expect("wait for shoal"),
        Err(_) => {
            // SAFETY: signalling our own child, not yet reaped (the waiter thread still waits).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!(
                "shoal {:?} did not finish within {COMMAND_TIMEOUT:?}",
                command.get_args()
            );
        }
    };
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(shoal: &Shoal, args: &[&str]) -> Outcome {
    let outcome = shoal_cli(shoal, args, None);
    assert!(
        outcome.success,
        "shoal {args:?} failed:\n{}\n{}",
        outcome.stdout, outcome.stderr
    );
    outcome
}

fn fails(shoal: &Shoal, args: &[&str]) -> Outcome {
    let outcome = shoal_cli(shoal, args, None);
    assert!(
        !outcome.success,
        "shoal {args:?} should fail:\n{}",
        outcome.stdout
    );
    outcome
}

async fn post_events(shoal: &Shoal, key: &str, events: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(key)
        .json(events)
        .send()
        .await
        .expect("post events");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `shoal rules list --json` until `done` holds for it.
async fn wait_rules(shoal: &Shoal, tenant: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let overview = ok(shoal, &["rules", "list", "--tenant", tenant, "--json"]).json();
        if done(&overview) {
            return overview;
        }
        assert!(
            Instant::now() < deadline,
            "rules never got there: {overview}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const RULES: &str = r#"
description: cli test
conditions:
  active: { event_count: { event: login, days: 14, at_least: 1 } }
stages:
  - { name: customer }
scorecards:
  default:
    weights: { active: 1 }
    bands: { good_from: 50, bad_below: 50 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_keys_rules_and_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shoal = Shoal::start(dir.path(), None);

    // Tenants: created with two keys shown once, listed, a second create refused.
    let created = ok(&shoal, &["tenants", "create", "acme"]);
    assert!(
        created.stdout.contains("created tenant acme"),
        "{}",
        created.stdout
    );
    assert_eq!(
        created.stdout.matches("secret: ").count(),
        2,
        "{}",
        created.stdout
    );
    let listed = ok(&shoal, &["tenants", "list"]);
    assert!(listed.stdout.starts_with("TENANT"), "{}", listed.stdout);
    for tenant in ["acme", "default"] {
        assert!(
            listed.stdout.lines().any(|line| line.starts_with(tenant)),
            "{}",
            listed.stdout
        );
    }
    let again = fails(&shoal, &["tenants", "create", "acme"]);
    assert!(
        again.stderr.contains("409") && again.stderr.contains("tenant acme exists"),
        "{}",
        again.stderr
    );
    let invalid = fails(&shoal, &["tenants", "create", "no/slash"]);
    assert!(invalid.stderr.contains("field id"), "{}", invalid.stderr);

    // Keys: a new write key sends events; revoked, it is refused.
    let key = ok(
        &shoal,
        &[
            "keys", "create", "--tenant", "acme", "--kind", "write", "--json",
        ],
    )
    .json();
    let secret = key["secret"].as_str().expect("secret");
    let id = key["id"].as_str().expect("id");
    let event = json!([{"name": "login", "entity": "acme-user"}]);
    let (status, body) = post_events(&shoal, secret, &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    let revoked = ok(&shoal, &["keys", "revoke", id]);
    assert!(revoked.stdout.contains(&format!("revoked key {id}")));
    let (status, _) = post_events(&shoal, secret, &event).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let missing = fails(
        &shoal,
        &["keys", "create", "--tenant", "nobody", "--kind", "read"],
    );
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    // Rules: applied as a candidate, listed, activated once caught up.
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(&rules_file, RULES).expect("write rules");
    let rules_path = rules_file.to_str().expect("utf-8 path");
    let mut command = Command::new(shoal_bin());
    command.args(["rules", "validate", rules_path]);
    let validated = run(command, None);
    assert!(
        validated.success && validated.stdout.contains("valid"),
        "{}",
        validated.stderr
    );
    let applied = ok(&shoal, &["rules", "apply", "--tenant", "acme", rules_path]);
    assert!(
        applied
            .stdout
            .contains("tenant acme: rules version 1 is the candidate"),
        "{}",
        applied.stdout
    );
    wait_rules(&shoal, "acme", |overview| {
        overview["versions"][0]["caught_up"] == true
    })
    .await;
    let activated = ok(&shoal, &["rules", "activate", "--tenant", "acme", "1"]);
    assert!(
        activated.stdout.contains("version 1 is live"),
        "{}",
        activated.stdout
    );
    let listed = ok(&shoal, &["rules", "list", "--tenant", "acme"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|line| line.starts_with("1 ") && line.contains("active")),
        "{}",
        listed.stdout
    );
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(&bad_file, "conditions: {x: {nonsense: 1}}\n").expect("write");
    let refused = fails(
        &shoal,
        &[
            "rules",
            "apply",
            "--tenant",
            "acme",
            bad_file.to_str().expect("path"),
        ],
    );
    assert!(
        refused.stderr.contains("400") && refused.stderr.contains("invalid_rules"),
        "{}",
        refused.stderr
    );

    // Replay: the live rules again as version 2, live by itself once caught up.
    let replayed = ok(&shoal, &["replay", "--projection", "scores.acme"]);
    assert!(
        replayed.stdout.contains("as version 2"),
        "{}",
        replayed.stdout
    );
    wait_rules(&shoal, "acme", |overview| overview["active"] == 2).await;
    let unsafe_replay = fails(&shoal, &["replay", "--projection", "entities"]);
    assert!(
        unsafe_replay.stderr.contains("scores.<tenant>"),
        "{}",
        unsafe_replay.stderr
    );

    // Status: every projection the server reports is in the table.
    let credentials = shoal.credentials();
    wait_caught_up(&shoal, &credentials.read_key, Duration::from_secs(30)).await;
    let (_, projections) = get_json(&shoal, "/v1/projections", &credentials.read_key).await;
    let status = ok(&shoal, &["status"]);
    assert!(status.stdout.contains("PROJECTION"), "{}", status.stdout);
    for projection in projections["projections"].as_array().expect("projections") {
        let name = projection["name"].as_str().expect("name");
        assert!(
            status
                .stdout
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{name} missing from:\n{}",
            status.stdout
        );
    }
    assert!(status.stdout.contains("caught up"), "{}", status.stdout);
    let raw = ok(&shoal, &["status", "--json"]).json();
    let names = |status: &Value| -> Vec<String> {
        status["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|projection| projection["name"].to_string())
            .collect()
    };
    assert_eq!(names(&raw), names(&projections));

    // Dead letters: none here, and the listing says so.
    let letters = ok(&shoal, &["dlq", "list", "--projection", "entities"]);
    assert_eq!(letters.stdout.trim(), "no dead letters");
    let all = ok(&shoal, &["dlq", "list"]);
    assert_eq!(all.stdout.trim(), "no dead letters");

    // Errors: a wrong token shows the server's error; no server, a clear message.
    let wrong = fails(&shoal, &["tenants", "list", "--token", "nope"]);
    assert!(
        wrong.stderr.contains("401") && wrong.stderr.contains("unauthorized"),
        "{}",
        wrong.stderr
    );
    let mut command = Command::new(shoal_bin());
    command.args(["status", "--server", "http://127.0.0.1:1", "--key", "k"]);
    let unreachable = run(command, None);
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains("cannot reach shoal at http://127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
}

/// `entities` × `per_entity` good lines, every third without an id; then a malformed line, an
/// event without an entity, an array, and a blank line, at known line numbers.
fn history(entities: usize, per_entity: usize) -> (String, Vec<(u64, &'static str)>) {
    let now = shoal_schemas::time::now_millis();
    let mut text = String::new();
    let mut line = 0u64;
    let mut bad = Vec::new();
    for n in 0..entities * per_entity {
        let entity = format!("imp-{}", n % entities);
        let mut event =
            json!({"name": "login", "entity": entity, "timestamp": now - n as i64 * 1000});
        if n % 3 != 0 {
            event["id"] = format!("msg-{n}").into();
        }
        text.push_str(&event.to_string());
        text.push('\n');
        line += 1;
        if n == 17 {
            text.push_str("{\"name\": \"login\", \"entity\": \n");
            line += 1;
            bad.push((line, "malformed_json"));
        }
        if n == 101 {
            text.push_str("{\"name\": \"login\"}\n");
            line += 1;
            bad.push((line, "missing"));
            text.push('\n');
            line += 1;
        }
        if n == 250 {
            text.push_str("[1, 2]\n");
            line += 1;
            bad.push((line, "invalid_type"));
        }
    }
    (text, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_counts_every_line_and_never_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shoal = Shoal::start(&dir.path().join("data"), None);
    let credentials = shoal.credentials();
    let (entities, per_entity) = (10, 30);
    let (text, bad) = history(entities, per_entity);
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, &text).expect("write events");
    let file = file.to_str().expect("utf-8 path");
    let good = (entities * per_entity) as u64;

    // Small batches, so that several are in flight at once.
    let first = ok(
        &shoal,
        &[
            "import",
            file,
            "--batch-events",
            "37",
            "--concurrency",
            "3",
            "--json",
        ],
    )
    .json();
    assert_eq!(first["lines"], good + 3, "{first}");
    assert_eq!(first["accepted"], good, "{first}");
    assert_eq!(first["rejected"], 3, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    let rejections: Vec<(u64, String)> = first["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|rejection| {
            (
                rejection["line"].as_u64().expect("line"),
                rejection["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = bad
        .iter()
        .map(|(line, code)| (*line, code.to_string()))
        .collect();
    assert_eq!(rejections, expected);

    wait_caught_up(&shoal, &credentials.read_key, Duration::from_secs(30)).await;
    let count_all = || async {
        let mut counts = Vec::new();
        for n in 0..entities {
            let (status, body) = get_json(
                &shoal,
                &format!("/v1/entities/imp-{n}"),
                &credentials.read_key,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            counts.push(body["events"].as_u64().expect("events"));
        }
        counts
    };
    assert_eq!(count_all().await, vec![per_entity as u64; entities]);

    // The same import again, in other batches and as text: every line is a duplicate.
    let second = ok(&shoal, &["import", file, "--batch-events", "50"]);
    assert!(
        second.stdout.contains(&format!(
            "{} lines read, 0 accepted, 3 rejected, {good} duplicates",
            good + 3
        )),
        "{}",
        second.stdout
    );
    for (line, code) in &bad {
        assert!(
            second.stdout.contains(&format!("line {line}: {code}")),
            "{}",
            second.stdout
        );
    }
    wait_caught_up(&shoal, &credentials.read_key, Duration::from_secs(30)).await;
    assert_eq!(count_all().await, vec![per_entity as u64; entities]);

    // Stdin, and the key from --key.
    let stdin = "{\"name\":\"signup\",\"entity\":\"imp-stdin\"}\n{\"name\":\"login\",\"entity\":\"imp-stdin\"}\n";
    let mut command = Command::new(shoal_bin());
    command.args([
        "import",
        "-",
        "--json",
        "--server",
        &shoal.base,
        "--key",
        &credentials.write_key,
    ]);
    let piped = run(command, Some(stdin.as_bytes()));
    assert!(piped.success, "{}", piped.stderr);
    assert_eq!(piped.json()["accepted"], 2, "{}", piped.stdout);

    // A read key cannot import: the command stops with the server's error.
    let mut command = Command::new(shoal_bin());
    command.args([
        "import",
        file,
        "--server",
        &shoal.base,
        "--key",
        &credentials.read_key,
    ]);
    let refused = run(command, None);
    assert!(!refused.success);
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
}
