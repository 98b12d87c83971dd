//! The `junction` binary.

use clap::Parser;
use junction::cli::{Cli, Command, ServeArgs, normalize_args};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc malloc: the broker allocates small, short-lived
/// buffers per message on several threads, and glibc spent ~15% of the
/// server's CPU in `_int_malloc`/`malloc_consolidate` on the durable pull
/// path. Its options (two arenas, 1 s decay) are in `.cargo/config.toml`;
/// mimalloc was tried too and doubled peak RSS. docs/performance.md has the
/// figures.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging(config: &junction::Config) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => default_filter(&config.log_level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A reload changes the level through the subscriber's reload handle.
    macro_rules! reloadable {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            junction::reload::set_log_level_hook(Box::new(move |level: &str| {
                handle
                    .reload(default_filter(level))
                    .map_err(|e| format!("log_level: {e}"))
            }));
            builder.init();
        }};
    }
    match &config.log_file {
        Some(path) => {
            // Reopened on SIGUSR1 (`junction --signal reopen`).
            let file = junction::log_file::LogFile::start(path)?;
            reloadable!(builder.with_ansi(false).with_writer(file));
        }
        None => reloadable!(
            builder
                .with_ansi(colour_on_stderr())
                .with_writer(std::io::stderr)
        ),
    }
    Ok(())
}

/// The filter for `log_level` when `RUST_LOG` is unset.
fn default_filter(level: &str) -> EnvFilter {
    // fjall's own info lines ("Recovering database at …") are not the
    // operator's business; RUST_LOG can still ask for them. openraft logs
    // every failed RPC to a node that is down at ERROR, again and again;
    // the meta group logs membership changes and lost quorum itself.
    EnvFilter::new(format!(
        "{},fjall=warn,lsm_tree=warn,openraft=off",
        level.to_ascii_lowercase()
    ))
}

/// Colours only for a person at a terminal: never in a file or a pipe, and never
/// when `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn serve(args: &ServeArgs) -> ExitCode {
    if let Some(signal) = &args.signal {
        return junction::lame_duck::send_signal(signal, args);
    }
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("junction: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("junction: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("junction: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let log_to_file = config.log_file.is_some();
    let again = args.clone();
    let loader: junction::reload::ConfigLoader = Box::new(move || again.load());
    match runtime.block_on(junction::run_with_loader(config, loader)) {
        Ok(()) if junction::restart_requested() => {
            // `junction cluster join`: the same process runs again, with the
            // same arguments, once everything was shut down and flushed.
            drop(runtime);
            restart_in_place()
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr; the log file, when there is one, gets it too.
            if log_to_file {
                tracing::error!("{e}");
            }
            eprintln!("junction: {e}");
            ExitCode::from(2)
        }
    }
}

/// Replaces this process with a new run of the same binary and arguments (the
/// same process id, so supervisors and PID files keep tracking it).
fn restart_in_place() -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("junction: cannot restart: {e}");
                return ExitCode::from(1);
            }
        };
        let e = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec();
        eprintln!("junction: cannot restart: {e}");
        ExitCode::from(1)
    }
    #[cfg(not(unix))]
    {
        eprintln!("junction: stopped to restart; start it again");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    junction::tls::install_crypto_provider();
    let cli = match Cli::try_parse_from(normalize_args(std::env::args())) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match &cli.command {
        Some(Command::Version) => {
            println!("junction: v{}", junction::VERSION);
            ExitCode::SUCCESS
        }
        Some(Command::Bench(args)) => junction::bench::main(args),
        Some(Command::Health(args)) => junction::health::main(args),
        Some(Command::LameDuck(args)) => junction::lame_duck::main(args),
        Some(Command::Cluster(args)) => junction::cluster_cli::main(args),
        Some(Command::Passwd(args)) => junction::passwd::main(args),
        Some(Command::Serve(args)) => {
            if args.version {
                println!("junction: v{}", junction::VERSION);
                return ExitCode::SUCCESS;
            }
            serve(args)
        }
        None => {
            if cli.serve.version {
                println!("junction: v{}", junction::VERSION);
                return ExitCode::SUCCESS;
            }
            serve(&cli.serve)
        }
    }
}
