//! First start: make the default tenant, its write and read keys, and an admin token, print them
//! once and keep a copy in the data directory (readable by the owner only), so a new user can
//! send events with nothing to configure.

use anyhow::Context;
use serde::Serialize;
use shoal_storage::tenants::{KeyKind, TenantStore};
use shoal_storage::{Item, Key, Table, TableName, Value, WriteOp};
use std::path::{Path, PathBuf};

pub const DEFAULT_TENANT: &str = "default";
const MARKER_PK: &str = "_system#bootstrap";
pub const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(Serialize)]
struct Credentials<'a> {
    tenant: &'a str,
    write_key: &'a str,
    read_key: &'a str,
    admin_token: &'a str,
}

/// Creates the default tenant and keys unless an earlier start did. Returns the credentials
/// file written, if this was the first start.
pub async fn ensure(
    table: &dyn Table,
    tenants: &TenantStore,
    data_dir: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let marker = Key::new(MARKER_PK, "done");
    if table.get(TableName::Control, &marker).await?.is_some() {
        return Ok(None);
    }
    match tenants.create_tenant(DEFAULT_TENANT).await {
        // A start that died between creating the tenant and writing the marker: the tenant
        // stands, fresh keys are made below and the old ones were never shown to anyone.
        Ok(_) | Err(shoal_storage::Error::ConditionFailed) => {}
        Err(error) => return Err(error.into()),
    }
    let write_key = tenants.create_key(DEFAULT_TENANT, KeyKind::Write).await?;
    let read_key = tenants.create_key(DEFAULT_TENANT, KeyKind::Read).await?;
    let admin_token = tenants.create_admin_token().await?;
    let credentials = Credentials {
        tenant: DEFAULT_TENANT,
        write_key: &write_key.secret,
        read_key: &read_key.secret,
        admin_token: &admin_token,
    };
    let path = data_dir.join(CREDENTIALS_FILE);
    write_private(&path, &serde_json::to_vec_pretty(&credentials)?)
        .with_context(|| format!("writing {}", path.display()))?;
    table
        .write(
            TableName::Control,
            vec![WriteOp::Put {
                key: marker,
                item: Item::from([(
                    "at".to_owned(),
                    Value::N(shoal_schemas::time::now_millis() as f64),
                )]),
            }],
        )
        .await?;
    println!(
        "shoal: first start — created tenant {DEFAULT_TENANT:?}\n  write key:   {}\n  read key:    {}\n  admin token: {}\n  (shown once; a copy is in {}, readable only by you)",
        write_key.secret,
        read_key.secret,
        admin_token,
        path.display()
    );
    Ok(Some(path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
