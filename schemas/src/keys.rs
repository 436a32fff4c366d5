//! Key layouts shared by the log and the tables.
//!
//! The log's partition key is `tenant + entity`: all writes of one entity land, in order, in one
//! shard, so each read-model item is fed by exactly one shard (DESIGN.md, "The event").

use xxhash_rust::xxh3::xxh3_64;

/// Separator inside composite keys. Tenant ids never contain it (they are validated as
/// `[A-Za-z0-9_-]`), so `tenant#rest` splits unambiguously at the first `#`.
pub const SEPARATOR: char = '#';

/// `value` in decimal appended to `text`, left-padded with zeros to `width` digits (a wider
/// value keeps every digit). Keys and positions are compared as text, so their numbers are
/// padded; this is on the per-event path of every projection, hence no `format!`.
pub fn push_padded(text: &mut String, value: u64, width: usize) {
    const ZEROS: &str = "00000000000000000000";
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    let pad = width.saturating_sub(digits.len());
    for _ in 0..pad / ZEROS.len() {
        text.push_str(ZEROS);
    }
    text.push_str(&ZEROS[..pad % ZEROS.len()]);
    text.push_str(digits);
}

/// The log partition key of an entity: what Kinesis hashes, and what the embedded log hashes.
pub fn partition_key(tenant: &str, entity: &str) -> String {
    let mut key = String::with_capacity(tenant.len() + entity.len() + 1);
    key.push_str(tenant);
    key.push(SEPARATOR);
    key.push_str(entity);
    key
}

/// The embedded log's shard for an entity: a stable hash of the partition key modulo the shard
/// count. Stable across versions and platforms, because it decides where history lives.
pub fn shard_of(tenant: &str, entity: &str, shard_count: u32) -> u32 {
    debug_assert!(shard_count > 0);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(tenant.as_bytes());
    hasher.update(&[SEPARATOR as u8]);
    hasher.update(entity.as_bytes());
    (hasher.digest() % u64::from(shard_count.max(1))) as u32
}

/// A 64-bit fingerprint of `tenant + entity + id`, used by the dedup window.
///
/// The hash of `tenant \0 entity \0 id-bytes`. It is computed once per ingested event, so the
/// usual key is laid out in a stack buffer (no allocation); a longer one is streamed, which
/// gives the same value. The value must never change: recovery recomputes it from the log.
pub fn dedup_fingerprint(tenant: &str, entity: &str, id: &uuid::Uuid) -> u64 {
    const STACK_BYTES: usize = 256;
    let tenant = tenant.as_bytes();
    let entity = entity.as_bytes();
    let id = id.as_bytes();
    let len = tenant.len() + entity.len() + id.len() + 2;
    if len > STACK_BYTES {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(tenant);
        hasher.update(&[0]);
        hasher.update(entity);
        hasher.update(&[0]);
        hasher.update(id);
        return hasher.digest();
    }
    let mut bytes = [0u8; STACK_BYTES];
    let entity_at = tenant.len() + 1;
    let id_at = entity_at + entity.len() + 1;
    bytes[..tenant.len()].copy_from_slice(tenant);
    bytes[entity_at..entity_at + entity.len()].copy_from_slice(entity);
    bytes[id_at..len].copy_from_slice(id);
    xxh3_64(&bytes[..len])
}

/// Is this a valid tenant id? Tenants appear at the front of every key, so they are kept to a
/// plain alphabet that can never contain the separator, and start with a letter or digit so that
/// `_`-prefixed names stay free for Shoal's own items (`_system`).
pub fn is_valid_tenant(tenant: &str) -> bool {
    tenant
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_padded_pads_to_the_width_and_keeps_wider_values() {
        let padded = |value: u64, width: usize| {
            let mut text = String::from(">");
            push_padded(&mut text, value, width);
            text
        };
        assert_eq!(padded(42, 5), ">00042");
        assert_eq!(padded(0, 3), ">000");
        assert_eq!(padded(123_456, 3), ">123456");
        assert_eq!(padded(7, 45), format!(">{:045}", 7));
        assert_eq!(padded(u64::MAX, 20), format!(">{}", u64::MAX));
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        for count in [1, 2, 4, 16] {
            let shard = shard_of("acme", "user-1", count);
            assert!(shard < count);
            assert_eq!(shard, shard_of("acme", "user-1", count));
        }
        // Pinned: this mapping decides where history lives, so it must never change silently.
        let pinned: Vec<u32> = (0..8)
            .map(|n| shard_of("default", &format!("customer-{n}"), 16))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u32; 8] = [3, 2, 11, 14, 4, 12, 10, 2];

    #[test]
    fn tenant_alphabet() {
        assert!(is_valid_tenant("acme_prod-1"));
        assert!(!is_valid_tenant("a#b"));
        assert!(!is_valid_tenant("_system"));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant(&"x".repeat(65)));
    }

    #[test]
    fn partition_key_joins_with_separator() {
        assert_eq!(partition_key("t", "e#1"), "t#e#1");
    }

    #[test]
    fn fingerprint_is_the_hash_of_the_joined_key_at_every_length() {
        // The layout recovery relies on: `tenant \0 entity \0 id`, hashed in one piece,
        // whether the key fits the stack buffer or is streamed.
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        for entity_len in [0, 1, 100, 200, 225, 226, 227, 256] {
            let entity = "e".repeat(entity_len);
            let mut joined = b"acme-corp-tenant-01234567890".to_vec();
            joined.push(0);
            joined.extend_from_slice(entity.as_bytes());
            joined.push(0);
            joined.extend_from_slice(id.as_bytes());
            assert_eq!(
                dedup_fingerprint("acme-corp-tenant-01234567890", &entity, &id),
                xxh3_64(&joined),
                "entity of {entity_len} bytes"
            );
        }
    }
}
