//! Command-line interface: argument parsing and dispatch to the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{clone, devfile, inject, install, render, yaml};

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
    /// Install workspaced, the editor and init_tools.sh into the tools dir.
    Install {
        /// The tools dir (a symlink to a verified, versioned sibling).
        #[arg(long)]
        to: PathBuf,
        /// Where the image keeps the tools (`workspaced`, `editor/`); default
        /// /opt/gl-tools under the root this binary is in (/usr/local/bin).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Re-hash the installed files even when the manifest matches, and
        /// reinstall when one was changed.
        #[arg(long)]
        verify: bool,
    },
    /// Clone the project into the workspace (idempotent, with retries).
    Clone {
        #[arg(long)]
        url: String,
        /// Branch, tag or commit to check out.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Shallow clone with this many commits.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        depth: Option<u32>,
        #[arg(long)]
        dest: PathBuf,
        /// File holding a token sent as HTTP basic auth `oauth2:<token>`.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Exit 1 when every try failed (default: 0, the workspace starts anyway).
        #[arg(long)]
        strict: bool,
        /// Waits between tries (tests shorten them).
        #[arg(long, hide = true, default_value = "1s,2s,4s", value_parser = clone::parse_backoff)]
        retry_backoff: std::vec::Vec<std::time::Duration>,
    },
    /// Check an installed tools dir against its manifest.
    Verify { dir: PathBuf },
    /// Print the Kubernetes objects or the DevWorkspace for a devfile.
    Render {
        file: PathBuf,
        /// Workspace name (a DNS label).
        #[arg(long, value_parser = dns_label)]
        name: String,
        /// Namespace of the objects (a DNS label).
        #[arg(long, value_parser = dns_label)]
        namespace: String,
        #[arg(long, value_enum, default_value = "kubernetes")]
        format: Format,
        /// DNS zone of the workspaces proxy: ports are `<port>-<name>.<zone>`.
        #[arg(long, default_value = "workspaces.localdev.me")]
        dns_zone: String,
        /// Namespace of the workspaces proxy, the only ingress allowed.
        #[arg(long, default_value = "gitlab-workspaces")]
        proxy_namespace: String,
        #[command(flatten)]
        inject: InjectArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Kubernetes,
    Devworkspace,
}

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// Image of the init component that runs `install` (and `clone`).
    #[arg(long, default_value = inject::DEFAULT_INJECTOR_IMAGE)]
    pub injector_image: String,
    /// Editor profile started by init_tools.sh.
    #[arg(long, default_value = "code-server")]
    pub editor_profile: String,
    /// Clone this repository into the workspace before it starts.
    #[arg(long)]
    pub project_url: Option<String>,
    /// Branch, tag or commit of the project to check out.
    #[arg(long, requires = "project_url")]
    pub project_ref: Option<String>,
}

impl InjectArgs {
    fn options(self) -> inject::Options {
        inject::Options {
            injector_image: self.injector_image,
            editor_profile: self.editor_profile,
            project_url: self.project_url,
            project_ref: self.project_ref,
            domain_template: None,
        }
    }
}

fn dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be a DNS label: 1-63 lowercase letters, digits and '-'".into())
    }
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
    /// Print the devfile with the editor, the daemon and the tools injected.
    Inject {
        file: PathBuf,
        #[command(flatten)]
        inject: InjectArgs,
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
            eprintln!("{} (see --help)", usage_line(&e.render().to_string()));
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

/// clap's message (which may span lines) as one line, without the usage and tips.
fn usage_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    if parts.is_empty() {
        "error: bad usage".into()
    } else {
        parts.join(" ")
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
            DevfileCommand::Inject { file, inject } => {
                let value = match checked(&file)? {
                    Ok(v) => v,
                    Err(code) => return Ok(code),
                };
                let out = inject::inject(&value, &inject.options())?;
                self_check(&out)?;
                print!("{}", yaml::to_string(&out));
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Install { to, from, verify } => {
            let from = from.unwrap_or_else(install::default_from);
            match install::install(&from, &to, verify).with_context(|| {
                format!(
                    "install the tools from {} into {}",
                    from.display(),
                    to.display()
                )
            })? {
                install::Outcome::UpToDate { version_dir } => println!(
                    "up to date, nothing copied: {} -> {}",
                    to.display(),
                    version_dir.display()
                ),
                install::Outcome::Installed {
                    version_dir,
                    files,
                    bytes,
                } => println!(
                    "installed {files} files ({bytes} bytes), verified: {} -> {}",
                    to.display(),
                    version_dir.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Clone {
            url,
            git_ref,
            depth,
            dest,
            token_file,
            strict,
            retry_backoff,
        } => {
            let req = clone::Request {
                projects_root: clone::projects_root(&dest)?,
                url,
                git_ref,
                depth,
                dest,
                token_file,
                backoff: retry_backoff,
            };
            match clone::clone(&req)? {
                clone::Outcome::AlreadyCloned => {
                    println!(
                        "{} is already cloned (marker present); nothing done",
                        req.dest.display()
                    )
                }
                clone::Outcome::Cloned { attempts } => println!(
                    "cloned {} into {} (try {attempts})",
                    clone::redact_url(&req.url),
                    req.dest.display()
                ),
                clone::Outcome::Failed { message } => {
                    eprintln!("error: {message}");
                    eprintln!(
                        "the workspace starts without the project; the error is in {}",
                        req.projects_root.join(clone::ERROR_LOG).display()
                    );
                    return Ok(if strict {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    });
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => {
            let manifest = install::read_manifest(&dir)?;
            install::verify_tree(&dir, &manifest)
                .with_context(|| format!("verify {}", dir.display()))?;
            println!(
                "{}: {} entries match {}",
                dir.display(),
                manifest.files.len(),
                install::MANIFEST
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            file,
            name,
            namespace,
            format,
            dns_zone,
            proxy_namespace,
            inject,
        } => {
            let value = match checked(&file)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let opts = render::Options {
                name,
                namespace,
                dns_zone,
                proxy_namespace,
                inject: inject.options(),
            };
            match format {
                Format::Kubernetes => {
                    print!(
                        "{}",
                        yaml::to_multi_doc(&render::kubernetes(&value, &opts)?)
                    )
                }
                Format::Devworkspace => {
                    print!("{}", yaml::to_string(&render::devworkspace(&value, &opts)?))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and checks a devfile in GitLab mode; on findings, prints them and
/// returns the exit code.
fn checked(file: &std::path::Path) -> anyhow::Result<Result<serde_json::Value, ExitCode>> {
    let findings = match devfile::read(file)? {
        Ok(value) => {
            let findings = devfile::check(&value, devfile::Mode::Gitlab);
            if findings.is_empty() {
                return Ok(Ok(value));
            }
            findings
        }
        Err(findings) => findings,
    };
    Ok(Err(report(file, &findings)?))
}

/// The injected devfile must itself be a valid devfile.
fn self_check(out: &serde_json::Value) -> anyhow::Result<()> {
    let findings = devfile::check(out, devfile::Mode::Relaxed);
    if let Some(f) = findings.first() {
        anyhow::bail!("the injected devfile is invalid (a bug): {f}");
    }
    Ok(())
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
