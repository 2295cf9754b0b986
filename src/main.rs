//! The `wssd` binary: reads `.env` and (for `serve`) what systemd passed,
//! parses the command line, and runs one command. The only place that
//! prints errors and picks exit codes.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use wssd::certs;
use wssd::cli::{CertCommand, Cli, Command, LogFormat, ServeArgs, TlsMode};
use wssd::config::{self, Config, Environment};
use wssd::systemd::Systemd;

fn main() -> ExitCode {
    // `.env` must be loaded before any thread exists (it sets variables);
    // existing environment variables win over it.
    let dotenv_problem = match dotenvy::dotenv() {
        Ok(_) => None,
        Err(e) if e.not_found() => None,
        Err(e) => Some(format!("error: .env: {e}")),
    };
    // Another server's flags (`--port`, `--ssl-certfile`) get a tip naming
    // wssd's option under clap's own error (exit code 2).
    let cli = Cli::try_parse().unwrap_or_else(|e| config::seed::with_seed_tip(e).exit());
    if let Some(problem) = dotenv_problem {
        eprintln!("{problem}");
        return ExitCode::FAILURE;
    }
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    let result = match command {
        Command::Serve(args) => {
            // Before anything slow: a SIGHUP/SIGUSR2 during startup must
            // not kill the server (their default action).
            if let Err(e) = wssd::early_signals::catch() {
                eprintln!("warning: cannot catch SIGHUP/SIGUSR2 during startup: {e}");
            }
            // SAFETY: no other thread exists yet; `serve` starts the runtime.
            // A binary upgrade's handover first: it sets LISTEN_PID for
            // `Systemd::from_environment` when the old wssd is our parent.
            let upgraded = unsafe { wssd::upgrade::take_from_environment() };
            // SAFETY: as above.
            match unsafe { Systemd::from_environment() } {
                Ok(systemd) => serve(&args, systemd, upgraded),
                Err(e) => Err(e.into()),
            }
        }
        Command::Check(args) => check(&args),
        Command::Cert(cmd) => cert(cmd),
        Command::Bench(cmd) => runtime().and_then(|rt| {
            rt.block_on(wssd::bench::run(cmd))
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }),
        Command::Completions(args) => wssd::cli::completions(args.shell, &mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .context("cannot write the completions"),
        Command::Man => wssd::cli::man_page(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .context("cannot write the manual page"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_config(args: &ServeArgs) -> Result<Config, ExitCode> {
    config::load(args, &Environment::from_process()).map_err(|errors| {
        for problem in errors.iter() {
            eprintln!("error: {problem}");
        }
        ExitCode::FAILURE
    })
}

fn serve(
    args: &ServeArgs,
    systemd: Systemd,
    upgraded: Option<wssd::upgrade::ReadyPipe>,
) -> anyhow::Result<ExitCode> {
    let mut config = match load_config(args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_logging(&config);
    tracing::info!(
        "wssd {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    if let Some(file) = &config.config_file {
        tracing::info!("configuration file: {}", file.display());
    }
    match wssd::nofile::raise_to_hard() {
        Ok(r) => {
            let (info, warn) = wssd::nofile::notes(r, config.limits.max_connections);
            if let Some(line) = info {
                tracing::info!("{line}");
            }
            if let Some(line) = warn {
                tracing::warn!("{line}");
            }
        }
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    if let Err(e) = wssd::access_log::install(&config.access_log) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if let Err(e) = wssd::server::use_passed_listeners(&mut config, &systemd.listeners) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let prepared = match certs::startup::prepare(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for line in wssd::early_signals::ignored() {
        tracing::warn!("{line}");
    }
    let rt = runtime()?;
    let served = rt.block_on(async {
        let signal = shutdown_signal().context("cannot listen for SIGTERM/SIGINT")?;
        wssd::access_log::reopen_on_sigusr1().context("cannot listen for SIGUSR1")?;
        wssd::server::run(config, reloader(args), prepared, systemd, upgraded, signal)
            .await
            .map_err(anyhow::Error::from)
    });
    // The WebSockets closed at shutdown are in the access log before exit.
    wssd::access_log::finish(std::time::Duration::from_secs(2));
    served?;
    Ok(ExitCode::SUCCESS)
}

/// How a reload reads the configuration again: the same flags and
/// environment variables (`.env` included, read at start), the file and
/// the files it names read afresh.
fn reloader(args: &ServeArgs) -> wssd::server::reload::Load {
    let args = args.clone();
    std::sync::Arc::new(move || {
        config::load(&args, &Environment::from_process())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    })
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    wssd::metrics::install();
}

/// `wssd check`: every configuration and certificate problem, exit 1 on any.
fn check(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let config = match config::load(args, &Environment::from_process()) {
        Ok(c) => Some(c),
        Err(errors) => {
            problems.extend(errors.iter().map(ToString::to_string));
            None
        }
    };
    if let Some(config) = &config {
        warnings.extend(config.warnings());
        match config.tls.mode {
            TlsMode::Files => {
                if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
                    for finding in certs::inspect::check_pair(cert, key, SystemTime::now()) {
                        match finding.severity {
                            certs::inspect::Severity::Warning => warnings.push(finding.message),
                            certs::inspect::Severity::Problem => problems.push(finding.message),
                        }
                    }
                }
            }
            TlsMode::LocalCa | TlsMode::Acme => {
                if let Err(e) = writable_dir(&config.state_dir) {
                    problems.push(e.to_string());
                }
            }
            TlsMode::SelfSigned => {
                let (cert, key) = certs::self_signed::paths(&config.state_dir);
                if cert.exists() {
                    for finding in certs::inspect::check_pair(&cert, &key, SystemTime::now()) {
                        warnings.push(format!(
                            "{finding} (it will be regenerated at start if needed)"
                        ));
                    }
                } else if let Err(e) = writable_dir(&config.state_dir) {
                    problems.push(e.to_string());
                }
            }
            _ => {}
        }
        for entry in &config.tls.sni {
            for finding in certs::inspect::check_pair(&entry.cert, &entry.key, SystemTime::now()) {
                match finding.severity {
                    certs::inspect::Severity::Warning => warnings.push(finding.message),
                    certs::inspect::Severity::Problem => problems.push(finding.message),
                }
            }
        }
        if let Some(auth) = &config.tls.client_auth {
            let resolver = std::sync::Arc::new(wssd::tls::resolver::CertResolver::default());
            if let Err(e) = wssd::tls::server_config(resolver, Some(auth), false, false) {
                problems.push(e.to_string());
            }
        }
        let mut addrs: Vec<(std::net::SocketAddr, &str)> = Vec::new();
        addrs.extend(config.listen.iter().map(|a| (*a, "--listen")));
        addrs.extend(config.http.iter().map(|a| (*a, "--http")));
        addrs.extend(config.admin.iter().map(|a| (*a, "--admin")));
        let rt = runtime()?;
        rt.block_on(async {
            for (addr, what) in addrs {
                if let Err(e) = wssd::server::bind::bind(addr, what) {
                    problems.push(e.to_string());
                }
            }
        });
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    if problems.is_empty() {
        if let Some(c) = &config {
            println!(
                "ok: configuration{} is valid; {} TLS listener(s), {} plain listener(s), {} route(s), TLS {:?}",
                c.config_file
                    .as_ref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default(),
                c.listen.len(),
                c.http.len(),
                c.routes.len(),
                c.tls.mode
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("error: {p}");
        }
        println!("{} problem(s) found", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Why `wssd check` finds the state folder unusable.
#[derive(Debug, thiserror::Error)]
enum StateDirError {
    #[error("state folder {}: {source}", .dir.display())]
    Unreadable {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state folder {} cannot be created or written ({} is read-only); set --state-dir to a writable folder",
        .dir.display(),
        .probe.display()
    )]
    ReadOnly {
        dir: std::path::PathBuf,
        probe: std::path::PathBuf,
    },
}

fn writable_dir(dir: &std::path::Path) -> Result<(), StateDirError> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    let meta = std::fs::metadata(&probe).map_err(|source| StateDirError::Unreadable {
        dir: dir.to_path_buf(),
        source,
    })?;
    if meta.permissions().readonly() {
        return Err(StateDirError::ReadOnly {
            dir: dir.to_path_buf(),
            probe,
        });
    }
    Ok(())
}

fn cert(cmd: CertCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertCommand::Generate(args) => {
            let message = certs::generate::run_generate(&args)?;
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Inspect(args) => {
            let report =
                certs::inspect::inspect(&args.file, args.key.as_deref(), SystemTime::now())?;
            print!("{report}");
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CertCommand::Ca(cmd) => {
            let env = Environment::from_process();
            let message = certs::local_ca::run_command(&cmd, config::default_state_dir(&env))?;
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
