//! The `association-service` command: `serve`, `migrate`, and the bulk
//! `import` / `export` client (`transfer.rs`, a module of the binary only:
//! clap and indicatif stay out of the library).
use std::path::PathBuf;
use std::process::ExitCode;

use association_service::config::Settings;
use association_service::server;
use clap::{Parser, Subcommand};

mod transfer;

use association_service::domain::ErrorKind;
use transfer::Format;

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
    /// Asks a running service's gRPC health check; exits 0 when it serves,
    /// 1 when it answers that it does not, 69 when it cannot be reached.
    ///
    /// Example: association-service health --server http://127.0.0.1:50051
    Health {
        /// The service's gRPC endpoint (default: the configured server.grpc_addr).
        #[arg(long)]
        server: Option<String>,
        /// The health service to ask: empty for the overall status, or `liveness`.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Imports associations from a CSV or JSON Lines file through a running service.
    /// Exits with status 1 when any row failed (all are listed).
    Import {
        /// The file; `.csv` is read as CSV, anything else as JSON Lines.
        file: PathBuf,
        #[arg(long)]
        portal: i64,
        /// The service's gRPC endpoint (default: the configured server.grpc_addr).
        #[arg(long)]
        server: Option<String>,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Rows per message sent to the service (at most 2000).
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
    /// Exports a portal's association rows (both directions) through a running service.
    Export {
        #[arg(long)]
        portal: i64,
        #[arg(long)]
        server: Option<String>,
        /// Keep only rows from this object type.
        #[arg(long)]
        from_object_type: Option<String>,
        /// Keep only rows to this object type.
        #[arg(long)]
        to_object_type: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Where to write (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Transfer(#[from] transfer::TransferError),
    #[error("{count} {rows} failed", rows = if *.count == 1 { "row" } else { "rows" })]
    RowsFailed { count: u64 },
    #[error("the service reports {status}")]
    NotServing { status: String },
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Server(err) => err.kind(),
            Failure::Transfer(err) => err.kind(),
            Failure::RowsFailed { .. } | Failure::NotServing { .. } => ErrorKind::InvalidArgument,
        }
    }
}

/// The exit status of a failed command: 69 (sysexits' EX_UNAVAILABLE) when
/// something it needs cannot be reached, so scripts can retry; 1 otherwise.
fn exit_code(err: &Failure) -> ExitCode {
    match err.kind() {
        ErrorKind::Unavailable => ExitCode::from(69),
        _ => ExitCode::FAILURE,
    }
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("association-service: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The trace exporter's client runs on this runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        association_service::telemetry::init(&settings.log, &settings.telemetry)
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("association-service: {err}");
            return ExitCode::from(2);
        }
    };
    let default_server = format!("http://{}", settings.server.grpc_addr);
    let result: Result<(), Failure> = runtime.block_on(async {
        match cli.command {
            Command::Migrate => {
                let store = server::open_store(&settings).await?;
                tracing::info!("migrations applied to the {} store", store.backend());
            }
            Command::Health { server, service } => {
                let server = server.unwrap_or(default_server);
                let status = transfer::health(&server, &service).await?;
                println!("{status}");
                if status != "SERVING" {
                    return Err(Failure::NotServing { status });
                }
            }
            Command::Serve => {
                let listeners = server::bind(&settings).await?;
                server::serve(settings, listeners, shutdown_signal()).await?;
            }
            Command::Import {
                file,
                portal,
                server,
                format,
                batch_size,
            } => {
                let name = file.display().to_string();
                let server = server.unwrap_or(default_server);
                let summary = transfer::import(&server, portal, file, format, batch_size).await?;
                for (line, message) in &summary.errors {
                    eprintln!("line {line}: {message}");
                }
                eprintln!(
                    "imported {name}: {} rows, {} succeeded, {} failed",
                    summary.rows, summary.succeeded, summary.failed
                );
                if summary.failed > 0 {
                    return Err(Failure::RowsFailed {
                        count: summary.failed,
                    });
                }
            }
            Command::Export {
                portal,
                server,
                from_object_type,
                to_object_type,
                format,
                output,
            } => {
                let target = output
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "stdout".into());
                let server = server.unwrap_or(default_server);
                let count = transfer::export(
                    &server,
                    portal,
                    from_object_type,
                    to_object_type,
                    format,
                    output,
                )
                .await?;
                eprintln!("exported {count} rows to {target}");
            }
        }
        Ok(())
    });
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("association-service: {err}");
            exit_code(&err)
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
