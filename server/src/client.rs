//! Talking to a running server: where it is, which secret to present, and HTTP answers turned
//! into an operator's messages.
//!
//! Secrets are found in this order: the flag (`--token`, `--key`), then its environment
//! variable (`SHOAL_ADMIN_TOKEN`, `SHOAL_KEY`), then `<data dir>/credentials.json`, which a
//! server writes on its first start; a client on the same machine as the server needs nothing.

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long a connection may take to open: a server that does not answer in this long is not
/// going to.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, end to end (an import batch waits for its fsync).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and how to authenticate, shared by every client subcommand.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "SHOAL_SERVER",
        default_value = "http://127.0.0.1:8750",
        value_name = "URL"
    )]
    pub server: String,
    /// The admin token [default: admin_token of <DATA_DIR>/credentials.json].
    #[arg(long, global = true, env = "SHOAL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A tenant's key: a read key for `status`, a write key for `import` [default: read_key or
    /// write_key of <DATA_DIR>/credentials.json].
    #[arg(long, global = true, env = "SHOAL_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A server's data directory, only read for its credentials.json when no token or key is
    /// given.
    #[arg(
        long,
        global = true,
        env = "SHOAL_DATA_DIR",
        default_value = "./shoal-data",
        value_name = "DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Print the server's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Which secret a request presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    Admin,
    ReadKey,
    WriteKey,
}

impl Secret {
    fn credentials_field(self) -> &'static str {
        match self {
            Secret::Admin => "admin_token",
            Secret::ReadKey => "read_key",
            Secret::WriteKey => "write_key",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Secret::Admin => "--token (or SHOAL_ADMIN_TOKEN)",
            Secret::ReadKey | Secret::WriteKey => "--key (or SHOAL_KEY)",
        }
    }
}

/// An HTTP client bound to one server and one secret.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl Client {
    pub fn new(args: &ClientArgs, secret: Secret) -> anyhow::Result<Client> {
        let given = match secret {
            Secret::Admin => args.token.clone(),
            Secret::ReadKey | Secret::WriteKey => args.key.clone(),
        };
        let secret = match given {
            Some(value) => value,
            None => from_credentials(args, secret)?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("shoal-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
            secret,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (which starts with `/`) carrying the secret.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.secret)
    }

    /// Sends the request; a server that cannot be reached is an error that says so.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request
            .send()
            .await
            .map_err(|error| unreachable(&self.base, &error))
    }

    /// Sends the request and returns the JSON body of a success (`Null` for an empty one), or
    /// the server's error as an error.
    pub async fn call(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(request).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| unreachable(&self.base, &error))?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the server answered {status} with a body that is not JSON"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(self.request(Method::POST, path).json(body)).await
    }
}

fn from_credentials(args: &ClientArgs, secret: Secret) -> anyhow::Result<String> {
    let path = args.data_dir.join("credentials.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "no credentials: give {} or --data-dir of a server that wrote credentials.json ({} does not exist)",
            secret.flag(),
            path.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    json[secret.credentials_field()]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "{} has no {}; give {}",
                path.display(),
                secret.credentials_field(),
                secret.flag()
            )
        })
}

fn unreachable(base: &str, error: &reqwest::Error) -> anyhow::Error {
    // reqwest's own message is "error sending request for url (...)"; its cause says why.
    let mut cause = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if error.is_timeout() {
        anyhow!("shoal at {base} did not answer in time: {cause}")
    } else {
        anyhow!("cannot reach shoal at {base}: {cause}")
    }
}

/// The server's JSON error (`{"error": {"code", "message", "field"?}}`) as one line.
pub fn http_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(error) = parsed
        .as_ref()
        .map(|json| &json["error"])
        .filter(|e| e.is_object())
    else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return if text.is_empty() {
            anyhow!("server answered {status}")
        } else {
            anyhow!("server answered {status}: {}", truncate(text, 300))
        };
    };
    let mut line = format!(
        "server answered {status}: {}",
        error["message"].as_str().unwrap_or("(no message)")
    );
    if let Some(code) = error["code"].as_str() {
        line.push_str(&format!(" [code {code}"));
        if let Some(field) = error["field"].as_str() {
            line.push_str(&format!(", field {field}"));
        }
        if let (Some(at), Some(column)) = (error["line"].as_u64(), error["column"].as_u64()) {
            line.push_str(&format!(", line {at} column {column}"));
        }
        line.push(']');
    }
    if status == StatusCode::UNAUTHORIZED {
        line.push_str(" — check the token or key (and that it belongs to this server)");
    }
    anyhow!(line)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Escapes one path segment (tenant ids and versions are plain, but a typo should not turn
/// into another route).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_as_one_line() {
        let body =
            br#"{"error":{"code":"invalid_value","field":"id","message":"tenant id must be short"}}"#;
        let text = http_error(StatusCode::BAD_REQUEST, body).to_string();
        assert_eq!(
            text,
            "server answered 400 Bad Request: tenant id must be short [code invalid_value, field id]"
        );
        let text = http_error(StatusCode::BAD_GATEWAY, b"upstream gone").to_string();
        assert_eq!(text, "server answered 502 Bad Gateway: upstream gone");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("acme-1"), "acme-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn credentials_file_is_the_last_resort() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("credentials.json"),
            r#"{"tenant":"default","write_key":"w","read_key":"r","admin_token":"a"}"#,
        )
        .unwrap();
        let mut args = ClientArgs {
            server: "http://127.0.0.1:1/".into(),
            token: None,
            key: None,
            data_dir: dir.path().to_path_buf(),
            json: false,
        };
        assert_eq!(from_credentials(&args, Secret::Admin).unwrap(), "a");
        assert_eq!(from_credentials(&args, Secret::WriteKey).unwrap(), "w");
        args.token = Some("given".into());
        let client = Client::new(&args, Secret::Admin).unwrap();
        assert_eq!(client.secret, "given");
        assert_eq!(client.base(), "http://127.0.0.1:1");
        args.data_dir = dir.path().join("missing");
        let error = from_credentials(&args, Secret::ReadKey).unwrap_err();
        assert!(error.to_string().contains("--key"), "{error}");
    }
}
