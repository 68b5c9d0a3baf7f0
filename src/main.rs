//! The `association-service` command: `serve`, `migrate`, and the bulk
//! `import` / `export` client (`transfer/`, a module of the binary only:
//! clap and indicatif stay out of the library).
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use association_service::config::Settings;
use association_service::server;
use clap::{Parser, Subcommand};

mod transfer;

use association_service::domain::ErrorKind;
use association_service::files::Format;

#[derive(Parser)]
#[command(
    name = "association-service",
    version,
    about = "CRM record associations with transactional per-record limits: a gRPC API, \
             a HubSpot-compatible REST gateway, and bulk import and export",
    after_help = "Examples:\n  \
        association-service serve\n  \
        association-service --config prod.toml migrate\n  \
        association-service import rows.csv --portal 1\n  \
        association-service export --portal 1 --output rows.jsonl\n\n\
        Settings: compiled defaults, then --config FILE (or ASSOC_CONFIG), then \
        ASSOC__SECTION__KEY environment variables; the README lists every key."
)]
struct Cli {
    /// A TOML configuration file; ASSOC__SECTION__KEY environment variables override it.
    #[arg(long, global = true, env = "ASSOC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The server of the client subcommands.
const SERVER_HELP: &str =
    "The service's gRPC endpoint, e.g. http://127.0.0.1:50051 (or 127.0.0.1:50051: http:// is assumed) [default: http:// and the configured server.grpc_addr]";

#[derive(Subcommand)]
enum Command {
    /// Applies pending migrations, then serves the gRPC API on server.grpc_addr
    /// and the HubSpot-compatible REST gateway on gateway.http_addr.
    #[command(after_help = "Examples:\n  \
        association-service serve\n  \
        ASSOC__STORE__URL=postgres://postgres@127.0.0.1/associations association-service serve\n  \
        association-service --config prod.toml serve\n\n\
        The addresses come from the configuration: ASSOC__SERVER__GRPC_ADDR and \
        ASSOC__GATEWAY__HTTP_ADDR, or server.grpc_addr and gateway.http_addr in --config FILE.")]
    Serve {
        /// Not an option: refused with where the addresses are set.
        #[arg(long, hide = true, value_name = "PORT")]
        port: Option<String>,
    },
    /// Applies pending migrations to the configured store, says which, and exits.
    #[command(after_help = "Example:\n  \
        ASSOC__STORE__URL=postgres://postgres@127.0.0.1/associations association-service migrate")]
    Migrate,
    /// Checks every invariant of the configured store in one snapshot (a live
    /// PostgreSQL included): inverse rows, counters, primaries, types, the
    /// change feed and the admin log. Prints each check; exits 1 on a violation.
    #[command(after_help = "Example:\n  \
        ASSOC__STORE__URL=postgres://postgres@127.0.0.1/associations association-service verify")]
    Verify,
    /// Asks a running service's gRPC health check; exits 0 when it serves,
    /// 1 when it answers that it does not, 69 when it cannot be reached.
    #[command(after_help = "Example:\n  \
        association-service health --server http://127.0.0.1:50051")]
    Health {
        #[arg(long, value_name = "URL", help = SERVER_HELP)]
        server: Option<String>,
        /// The health service to ask: empty for the overall status (readiness), or `liveness`.
        #[arg(long, default_value = "", value_name = "NAME")]
        service: String,
    },
    /// Imports associations from a CSV or JSON Lines file through a running service.
    /// Rows already stored are left as they are; exits with status 1 when any
    /// row failed (each is listed with its line).
    #[command(after_help = "Examples:\n  \
        association-service import rows.csv --portal 1\n  \
        association-service import export-of-portal-7.jsonl --portal 8 --create-labels\n\n\
        Columns (CSV header, or JSON keys): from_object_type, from_object_id, \
        to_object_type, to_object_id, association_category, association_type_id, label. \
        Ids may be numbers or strings (\"706\").")]
    Import {
        /// The file; `.csv` is read as CSV, anything else as JSON Lines (see --format).
        file: PathBuf,
        /// The portal (HubSpot account id) to import into.
        #[arg(long, value_name = "ID")]
        portal: i64,
        #[arg(long, value_name = "URL", help = SERVER_HELP)]
        server: Option<String>,
        /// The file's format [default: csv for a .csv file, jsonl otherwise].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Rows per message sent to the service (1 to 2000).
        #[arg(long, default_value_t = 1000, value_name = "ROWS",
              value_parser = clap::value_parser!(u64)
                  .range(1..=association_service::service::MAX_WRITE_INPUTS as u64))]
        batch_size: u64,
        /// The bearer token to send, when the service requires one.
        #[arg(
            long,
            env = "ASSOC_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        token: Option<String>,
        /// Creates the labels that rows name but the portal lacks (by label
        /// text, from the file's `label` column), instead of failing those rows.
        #[arg(long)]
        create_labels: bool,
        /// Continues an import that stopped, after the rows the service had
        /// acknowledged (kept in FILE.import-progress while it runs).
        #[arg(long)]
        resume: bool,
    },
    /// Exports a portal's association rows (both directions) through a running
    /// service; the output imports back unchanged.
    #[command(after_help = "Examples:\n  \
        association-service export --portal 1 --output rows.jsonl\n  \
        association-service export --portal 1 --from-object-type deals --to-object-type contacts --format csv")]
    Export {
        /// The portal (HubSpot account id) to export.
        #[arg(long, value_name = "ID")]
        portal: i64,
        #[arg(long, value_name = "URL", help = SERVER_HELP)]
        server: Option<String>,
        /// Keep only rows from this object type (id or name).
        #[arg(long, value_name = "TYPE")]
        from_object_type: Option<String>,
        /// Keep only rows to this object type (id or name).
        #[arg(long, value_name = "TYPE")]
        to_object_type: Option<String>,
        /// The output's format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// The bearer token to send, when the service requires one.
        #[arg(
            long,
            env = "ASSOC_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        token: Option<String>,
        /// Where to write [default: standard output].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Transfer(#[from] transfer::TransferError),
    #[error("cannot verify the store: {0}")]
    Verify(#[from] association_service::service::ServiceError),
    #[error("{} failed", transfer::rows(*.count))]
    RowsFailed { count: u64 },
    #[error("{failed} of {checks} checks found violations")]
    Violations { failed: usize, checks: usize },
    #[error("the service reports {status}")]
    NotServing { status: String },
    /// A command line the command cannot run with.
    #[error("{0}")]
    Usage(String),
    #[error("interrupted")]
    Interrupted,
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Server(err) => err.kind(),
            Failure::Transfer(err) => err.kind(),
            Failure::RowsFailed { .. }
            | Failure::NotServing { .. }
            | Failure::Violations { .. }
            | Failure::Usage(_)
            | Failure::Interrupted => ErrorKind::InvalidArgument,
            Failure::Verify(err) => err.kind(),
        }
    }
}

/// Whether the command failed because the configured store does not exist.
fn missing_store(err: &Failure) -> bool {
    matches!(err, Failure::Server(server::ServerError::Store { source, .. }) if source.is_missing_store())
}

/// The exit status of a failed command: 2 for a configuration refused at
/// start, 69 (sysexits' EX_UNAVAILABLE) when something it needs cannot be
/// reached, so scripts can retry; 1 otherwise.
fn exit_code(err: &Failure) -> ExitCode {
    // A configuration the service refuses to serve with, like one it cannot
    // load, exits 2.
    if let Failure::Server(server::ServerError::Insecure { .. } | server::ServerError::Config(_)) =
        err
    {
        return ExitCode::from(2);
    }
    // A store the configuration names that does not exist is misconfigured,
    // and a command line the command cannot run with is a usage error.
    if missing_store(err) || matches!(err, Failure::Usage(_)) {
        return ExitCode::from(2);
    }
    // Like a shell's status for a command ended by SIGINT.
    if matches!(err, Failure::Interrupted) {
        return ExitCode::from(130);
    }
    match err.kind() {
        ErrorKind::Unavailable => ExitCode::from(69),
        _ => ExitCode::FAILURE,
    }
}

/// Caps glibc's malloc at two arenas unless `MALLOC_ARENA_MAX` says
/// otherwise. glibc gives threads arenas of their own (up to eight per
/// core), and memory a burst of writes freed stays resident in them; two
/// keep the server's memory near what it holds for two cores' work.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cap_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one of the allocator's parameters; it is
        // called first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    // The settings, and the credentials they name read and checked, before
    // any command runs: a bad tokens or key file stops every command alike.
    let settings = match Settings::load(cli.config.as_deref()).and_then(|settings| {
        association_service::auth::Authenticator::from_settings(&settings.auth)?;
        Ok(settings)
    }) {
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
    let result = runtime.block_on(run(cli.command, settings));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("association-service: {err}");
            if missing_store(&err) {
                eprintln!(
                    "association-service: the store does not exist; `association-service migrate` creates and migrates it (a PostgreSQL database must be created first: createdb)"
                );
            }
            exit_code(&err)
        }
    }
}

/// Runs one command with the loaded settings.
async fn run(command: Command, settings: Settings) -> Result<(), Failure> {
    let default_server = format!("http://{}", settings.server.grpc_addr);
    let connect = |server: Option<String>, token: Option<String>| transfer::Connection {
        server: server.unwrap_or_else(|| default_server.clone()),
        token,
    };
    match command {
        Command::Migrate => {
            server::open_store(&settings).await?;
        }
        Command::Verify => verify(&settings).await?,
        Command::Health { server, service } => {
            let status = transfer::health(&connect(server, None), &service).await?;
            println!("{status}");
            if status != "SERVING" {
                return Err(Failure::NotServing { status });
            }
        }
        Command::Serve { port: Some(port) } => {
            return Err(Failure::Usage(format!(
                "serve takes its addresses from the configuration, not --port {port}: set ASSOC__SERVER__GRPC_ADDR=127.0.0.1:{port} (gRPC) or ASSOC__GATEWAY__HTTP_ADDR=127.0.0.1:{port} (REST), or server.grpc_addr / gateway.http_addr in --config FILE"
            )));
        }
        Command::Serve { port: None } => {
            let listeners = server::bind(&settings).await?;
            server::serve(settings, listeners, shutdown_signal()).await?;
        }
        Command::Import {
            file,
            portal,
            server,
            format,
            batch_size,
            token,
            create_labels,
            resume,
        } => {
            let job = transfer::ImportJob {
                portal,
                path: file,
                format,
                batch_size: batch_size as usize,
                create_labels,
                resume,
            };
            import(connect(server, token), job).await?;
        }
        Command::Export {
            portal,
            server,
            from_object_type,
            to_object_type,
            format,
            token,
            output,
        } => {
            let target = output
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "standard output".into());
            let connection = connect(server, token);
            let (from, to) = (from_object_type, to_object_type);
            let count = transfer::export(&connection, portal, from, to, format, output).await?;
            eprintln!("exported {} to {target}", transfer::rows(count));
        }
    }
    Ok(())
}

/// `verify`: every check's lines, then a failure when any found a violation.
async fn verify(settings: &Settings) -> Result<(), Failure> {
    let store = server::connect_existing_store(settings).await?;
    eprintln!(
        "verifying the {} store at {} (one snapshot)",
        store.backend(),
        association_service::config::redacted_url(&settings.store.url)
    );
    let reports = association_service::service::verify_store(store.as_ref()).await?;
    for report in &reports {
        for line in report.lines() {
            println!("{line}");
        }
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        return Err(Failure::Violations {
            failed,
            checks: reports.len(),
        });
    }
    eprintln!("all {} checks passed", reports.len());
    Ok(())
}

/// `import`: the file through the service, then what was stored and why
/// rows failed; however it stops (an error, Ctrl-C), it says what the
/// service had stored and where `--resume` continues.
async fn import(connection: transfer::Connection, job: transfer::ImportJob) -> Result<(), Failure> {
    let name = job.path.display().to_string();
    let stored = Arc::new(Mutex::new(None));
    let import = transfer::import(&connection, job, Arc::clone(&stored));
    let stopped = |why: &str| {
        if let Some(stored) = stored.lock().expect("not poisoned").as_ref() {
            eprintln!(
                "association-service: {why} importing {name}: {}; `import --resume` continues after line {}",
                stored.describe(),
                stored.through_line
            );
        }
    };
    let summary = tokio::select! {
        summary = import => match summary {
            Ok(summary) => summary,
            Err(err) => {
                stopped("stopped");
                return Err(err.into());
            }
        },
        _ = tokio::signal::ctrl_c() => {
            stopped("interrupted");
            return Err(Failure::Interrupted);
        }
    };
    for line in &summary.labels_created {
        eprintln!("{line}");
    }
    for line in summary.grouped_errors() {
        eprintln!("{line}");
    }
    if let Some(line) = summary.resumed_after {
        eprintln!("resumed {name} after line {line}");
    }
    eprintln!("imported {name}: {}", summary.describe());
    if summary.failed > 0 {
        return Err(Failure::RowsFailed {
            count: summary.failed,
        });
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, before the server says it is ready, so a signal sent once the
/// ready line is out always means a graceful shutdown (installed on the
/// future's first poll, a SIGTERM in between killed the process).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |handler: Option<tokio::signal::unix::Signal>| async move {
                match handler {
                    Some(mut handler) => {
                        handler.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {},
                _ = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument says what it is for, and every subcommand
    /// shows an example.
    #[test]
    fn every_flag_has_help_and_every_subcommand_an_example() {
        let cli = Cli::command();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            let after = command
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains(&format!("association-service {name}"))
                    || after.contains(&format!(" {name}\n"))
                    || after.contains(&format!(" {name}")),
                "`{name}` shows an example"
            );
            assert!(command.get_about().is_some(), "`{name}` says what it does");
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "`{name} --{}` has help",
                    arg.get_id()
                );
            }
        }
        cli.debug_assert();
    }
}
