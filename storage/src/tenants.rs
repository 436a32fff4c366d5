//! Tenants and their API keys, kept in the `control` table.
//!
//! Keys are random 192-bit secrets, so they are stored as their SHA-256 digest: a fast hash is
//! enough for secrets with that much entropy (a slow password hash buys nothing there and would
//! cost every request). The plain key is shown once, when it is made.
//!
//! Layout (all under the reserved `_system` prefix, which no tenant id can take):
//! - `_system#tenants` / `<tenant>` — the tenant record;
//! - `_system#keys` / `<sha256 hex>` — a key: its tenant, kind, id, and whether it is revoked;
//! - `_system#admin` / `<sha256 hex>` — an admin token.

use crate::{Condition, Item, Key, Query, SortRange, Table, TableName, TransactOp, Value};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANTS_PK: &str = "_system#tenants";
const KEYS_PK: &str = "_system#keys";
const ADMIN_PK: &str = "_system#admin";
/// How long a looked-up key is trusted before the table is asked again, so a revoked key stops
/// working within this time on every process.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Ingest only.
    Write,
    /// Query only.
    Read,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Read => "read",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Write => "shw_",
            KeyKind::Read => "shr_",
        }
    }

    fn parse(text: &str) -> Option<KeyKind> {
        match text {
            "write" => Some(KeyKind::Write),
            "read" => Some(KeyKind::Read),
            _ => None,
        }
    }
}

/// A key as looked up: who it belongs to and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub tenant: String,
    pub kind: KeyKind,
}

/// A key just made; `secret` is shown once and never stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewKey {
    pub id: String,
    pub tenant: String,
    pub kind: KeyKind,
    pub secret: String,
}

/// A tenant record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Tenant {
    pub id: String,
    pub created_at: i64,
}

/// The secret a request presents, from its `Authorization` header (`Bearer <key>`, or `Basic
/// base64(<key>:)` as Segment's SDKs send it) or its `X-Api-Key` header (Mackerel's agents).
pub fn presented_key(authorization: Option<&str>, api_key: Option<&str>) -> Option<String> {
    use base64::Engine;
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    if let Some(text) = authorization {
        let (scheme, rest) = text.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return non_empty(rest);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            // The key is the user name; the password is empty or ignored.
            let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
            return non_empty(user);
        }
        return None;
    }
    api_key.map(str::trim).and_then(non_empty)
}

/// The digest a key is stored under.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Access to tenants and keys, with a short-lived cache of key lookups (every request checks
/// its key, and the table is a disk or network round trip away).
pub struct TenantStore {
    table: Arc<dyn Table>,
    cache: Mutex<HashMap<String, (Instant, Option<KeyInfo>)>>,
}

impl TenantStore {
    pub fn new(table: Arc<dyn Table>) -> Self {
        TenantStore {
            table,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a tenant; `ConditionFailed` when it exists.
    pub async fn create_tenant(&self, tenant: &str) -> crate::Result<Tenant> {
        if !shoal_schemas::keys::is_valid_tenant(tenant) {
            return Err(crate::Error::InvalidArgument(format!(
                "tenant id {tenant:?} must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit"
            )));
        }
        let created_at = shoal_schemas::time::now_millis();
        let item = Item::from([("created_at".to_owned(), Value::N(created_at as f64))]);
        self.table
            .transact(vec![TransactOp::Put {
                table: TableName::Control,
                key: Key::new(TENANTS_PK, tenant),
                item,
                condition: Some(Condition::ItemNotExists),
            }])
            .await?;
        Ok(Tenant {
            id: tenant.to_owned(),
            created_at,
        })
    }

    pub async fn tenant_exists(&self, tenant: &str) -> crate::Result<bool> {
        Ok(self
            .table
            .get(TableName::Control, &Key::new(TENANTS_PK, tenant))
            .await?
            .is_some())
    }

    pub async fn list_tenants(&self) -> crate::Result<Vec<Tenant>> {
        let mut tenants = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .table
                .query(
                    TableName::Control,
                    &Query::partition(TENANTS_PK).limit(1000).after(cursor),
                )
                .await?;
            for (key, item) in page.items {
                let created_at = item
                    .get("created_at")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                tenants.push(Tenant {
                    id: key.sk,
                    created_at: created_at as i64,
                });
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(tenants),
            }
        }
    }

    /// Makes a key for an existing tenant.
    pub async fn create_key(&self, tenant: &str, kind: KeyKind) -> crate::Result<NewKey> {
        if !self.tenant_exists(tenant).await? {
            return Err(crate::Error::InvalidArgument(format!(
                "unknown tenant {tenant:?}"
            )));
        }
        let secret = random_secret(kind.prefix());
        let digest = hash_secret(&secret);
        let id = digest[..16].to_owned();
        let item = Item::from([
            ("tenant".to_owned(), Value::S(tenant.to_owned())),
            ("kind".to_owned(), Value::S(kind.as_str().to_owned())),
            ("id".to_owned(), Value::S(id.clone())),
            ("revoked".to_owned(), Value::Bool(false)),
            (
                "created_at".to_owned(),
                Value::N(shoal_schemas::time::now_millis() as f64),
            ),
        ]);
        self.table
            .transact(vec![TransactOp::Put {
                table: TableName::Control,
                key: Key::new(KEYS_PK, digest),
                item,
                condition: Some(Condition::ItemNotExists),
            }])
            .await?;
        Ok(NewKey {
            id,
            tenant: tenant.to_owned(),
            kind,
            secret,
        })
    }

    /// Revokes a key by its id (the first 16 hex digits of its digest). Returns whether a key
    /// with that id existed.
    pub async fn revoke_key(&self, key_id: &str) -> crate::Result<bool> {
        if key_id.len() != 16 || !key_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let page = self
            .table
            .query(
                TableName::Control,
                &Query::partition(KEYS_PK)
                    .range(SortRange::Prefix(key_id.to_ascii_lowercase()))
                    .limit(2),
            )
            .await?;
        let Some((key, _)) = page.items.into_iter().next() else {
            return Ok(false);
        };
        self.table
            .update(
                TableName::Control,
                crate::Update::new(key.clone())
                    .set("revoked", Value::Bool(true))
                    .when(Condition::ItemExists),
            )
            .await?;
        self.lock_cache().remove(&key.sk);
        Ok(true)
    }

    /// Looks a presented key up; `None` when unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> crate::Result<Option<KeyInfo>> {
        let digest = hash_secret(secret);
        if let Some((at, info)) = self.lock_cache().get(&digest)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(info.clone());
        }
        let item = self
            .table
            .get(TableName::Control, &Key::new(KEYS_PK, digest.clone()))
            .await?;
        let info = item.and_then(|item| key_info(&item));
        let mut cache = self.lock_cache();
        // Unknown keys are cached too, so a flood of bad keys costs one lookup each per TTL;
        // the map is cleared when it grows large rather than growing without bound.
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(digest, (Instant::now(), info.clone()));
        Ok(info)
    }

    /// Stores an admin token (its digest).
    pub async fn add_admin_token(&self, secret: &str) -> crate::Result<()> {
        let item = Item::from([(
            "created_at".to_owned(),
            Value::N(shoal_schemas::time::now_millis() as f64),
        )]);
        self.table
            .write(
                TableName::Control,
                vec![crate::WriteOp::Put {
                    key: Key::new(ADMIN_PK, hash_secret(secret)),
                    item,
                }],
            )
            .await
    }

    /// Makes a fresh admin token and stores it.
    pub async fn create_admin_token(&self) -> crate::Result<String> {
        let secret = random_secret("sha_");
        self.add_admin_token(&secret).await?;
        Ok(secret)
    }

    pub async fn is_admin(&self, secret: &str) -> crate::Result<bool> {
        Ok(self
            .table
            .get(TableName::Control, &Key::new(ADMIN_PK, hash_secret(secret)))
            .await?
            .is_some())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<KeyInfo>)>> {
        // A panic while holding this lock leaves a plain cache behind, still usable.
        self.cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn key_info(item: &Item) -> Option<KeyInfo> {
    if item.get("revoked") == Some(&Value::Bool(true)) {
        return None;
    }
    Some(KeyInfo {
        id: item.get("id")?.as_str()?.to_owned(),
        tenant: item.get("tenant")?.as_str()?.to_owned(),
        kind: KeyKind::parse(item.get("kind")?.as_str()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_bearer_basic_and_api_key() {
        assert_eq!(presented_key(Some("Bearer abc"), None), Some("abc".into()));
        // base64("abc:") = "YWJjOg=="
        assert_eq!(
            presented_key(Some("Basic YWJjOg=="), None),
            Some("abc".into())
        );
        assert_eq!(presented_key(None, Some(" abc ")), Some("abc".into()));
        assert_eq!(presented_key(Some("Bearer "), None), None);
        assert_eq!(presented_key(Some("Digest x"), None), None);
        assert_eq!(presented_key(None, None), None);
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let first = random_secret("shw_");
        let second = random_secret("shw_");
        assert!(first.starts_with("shw_"));
        assert_eq!(first.len(), 4 + 48);
        assert_ne!(first, second);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn revoked_keys_do_not_authenticate() {
        let mut item = Item::from([
            ("tenant".to_owned(), Value::S("t".into())),
            ("kind".to_owned(), Value::S("write".into())),
            ("id".to_owned(), Value::S("0123456789abcdef".into())),
            ("revoked".to_owned(), Value::Bool(false)),
        ]);
        assert_eq!(key_info(&item).map(|info| info.kind), Some(KeyKind::Write));
        item.insert("revoked".to_owned(), Value::Bool(true));
        assert_eq!(key_info(&item), None);
    }
}
