//! The command line: `shoal [serve]` runs the product; other subcommands inspect a data
//! directory.

use crate::config::{Config, Role};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "shoal", version, about = "Event-sourced analytics backend")]
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
    /// Rules documents (health scores and lifecycle stages; see docs/rules.md).
    #[command(subcommand)]
    Rules(RulesCommand),
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

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Check a rules document (JSON for `.json`, YAML otherwise) with the server's validation;
    /// errors name the field, line and column.
    Validate {
        /// The document.
        file: PathBuf,
    },
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
        Some(Command::Serve(args)) => crate::serve::run(args.resolve()?).await,
        Some(Command::Dump { data_dir }) => crate::dump::run(&data_dir).await,
        Some(Command::Rules(RulesCommand::Validate { file })) => validate_rules(&file),
        Some(Command::Aws(AwsCommand::Init(args))) => aws_init(&args.resolve()?).await,
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

fn validate_rules(file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let format = shoal_rules::Format::from_path(file);
    let rules = shoal_rules::parse(&text, format)
        .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let document = rules.document();
    println!(
        "{}: valid ({} conditions, {} stages, {} scorecards)",
        file.display(),
        document.conditions.len(),
        document.stages.len(),
        document.scorecards.len()
    );
    Ok(())
}
