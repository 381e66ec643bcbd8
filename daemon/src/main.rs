//! `workspaced` entry point: parses the command line, sets up logging and
//! hands over to the library.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use workspaced::config::{keys::KEYS, Config, LogFormat, Sources};

/// Exit code for bad usage or an invalid setting (EX_USAGE).
const EX_USAGE: u8 = 64;

fn cli() -> Command {
    let mut serve = Command::new("serve")
        .about("Serve terminals, files, ports and health for one workspace")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML config file (env WORKSPACED_CONFIG)"),
        );
    for key in KEYS.iter().filter(|k| k.flag && k.is_scalar()) {
        serve = serve.arg(
            Arg::new(key.name)
                .long(key.flag_name())
                .value_name("VALUE")
                .action(ArgAction::Set)
                .help(format!("{} (env {})", key.allowed(), key.env_name())),
        );
    }
    Command::new("workspaced")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The workspace daemon")
        .subcommand_required(true)
        .subcommand(serve)
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("workspaced: {msg}");
    ExitCode::from(EX_USAGE)
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) if e.use_stderr() => {
            let first = e.to_string();
            let line = first
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ");
            return usage_error(format!("{line} (see workspaced --help)"));
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match matches.subcommand() {
        Some(("serve", m)) => {
            let mut flags = BTreeMap::new();
            for id in m.ids() {
                if let Some(v) = m.get_one::<String>(id.as_str()) {
                    flags.insert(id.as_str().to_owned(), v.clone());
                }
            }
            let config = match Config::load(&Sources::from_process(flags)) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            // A devfile that asks for longer timeouts than the platform's is refused here.
            if let Err(e) = workspaced::idle::levels::from_config(&config) {
                return usage_error(e);
            }
            serve(config)
        }
        _ => usage_error("unknown subcommand (see workspaced --help)"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config) -> ExitCode {
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("workspaced: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %config.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        match workspaced::server::run(listener, config, workspaced::server::shutdown_signal()).await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "workspaced failed");
                ExitCode::FAILURE
            }
        }
    })
}
