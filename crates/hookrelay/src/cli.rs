//! Commands and their help.

use std::path::PathBuf;

use crate::config::{Config, StoreKind};
use crate::keys;
use crate::output::out;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hookrelay_core::Secret;

/// hookrelay: a self-hosted server that delivers an app's events to Amazon SQS queues, Amazon SNS
/// topics and HTTP webhooks, configured through Stream Chat's app-settings API.
#[derive(Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// TOML configuration file (see hookrelay.example.toml). HOOKRELAY_* variables override it.
    #[arg(long, global = true, env = "HOOKRELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (store and server key); overrides the configuration.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the Stream-compatible API, ingest, and delivery to every enabled hook.
    ///
    /// On first start with an empty store, one app is created from HOOKRELAY_API_KEY and
    /// HOOKRELAY_API_SECRET when both are set, otherwise with generated credentials, printed once.
    Serve(ServeArgs),
    /// Manage apps: create and list them in the data directory; rotate the secret of, or delete,
    /// an app on a running server.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// See and operate hooks on a running server (--url, --api-key, --api-secret or their
    /// HOOKRELAY_* variables): list, status, pause, resume, replay, test.
    #[command(subcommand)]
    Hooks(crate::client::HooksCommand),
    /// List and replay a hook's dead letters on a running server.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(crate::client::DeadLettersCommand),
    /// Send events to a running server.
    #[command(subcommand)]
    Events(crate::client::EventsCommand),
    /// Print a server token (a JWT signed with the app's API secret), for curl:
    /// `-H "Authorization: $(hookrelay token)"`.
    Token(crate::client::TokenArgs),
    /// Print a shell completion script: `hookrelay completions bash > /etc/bash_completion.d/hookrelay`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Apply the store's schema migrations and exit (`serve` also applies them at start).
    Migrate,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, host:port (default 127.0.0.1:3030; a host name works too).
    #[arg(long)]
    listen: Option<crate::config::ListenAddr>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    /// Once listening, write the address taken (host:port) to this file: with `--listen
    /// 127.0.0.1:0` the system picks a free port, and whoever started the server reads it here.
    #[arg(long)]
    address_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum AppsCommand {
    /// Create an app and print its API key and secret (the secret is shown only this once).
    Create {
        /// The app's name.
        #[arg(long)]
        name: String,
    },
    /// List apps: id, name and API key (never the secret).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give the app a new, generated API secret on a running server and print it once. The old
    /// secret stops working at once (within seconds on other nodes), or after `--keep-previous`.
    RotateSecret {
        /// Let the old secret keep authenticating for this long (e.g. "24h"), so clients can
        /// move to the new one without an outage. Deliveries are signed with the new one at once.
        #[arg(long, value_parser = humantime::parse_duration)]
        keep_previous: Option<std::time::Duration>,
        #[command(flatten)]
        remote: crate::client::Remote,
    },
    /// Delete the app on a running server, with its hooks, their backlogs, dead letters and
    /// events. Cannot be undone.
    Delete {
        #[command(flatten)]
        remote: crate::client::Remote,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

impl Cli {
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Completions { shell } => {
                // Into memory first: clap_complete panics when its writer fails (a closed pipe).
                let mut script = Vec::new();
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "hookrelay", &mut script);
                let mut stdout = std::io::stdout().lock();
                std::io::Write::write_all(&mut stdout, &script)?;
                return std::io::Write::flush(&mut stdout).map_err(Into::into);
            }
            Command::Token(args) => return crate::client::token(args),
            _ => {}
        }
        let mut config = Config::load(self.global.config.as_deref()).context("configuration")?;
        if let Some(dir) = self.global.data_dir {
            config.data_dir = dir;
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        match self.command {
            Command::Serve(args) => {
                if let Some(listen) = args.listen {
                    config.listen = listen;
                }
                config.log_json |= args.log_json;
                runtime.block_on(crate::run::serve(config, args.address_file))
            }
            Command::Apps(cmd) => runtime.block_on(apps(config, cmd)),
            Command::Hooks(cmd) => runtime.block_on(crate::client::hooks(cmd)),
            Command::DeadLetters(cmd) => runtime.block_on(crate::client::dead_letters(cmd)),
            Command::Events(cmd) => runtime.block_on(crate::client::events(cmd)),
            Command::Migrate => runtime.block_on(migrate(config)),
            Command::Token(_) | Command::Completions { .. } => unreachable!("handled above"),
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    match config.store {
        StoreKind::Sqlite => {
            // Opening the file runs its migrations.
            crate::store::open(&config).await?;
            out!("{}: schema up to date", config.database_path().display());
        }
        StoreKind::Postgres => {
            let ran = hookrelay_store::postgres::migrate(crate::store::database_url(&config)?)
                .await
                .context("migrating PostgreSQL")?;
            out!("PostgreSQL: {ran} migration(s) applied; schema up to date");
        }
    }
    Ok(())
}

async fn apps(config: Config, cmd: AppsCommand) -> anyhow::Result<()> {
    match cmd {
        AppsCommand::RotateSecret {
            keep_previous,
            remote,
        } => crate::client::rotate_secret(remote, keep_previous).await?,
        AppsCommand::Delete { remote, yes } => crate::client::delete_app(remote, yes).await?,
        AppsCommand::Create { name } => {
            let store = crate::store::open(&config).await?;
            let (key, secret) = (keys::new_api_key(), keys::new_api_secret());
            let app = store
                .create_app(&name, &key, &Secret::new(secret.clone()))
                .await?;
            out!("created app {} ({})", app.id, app.name);
            out!("api key:    {key}");
            out!("api secret: {secret}");
            out!("(the secret is not shown again)");
        }
        AppsCommand::List { json } => {
            let store = crate::store::open(&config).await?;
            let apps = store.list_apps().await?;
            if json {
                let list: Vec<_> = apps
                    .iter()
                    .map(|a| serde_json::json!({"id": a.id, "name": a.name, "api_key": a.api_key}))
                    .collect();
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                out!("{:<6} {:<14} NAME", "ID", "API KEY");
                for a in apps {
                    out!("{:<6} {:<14} {}", a.id, a.api_key, a.name);
                }
            }
        }
    }
    Ok(())
}
