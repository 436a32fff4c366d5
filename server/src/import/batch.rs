//! Lines of NDJSON into request batches, off the async runtime.
//!
//! Every line that is sent carries an id: a line without one gets a UUIDv5 of its line number
//! and its text, so sending the same batch again (after a 429, a 503 or a lost answer) or
//! re-running the same import cannot store an event twice — the server acknowledges a repeated
//! `entity + id` as a duplicate. A line that is not a JSON object is rejected here, with its
//! line number, and the import goes on.

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// The namespace of the ids given to lines without one.
pub const LINE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3f6c_58a1_9e0b_4c27_8d45_2b7e_61f0_a9d3);

/// How big a batch may grow.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
}

/// Lines ready to send: the NDJSON body and, per event, its line number and where it ends.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub body: Vec<u8>,
    pub lines: Vec<u64>,
    ends: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn push(&mut self, line: u64, event: &[u8]) {
        self.body.extend_from_slice(event);
        self.body.push(b'\n');
        self.ends.push(self.body.len());
        self.lines.push(line);
    }

    fn fits(&self, event: &[u8], limits: Limits) -> bool {
        self.lines.len() < limits.events && self.body.len() + event.len() < limits.bytes
    }

    /// Two halves, for a server whose limits are smaller than ours (413).
    pub fn split(self) -> (Batch, Batch) {
        let middle = self.lines.len() / 2;
        let cut = if middle == 0 {
            0
        } else {
            self.ends[middle - 1]
        };
        let first = Batch {
            body: self.body[..cut].to_vec(),
            lines: self.lines[..middle].to_vec(),
            ends: self.ends[..middle].to_vec(),
        };
        let second = Batch {
            body: self.body[cut..].to_vec(),
            lines: self.lines[middle..].to_vec(),
            ends: self.ends[middle..].iter().map(|end| end - cut).collect(),
        };
        (first, second)
    }
}

/// A line refused before sending.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRejection {
    pub line: u64,
    pub code: String,
    pub message: String,
}

/// What one line becomes.
#[derive(Debug, PartialEq)]
pub enum Prepared {
    Blank,
    Event(Vec<u8>),
    Rejected(LocalRejection),
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// The line (without its newline) as an event to send, with an id.
pub fn prepare(number: u64, line: &[u8], limits: Limits) -> Prepared {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Prepared::Blank;
    }
    let reject = |code: &str, message: String| {
        Prepared::Rejected(LocalRejection {
            line: number,
            code: code.to_owned(),
            message,
        })
    };
    if trimmed.len() + 64 >= limits.bytes {
        return reject(
            "event_too_large",
            format!(
                "the line is {} bytes, more than one request carries (--batch-bytes {})",
                trimmed.len(),
                limits.bytes
            ),
        );
    }
    // A struct also accepts a JSON array; an event is an object.
    if trimmed.first() != Some(&b'{') {
        return reject("invalid_type", "the line is not a JSON object".to_owned());
    }
    let probe: Probe<'_> = match serde_json::from_slice(trimmed) {
        Ok(probe) => probe,
        Err(error) => return reject("malformed_json", error.to_string()),
    };
    if probe.id.is_some_and(|id| id.get() != "null") {
        return Prepared::Event(trimmed.to_vec());
    }
    let id = line_id(number, trimmed);
    if probe.id.is_none() && !contains(trimmed, b"\"id\"") {
        return Prepared::Event(splice_id(trimmed, &id));
    }
    // `"id": null`, or an `"id"` that may be a nested key: rewrite the object instead.
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(trimmed) {
        Ok(mut object) => {
            object.insert("id".to_owned(), id.to_string().into());
            match serde_json::to_vec(&object) {
                Ok(bytes) => Prepared::Event(bytes),
                Err(error) => reject("malformed_json", error.to_string()),
            }
        }
        Err(error) => reject("malformed_json", error.to_string()),
    }
}

/// The id of a line without one: the same line at the same place gives the same id.
pub fn line_id(number: u64, line: &[u8]) -> Uuid {
    let mut name = Vec::with_capacity(line.len() + 21);
    name.extend_from_slice(number.to_string().as_bytes());
    name.push(b'\n');
    name.extend_from_slice(line);
    Uuid::new_v5(&LINE_ID_NAMESPACE, &name)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// `{...}` with `"id":"<id>"` as its first member; the rest of the text is kept byte for byte.
fn splice_id(object: &[u8], id: &Uuid) -> Vec<u8> {
    debug_assert_eq!(object.first(), Some(&b'{'));
    let rest = &object[1..];
    let empty = rest.trim_ascii_start().first() == Some(&b'}');
    let mut out = Vec::with_capacity(object.len() + 48);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// Builds batches from prepared lines.
pub struct Batcher {
    limits: Limits,
    current: Batch,
}

impl Batcher {
    pub fn new(limits: Limits) -> Self {
        Batcher {
            limits,
            current: Batch::default(),
        }
    }

    /// Adds an event; returns the full batch it closed, if any.
    pub fn add(&mut self, line: u64, event: &[u8]) -> Option<Batch> {
        let full = (!self.current.is_empty() && !self.current.fits(event, self.limits))
            .then(|| std::mem::take(&mut self.current));
        self.current.push(line, event);
        full
    }

    pub fn finish(self) -> Option<Batch> {
        (!self.current.is_empty()).then_some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        events: 3,
        bytes: 1024,
    };

    fn event(prepared: Prepared) -> serde_json::Value {
        match prepared {
            Prepared::Event(bytes) => serde_json::from_slice(&bytes).expect("valid JSON"),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn lines_without_an_id_get_a_stable_one() {
        let line = br#"{"name":"login","entity":"acme"}"#;
        let first = event(prepare(7, line, LIMITS));
        let again = event(prepare(7, line, LIMITS));
        assert_eq!(first, again, "the same line at the same place, the same id");
        assert_eq!(first["name"], "login");
        let elsewhere = event(prepare(8, line, LIMITS));
        assert_ne!(
            first["id"], elsewhere["id"],
            "an identical line elsewhere is another event"
        );
        assert_eq!(
            event(prepare(1, b"{ }", LIMITS)).as_object().unwrap().len(),
            1
        );
        let null = event(prepare(
            3,
            br#"{"id":null,"entity":"a","name":"x"}"#,
            LIMITS,
        ));
        assert_eq!(
            null["id"],
            line_id(3, br#"{"id":null,"entity":"a","name":"x"}"#).to_string()
        );
        let nested = event(prepare(
            4,
            br#"{"entity":"a","properties":{"id":1}}"#,
            LIMITS,
        ));
        assert!(nested["id"].is_string() && nested["properties"]["id"] == 1);
    }

    #[test]
    fn given_ids_and_text_are_kept() {
        let line = b"  {\"id\":\"m-1\",\"entity\":\"a\", \"value\": 1.50}\r";
        assert_eq!(
            prepare(1, line, LIMITS),
            Prepared::Event(b"{\"id\":\"m-1\",\"entity\":\"a\", \"value\": 1.50}".to_vec())
        );
        assert_eq!(prepare(2, b"  \r", LIMITS), Prepared::Blank);
    }

    #[test]
    fn bad_lines_are_rejected_with_their_number() {
        for (line, code) in [
            (&b"{\"entity\": "[..], "malformed_json"),
            (b"[1,2]", "invalid_type"),
            (b"42", "invalid_type"),
            (b"\xff\xfe", "invalid_type"),
        ] {
            match prepare(9, line, LIMITS) {
                Prepared::Rejected(rejection) => {
                    assert_eq!(
                        (rejection.line, rejection.code.as_str()),
                        (9, code),
                        "{line:?}"
                    )
                }
                other => panic!("{line:?} gave {other:?}"),
            }
        }
        let huge = format!("{{\"entity\":\"{}\"}}", "x".repeat(2000));
        assert!(matches!(
            prepare(1, huge.as_bytes(), LIMITS),
            Prepared::Rejected(LocalRejection { code, .. }) if code == "event_too_large"
        ));
    }

    #[test]
    fn batches_close_on_count_and_bytes_and_split_in_halves() {
        let mut batcher = Batcher::new(LIMITS);
        let mut closed = Vec::new();
        for line in 1..=7u64 {
            closed.extend(batcher.add(line, b"{\"a\":1}"));
        }
        closed.extend(batcher.finish());
        let sizes: Vec<usize> = closed.iter().map(Batch::len).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert_eq!(closed[1].lines, vec![4, 5, 6]);

        let mut by_bytes = Batcher::new(Limits {
            events: 100,
            bytes: 20,
        });
        assert!(by_bytes.add(1, b"{\"a\":11111}").is_none());
        let full = by_bytes.add(2, b"{\"a\":22222}").expect("closed on bytes");
        assert_eq!(full.lines, vec![1]);

        let (first, second) = closed[0].clone().split();
        assert_eq!(first.lines, vec![1]);
        assert_eq!(first.body, b"{\"a\":1}\n");
        assert_eq!(second.lines, vec![2, 3]);
        assert_eq!(second.body, b"{\"a\":1}\n{\"a\":1}\n");
        let (left, right) = second.split();
        assert_eq!((left.body.len(), right.body.len()), (8, 8));
    }
}
