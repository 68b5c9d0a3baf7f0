//! The `association-service` command: `serve` and `migrate`.
use std::path::PathBuf;
use std::process::ExitCode;

use association_service::config::Settings;
use association_service::server;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "association-service",
    version,
    about = "CRM record associations with transactional limits, over gRPC"
)]
struct Cli {
    /// A TOML configuration file (environment variables ASSOC__… override it).
    #[arg(long, global = true, env = "ASSOC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies migrations and serves the gRPC API.
    Serve,
    /// Applies pending migrations to the configured store and exits.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("association-service: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("association-service: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate => {
                let store = server::open_store(&settings).await?;
                tracing::info!("migrations applied to the {} store", store.backend());
                Ok(())
            }
            Command::Serve => {
                let listener = server::bind(&settings).await?;
                server::serve(settings, listener, shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("association-service: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
