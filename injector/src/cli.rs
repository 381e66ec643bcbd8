//! Command-line interface: argument parsing and dispatch to the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::devfile;

/// Exit code for bad usage (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "workspace-injector",
    version,
    about = "Puts the editor and workspaced into a workspace"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Devfile operations.
    Devfile {
        #[command(subcommand)]
        command: DevfileCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevfileCommand {
    /// Validate a devfile against the platform's restrictions.
    Check {
        file: PathBuf,
        /// Accept full devfile 2.x, validated against its declared schema.
        #[arg(long)]
        relaxed: bool,
    },
}

/// Parses the arguments and runs; bad usage exits 64 with one line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(EXIT_USAGE)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("error: bad usage");
            eprintln!("{line} (see --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Devfile { command } => match command {
            DevfileCommand::Check { file, relaxed } => {
                let mode = if relaxed {
                    devfile::Mode::Relaxed
                } else {
                    devfile::Mode::Gitlab
                };
                let findings = match devfile::read(&file)? {
                    Ok(value) => devfile::check(&value, mode),
                    Err(findings) => findings,
                };
                report(&file, &findings)
            }
        },
    }
}

fn report(file: &std::path::Path, findings: &[devfile::Finding]) -> anyhow::Result<ExitCode> {
    if findings.is_empty() {
        println!("{}: ok", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = std::io::stderr().lock();
    for f in findings {
        writeln!(err, "{}: {f}", file.display())?;
    }
    Ok(ExitCode::FAILURE)
}
