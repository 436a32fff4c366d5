//! The command line: `shoal [serve]` runs the product; `dump` and `aws init` work on storage
//! directly; the operator's subcommands (`status`, `tenants`, `keys`, `rules`, `dlq`,
//! `replay`, `import`) talk to a running server's HTTP API.

use crate::client::ClientArgs;
use crate::commands::dlq::DlqCommand;
use crate::commands::rules::RulesCommand;
use crate::commands::tenants::{KeysCommand, TenantsCommand};
use crate::config::{Config, Role};
use crate::import::ImportArgs;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "Event-sourced analytics backend",
    after_help = "With no subcommand, shoal serves (like `shoal serve`). The operator's subcommands \
talk to a running server at --server (default http://127.0.0.1:8750); on the server's machine they \
find the admin token and keys in ./shoal-data/credentials.json (or --data-dir), so nothing needs \
configuring. `shoal <subcommand> --help` tells more."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "SHOAL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Print every event of a stopped server's log as NDJSON, with its shard and position.
    Dump {
        /// The data directory.
        #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
        data_dir: PathBuf,
    },
    /// Projections, their lag per shard, dead letters, and rebuilds in progress (rate, share
    /// done, time left); needs a read key.
    Status(ClientArgs),
    /// Create and list tenants (admin token).
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create and revoke a tenant's API keys (admin token).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rules documents: health scores and lifecycle stages (docs/rules.md); validate offline,
    /// apply, activate, abandon and list with the admin token.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Dead letters: events a projection could not apply; list and re-drive them (admin token).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rebuild a tenant's scores from the whole log: the live rules sent again as a new
    /// version, rebuilt beside the live one, which it replaces once caught up (admin token).
    Replay {
        /// The projection; only scores.<tenant> can be rebuilt while the server runs.
        #[arg(long, value_name = "scores.<TENANT>")]
        projection: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send NDJSON events (the format of POST /v1/events, one a line) from a file or stdin to
    /// a running server, in gzipped batches, with progress and a summary; safe to run again
    /// (write key).
    Import(ImportArgs),
    /// The AWS backend (Kinesis + DynamoDB, from the `[aws]` settings; see docs/aws.md).
    #[command(subcommand)]
    Aws(AwsCommand),
}

#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// Create the stream and the tables (with TTL where used) when missing and wait until they
    /// are active; safe to run twice.
    Init(ServeArgs),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// A TOML configuration file; every setting has a default, so it is optional.
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the log and tables live [default: ./shoal-data].
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The HTTP address [default: 127.0.0.1:8750].
    #[arg(long, env = "SHOAL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The roles of this process, comma-separated [default: ingest,projector,query]; split
    /// roles need the AWS backend.
    #[arg(long, env = "SHOAL_ROLES", value_enum, value_delimiter = ',')]
    pub roles: Option<Vec<Role>>,
}

impl ServeArgs {
    /// These arguments, each missing one taken from `outer`: the options given before the
    /// subcommand (`shoal --config c.toml serve`), which clap parses into the top-level
    /// arguments and which would otherwise be ignored in silence.
    pub fn or(self, outer: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config.or(outer.config),
            data_dir: self.data_dir.or(outer.data_dir),
            listen: self.listen.or(outer.listen),
            roles: self.roles.or(outer.roles),
        }
    }

    /// The configuration file (or the defaults) with command-line and environment overrides.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(roles) = &self.roles {
            config.roles = roles.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => crate::serve::run(cli.serve.resolve()?).await,
        Some(Command::Serve(args)) => crate::serve::run(args.or(cli.serve).resolve()?).await,
        Some(Command::Dump { data_dir }) => crate::dump::run(&data_dir).await,
        Some(Command::Aws(AwsCommand::Init(args))) => {
            aws_init(&args.or(cli.serve).resolve()?).await
        }
        Some(Command::Status(client)) => crate::commands::status::run(&client).await,
        Some(Command::Tenants { command, client }) => {
            crate::commands::tenants::tenants(&client, &command).await
        }
        Some(Command::Keys { command, client }) => {
            crate::commands::tenants::keys(&client, &command).await
        }
        Some(Command::Rules(command)) => crate::commands::rules::run(&command).await,
        Some(Command::Dlq { command, client }) => {
            crate::commands::dlq::run(&client, &command).await
        }
        Some(Command::Replay { projection, client }) => {
            crate::commands::rules::replay(&client, &projection).await
        }
        Some(Command::Import(args)) => crate::import::run(args).await,
    }
}

async fn aws_init(config: &Config) -> anyhow::Result<()> {
    let aws = config.aws.storage_config();
    aws.validate()?;
    let clients = shoal_storage::aws::AwsClients::connect(&aws).await?;
    shoal_storage::aws::init(&clients, &aws).await?;
    println!(
        "shoal: stream {} and tables {}-{{events,views,control}} are ready",
        aws.stream_name, aws.table_prefix
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Some(Command::Serve(args)) => args.or(cli.serve),
            None => cli.serve,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn options_before_serve_are_not_ignored() {
        let args = serve_args(&["shoal", "--config", "c.toml", "--data-dir", "d", "serve"]);
        assert_eq!(args.config, Some(PathBuf::from("c.toml")));
        assert_eq!(args.data_dir, Some(PathBuf::from("d")));
    }

    #[test]
    fn options_after_serve_win_over_those_before() {
        let args = serve_args(&[
            "shoal",
            "--data-dir",
            "outer",
            "serve",
            "--data-dir",
            "inner",
        ]);
        assert_eq!(args.data_dir, Some(PathBuf::from("inner")));
        let bare = serve_args(&["shoal", "--listen", "127.0.0.1:9000"]);
        assert_eq!(
            bare.listen,
            Some("127.0.0.1:9000".parse().expect("address"))
        );
    }
}
