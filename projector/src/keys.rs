//! Key helpers shared by the projections and the engine (the full layouts are in
//! `docs/read-models.md`).
//!
//! Invariants:
//! - every `views` key starts with the projection version then the tenant (`v1#acme#…`), so a
//!   rebuild under version 2 writes beside the live version 1 and a tenant's items never mix
//!   with another's;
//! - `events` keys start with the tenant (`acme#user-1`), unversioned: the archive is immutable;
//! - `control` items of the projector live under the reserved `_projector` prefix, which no
//!   tenant id can take (tenants start with a letter or digit);
//! - times in sort keys are zero-padded to 20 digits so byte order is time order. Times before
//!   the epoch are clamped to 0 in keys (ingest does not accept them; the item keeps the truth).

use shoal_schemas::keys::SEPARATOR;
use std::fmt::Write as _;

/// The `views` partition key `v<version>#<tenant>#<kind>[#<rest>]`.
pub fn views_pk(version: u32, tenant: &str, kind: &str, rest: Option<&str>) -> String {
    // Built once or more per event by every projection: one exact allocation, and the
    // formatter only for the version number.
    let rest_len = rest.map_or(0, |rest| rest.len() + 1);
    let mut pk = String::with_capacity(13 + tenant.len() + kind.len() + rest_len);
    pk.push('v');
    // Writing to a `String` cannot fail.
    let _ = write!(pk, "{version}");
    pk.push(SEPARATOR);
    pk.push_str(tenant);
    pk.push(SEPARATOR);
    pk.push_str(kind);
    if let Some(rest) = rest {
        pk.push(SEPARATOR);
        pk.push_str(rest);
    }
    pk
}

/// A millisecond time as 20 zero-padded digits (byte order = time order).
pub fn padded_millis(millis: i64) -> String {
    let mut text = String::with_capacity(20);
    push_padded_millis(&mut text, millis);
    text
}

/// [`padded_millis`] appended to `text`, without the formatting machinery (it is in the hot
/// loop of every projection that keys items by time).
pub fn push_padded_millis(text: &mut String, millis: i64) {
    shoal_schemas::keys::push_padded(text, millis.max(0).unsigned_abs(), 20);
}

/// Parses [`padded_millis`] back.
pub fn parse_padded(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// The `control` partition of a projection's checkpoints: `_projector#checkpoint#<name>#v<version>`,
/// one item per shard (sort key = shard id).
pub fn checkpoint_pk(projection: &str, version: u32) -> String {
    format!("_projector{SEPARATOR}checkpoint{SEPARATOR}{projection}{SEPARATOR}v{version}")
}

/// The `control` partition of the shard leases of a group of projector processes:
/// `_projector#lease#<group>`, sort key `<shard>`.
pub fn lease_pk(group: &str) -> String {
    format!("_projector{SEPARATOR}lease{SEPARATOR}{group}")
}

/// The `control` partition of a projection's dead letters:
/// `_projector#deadletter#<name>#v<version>`, sort key `<shard>#<sortable position>`.
pub fn dead_letter_pk(projection: &str, version: u32) -> String {
    format!("_projector{SEPARATOR}deadletter{SEPARATOR}{projection}{SEPARATOR}v{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(
            views_pk(1, "acme", "entity", Some("u#1")),
            "v1#acme#entity#u#1"
        );
        assert_eq!(views_pk(2, "acme", "entities", None), "v2#acme#entities");
        assert_eq!(padded_millis(42), "00000000000000000042");
        assert_eq!(padded_millis(-5), "00000000000000000000");
        assert_eq!(padded_millis(i64::MAX), format!("{:020}", i64::MAX));
        assert_eq!(padded_millis(1_704_067_200_000), "00000001704067200000");
        assert!(padded_millis(9) < padded_millis(10));
        assert_eq!(
            checkpoint_pk("series", 1),
            "_projector#checkpoint#series#v1"
        );
    }
}
