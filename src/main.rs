//! The `weir` command: run the pooler, check a configuration, or start a demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A PostgreSQL connection pooler and router.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// The configuration file (TOML); every key can be overridden with WEIR_<TABLE>__<KEY>.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 if it is usable, 1 with the reason if not.
    #[arg(long, requires = "config")]
    check: bool,
    /// What to do instead of running the pooler.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a throwaway PostgreSQL primary and replica with weir in front, print how to
    /// connect, and clean everything up on Ctrl-C.
    Demo {
        /// Where weir listens.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
    },
    /// Print a weir.toml equivalent to a pgbouncer.ini (and its userlist.txt) on stdout, with a
    /// warning on stderr for every setting that cannot be carried over.
    #[command(name = "import-pgbouncer")]
    ImportPgbouncer {
        /// PgBouncer's configuration file.
        ini: PathBuf,
        /// PgBouncer's auth file; default: the ini's auth_file, if it can be read.
        userlist: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match (&cli.command, &cli.config) {
        (Some(Command::Demo { listen }), _) => {
            runtime(0).and_then(|rt| rt.block_on(weir::demo::run(listen)))
        }
        (Some(Command::ImportPgbouncer { ini, userlist }), _) => {
            weir::import::run(ini, userlist.as_deref())
        }
        (None, Some(path)) => match load(path, cli.check) {
            Ok(Some(config)) => {
                runtime(config.listen.workers).and_then(|rt| rt.block_on(run(config, path)))
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        (None, None) => {
            Err("no configuration given: use `weir --config etc/weir.toml` (or `weir demo`)".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weir: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `WEIR_LOG` filters (default `info`), `WEIR_LOG_FORMAT=json` writes one
/// JSON object per line instead of the human format.
fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("WEIR_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("human") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(
                "WEIR_LOG_FORMAT={other} is not human or json: logging in the human format"
            );
        }
    }
}

/// The multi-threaded runtime with `workers` threads (0: one per CPU core, tokio's default,
/// which `TOKIO_WORKER_THREADS` can still change).
fn runtime(workers: u32) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers as usize);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Loads and checks the configuration; `None` when only checking was asked for.
fn load(path: &std::path::Path, check_only: bool) -> Result<Option<weir::config::Config>, String> {
    let config = weir::config::load(path).map_err(|e| e.to_string())?;
    let warnings = weir::check(&config).map_err(|e| e.to_string())?;
    for w in &warnings {
        eprintln!("weir: warning: {w}");
    }
    if check_only {
        println!("configuration {} is valid", path.display());
        return Ok(None);
    }
    Ok(Some(config))
}

async fn run(config: weir::config::Config, path: &std::path::Path) -> Result<(), String> {
    let weir = weir::Weir::start_from_file(config, path)
        .await
        .map_err(|e| e.to_string())?;
    let trigger = weir.shutdown_trigger();
    let reloader = trigger.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down gracefully");
        trigger.trigger();
    });
    tokio::spawn(reload_on_sighup(reloader));
    weir.wait().await;
    Ok(())
}

/// SIGHUP reloads the configuration file, as RELOAD does.
async fn reload_on_sighup(trigger: weir::ShutdownTrigger) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; use RELOAD on the admin console");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if let Err(e) = trigger.reload().await {
            tracing::error!("{e}");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop weir with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
