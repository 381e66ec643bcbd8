//! Command-line interface: argument parsing and dispatch to the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{clone, devfile, inject, install, platform, render, yaml};

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
    /// Print the Kubernetes objects or the DevWorkspace for a devfile, or
    /// the DevWorkspace Operator's configuration.
    Render(Box<RenderArgs>),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The devfile (not needed for `--format operator-config`).
    file: Option<PathBuf>,
    /// Workspace name (a DNS label; not needed for `--format operator-config`).
    #[arg(long, value_parser = dns_label)]
    name: Option<String>,
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
    #[command(flatten)]
    platform: PlatformArgs,
    /// The workspace's class: small, medium, large, xlarge, or one of --classes.
    #[arg(long, default_value = "small")]
    class: String,
    /// A YAML file of classes: name -> {container: {requests, limits}, max, storage}.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// The data volume's current size: a re-render never shrinks it.
    #[arg(long)]
    min_storage: Option<String>,
    /// A JSON file of variables: [{"key","value","type":"env|file","source":"user|group|project"}].
    #[arg(long)]
    variables: Option<PathBuf>,
    /// Where the daemon POSTs when the workspace goes idle (http:// or https://).
    #[arg(long, value_parser = webhook_url)]
    idle_webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Kubernetes,
    Devworkspace,
    OperatorConfig,
}

/// The platform's levels that a devfile may only stay within.
#[derive(Debug, clap::Args)]
pub struct PlatformArgs {
    /// The platform's idle timeout (0 turns inactivity detection off).
    #[arg(long, default_value = "30m", value_parser = duration)]
    pub idle_timeout: std::time::Duration,
    /// The longest a workspace runs, active or not.
    #[arg(long, default_value = "36h", value_parser = positive_duration)]
    pub max_active: std::time::Duration,
    /// The most any port may be opened to: none, private, internal, public.
    #[arg(long, default_value = "public", value_parser = visibility)]
    pub max_visibility: platform::Visibility,
}

impl PlatformArgs {
    fn timeouts(&self) -> platform::Timeouts {
        platform::Timeouts {
            idle: self.idle_timeout,
            max_active: self.max_active,
        }
    }

    /// What the platform refuses in a devfile besides the rules.
    fn findings(&self, devfile: &serde_json::Value) -> Vec<devfile::Finding> {
        let mut f = platform::check_timeout_attributes(devfile, self.timeouts());
        f.extend(platform::check_exposure(devfile, self.max_visibility));
        f
    }
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    platform::parse_duration(&serde_json::Value::String(s.into()))
        .ok_or_else(|| "must be a duration such as 30m, 1h30m or whole seconds".into())
}

fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    duration(s).and_then(|d| {
        if d.is_zero() {
            Err("must be longer than 0".into())
        } else {
            Ok(d)
        }
    })
}

fn visibility(s: &str) -> Result<platform::Visibility, String> {
    platform::Visibility::parse(s).ok_or_else(|| "must be none, private, internal or public".into())
}

fn webhook_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && !s.contains(char::is_whitespace)
        && s.split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty());
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be an http:// or https:// URL".into())
    }
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
        #[command(flatten)]
        platform: PlatformArgs,
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
            DevfileCommand::Check {
                file,
                relaxed,
                platform,
            } => {
                let mode = if relaxed {
                    devfile::Mode::Relaxed
                } else {
                    devfile::Mode::Gitlab
                };
                let findings = match devfile::read(&file)? {
                    Ok(value) => {
                        let mut f = devfile::check(&value, mode);
                        f.extend(platform.findings(&value));
                        f
                    }
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
        Command::Render(args) => {
            let RenderArgs {
                file,
                name,
                namespace,
                format,
                dns_zone,
                proxy_namespace,
                inject,
                platform: levels,
                class,
                classes,
                min_storage,
                variables,
                idle_webhook,
            } = *args;
            let class = match find_class(&class, classes.as_deref())? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if let Some(min) = &min_storage {
                if platform::parse_memory(min).is_none() {
                    eprintln!("error: invalid value {min:?} for '--min-storage': must be a size such as 20Gi (see --help)");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
            if let Format::OperatorConfig = format {
                print!(
                    "{}",
                    yaml::to_string(&render::operator_config(
                        &namespace,
                        &class,
                        levels.timeouts()
                    ))
                );
                return Ok(ExitCode::SUCCESS);
            }
            let (Some(file), Some(name)) = (file, name) else {
                eprintln!(
                    "error: the devfile and --name are required for this format (see --help)"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let value = match checked(&file)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let findings = levels.findings(&value);
            if !findings.is_empty() {
                return report(&file, &findings);
            }
            let mut vars = match variables {
                None => platform::Variables::default(),
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("read the variables file {}", path.display()))?;
                    match platform::parse_variables(&text) {
                        Ok(v) => v,
                        Err(why) => {
                            eprintln!("{}: {why}", path.display());
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
            };
            platform::ensure_token(&mut vars)?;
            let opts = render::Options {
                name,
                namespace,
                dns_zone,
                proxy_namespace,
                inject: inject.options(),
                class,
                min_storage,
                variables: vars,
                timeouts: levels.timeouts(),
                idle_webhook,
                max_visibility: levels.max_visibility,
            };
            // operator-config was answered above.
            let docs = match format {
                Format::Devworkspace => render::devworkspace(&value, &opts)?,
                Format::Kubernetes | Format::OperatorConfig => render::kubernetes(&value, &opts)?,
            };
            print!("{}", yaml::to_multi_doc(&docs));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The named class from the `--classes` file or the built-ins; an unknown
/// name is bad usage.
fn find_class(
    name: &str,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Result<platform::Class, ExitCode>> {
    let mut classes = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the classes file {}", path.display()))?;
        match platform::parse_classes(&text) {
            Ok(c) => classes = c,
            Err(why) => {
                eprintln!("{}: {why}", path.display());
                return Ok(Err(ExitCode::FAILURE));
            }
        }
    }
    classes.extend(platform::builtin_classes());
    if let Some(c) = classes.iter().find(|c| c.name == name) {
        return Ok(Ok(c.clone()));
    }
    let mut names: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
    names.dedup();
    eprintln!(
        "error: invalid value {name:?} for '--class': allowed: {} (see --help)",
        names.join(", ")
    );
    Ok(Err(ExitCode::from(EXIT_USAGE)))
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
