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
        .subcommand(
            Command::new("forward")
                .about("Forward a local port to a port in the workspace through the daemon")
                .arg(
                    Arg::new("url")
                        .long("url")
                        .value_name("URL")
                        .required(true)
                        .help("the daemon's base URL, e.g. http://127.0.0.1:60080 or https://ws.example"),
                )
                .arg(
                    Arg::new("token_file")
                        .long("token-file")
                        .value_name("FILE")
                        .help("file holding the token (else env WORKSPACED_TOKEN)"),
                )
                .arg(
                    Arg::new("ca_file")
                        .long("ca-file")
                        .value_name("FILE")
                        .help("PEM certificate(s) to trust for an https:// URL, besides the system's"),
                )
                .arg(
                    Arg::new("ports")
                        .value_name("LOCAL[:REMOTE]")
                        .required(true)
                        .help("listen on 127.0.0.1:LOCAL, reach REMOTE (default LOCAL)"),
                ),
        )
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
        Some(("forward", m)) => forward(m),
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

/// Raises the soft limit on open files to the hard one, as servers do:
/// every connection, terminal and watched file costs a descriptor, and the
/// usual soft limit (1024) is below `max_connections`' default.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open files limit"),
    }
}

fn serve(config: Config) -> ExitCode {
    init_logging(config.log_format);
    raise_fd_limit();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Two workers, unless tokio's own TOKIO_WORKER_THREADS says otherwise.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(2);
    }
    let runtime = match builder.enable_all().build() {
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

fn forward(m: &clap::ArgMatches) -> ExitCode {
    use workspaced::forward;
    let spec = m.get_one::<String>("ports").expect("required");
    let (local, remote) = match forward::parse_ports(spec) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let url = m.get_one::<String>("url").expect("required");
    let tunnel_url = match forward::tunnel_url(url, remote) {
        Ok(u) => u,
        Err(e) => return usage_error(e),
    };
    let token = match m.get_one::<String>("token_file") {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => t.trim_end_matches(['\n', '\r']).to_owned(),
            Err(e) => return usage_error(format!("cannot read --token-file {f}: {e}")),
        },
        None => std::env::var("WORKSPACED_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        return usage_error("no token: give --token-file FILE or set WORKSPACED_TOKEN");
    }
    let ca_pem = match m.get_one::<String>("ca_file") {
        Some(f) => match std::fs::read(f) {
            Ok(pem) => Some(pem),
            Err(e) => return usage_error(format!("cannot read --ca-file {f}: {e}")),
        },
        None => None,
    };
    init_logging(LogFormat::Text);
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
    let f = forward::Forward {
        tunnel_url,
        token,
        local,
        remote,
        ca_pem,
        stall: forward::send_timeout_from_env(),
    };
    match runtime.block_on(forward::run(f, workspaced::server::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workspaced: {e:#}");
            ExitCode::FAILURE
        }
    }
}
