//! The opaque query cursor: where the previous page stopped.
//!
//! Form: `c1.<base64url(pk)>.<base64url(sk)>` — a version tag, then the partition and the sort
//! key of the last item returned. Storing the key rather than an offset keeps a cursor valid
//! while items are written between pages: the next page starts strictly after that sort key (in
//! the query's direction) whether or not the item still exists. The partition is kept so a cursor
//! handed to a query of another partition is refused instead of silently skipping items.
//! Anything that does not decode is [`Error::InvalidCursor`], never a panic.

use crate::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const TAG: &str = "c1";

/// The cursor for a page whose last item is `(pk, sk)`.
pub(crate) fn encode(pk: &str, sk: &str) -> String {
    format!(
        "{TAG}.{}.{}",
        URL_SAFE_NO_PAD.encode(pk),
        URL_SAFE_NO_PAD.encode(sk)
    )
}

/// The sort key a cursor continues after, checking it was made for partition `pk`.
pub(crate) fn decode(cursor: &str, pk: &str) -> Result<String> {
    let mut parts = cursor.split('.');
    let (Some(TAG), Some(cursor_pk), Some(sk), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::InvalidCursor);
    };
    if decode_text(cursor_pk)? != pk {
        return Err(Error::InvalidCursor);
    }
    decode_text(sk)
}

/// The key a scan cursor continues after (a scan crosses partitions, so any `pk` is valid).
pub(crate) fn decode_key(cursor: &str) -> Result<(String, String)> {
    let mut parts = cursor.split('.');
    let (Some(TAG), Some(pk), Some(sk), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::InvalidCursor);
    };
    Ok((decode_text(pk)?, decode_text(sk)?))
}

fn decode_text(part: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::InvalidCursor)?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_key() {
        for (pk, sk) in [
            ("t#e", "2024#id"),
            ("ünï", "日本.語"),
            ("p", "a.b.c"),
            ("p", "\0"),
        ] {
            let cursor = encode(pk, sk);
            assert_eq!(decode(&cursor, pk).expect("decodes"), sk);
        }
    }

    #[test]
    fn refuses_garbage_and_other_partitions() {
        let good = encode("p", "s");
        for bad in [
            "",
            "c1",
            "c1..",
            "c2.cA.cw",
            "c1.cA.cw.x",
            "c1.!!.cw",
            "garbage",
        ] {
            assert!(
                matches!(decode(bad, "p"), Err(Error::InvalidCursor)),
                "{bad}"
            );
        }
        assert!(matches!(decode(&good, "q"), Err(Error::InvalidCursor)));
        // Valid base64 of bytes that are not UTF-8.
        let not_utf8 = format!(
            "c1.{}.{}",
            URL_SAFE_NO_PAD.encode("p"),
            URL_SAFE_NO_PAD.encode([0xff])
        );
        assert!(matches!(decode(&not_utf8, "p"), Err(Error::InvalidCursor)));
    }
}
