//! `holdfastd`: the Holdfast node daemon.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use holdfastd::config::ClusterConfig;

/// The Holdfast node daemon. It broadcasts this node's ownership information, watches its peers,
/// and takes over a failed peer's addresses (and, later, its live TCP connections).
///
/// Run it inside the node (a harness topology does): `holdfastd --config CLUSTER.toml --node a`.
/// The configuration file describes the whole cluster; see
/// implementation/daemon/cluster.example.toml (every setting, commented).
#[derive(Parser)]
#[command(name = "holdfastd", version)]
struct Cli {
    /// The cluster configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// This node's name in the configuration.
    #[arg(long)]
    node: Option<String>,
    /// Where the status socket and the boot-epoch file live.
    #[arg(long, default_value = "/run/holdfastd", global = true)]
    run_dir: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the running daemon's status as JSON: members, owners, counters.
    Status,
    /// Validate a configuration file; print every problem as FILE:LINE: field: problem.
    Check,
    /// (internal) The guardian that keeps connections silent if holdfastd dies.
    #[command(hide = true)]
    Guardian,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("holdfastd: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(cli: &Cli) -> Result<ClusterConfig> {
    let path = cli.config.as_ref().context("--config FILE is required")?;
    ClusterConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Some(Cmd::Status) => {
            let p = cli.run_dir.join(holdfastd::daemon::STATUS_SOCKET);
            let mut s = std::os::unix::net::UnixStream::connect(&p).with_context(|| {
                format!(
                    "{}: is holdfastd running with --run-dir {}?",
                    p.display(),
                    cli.run_dir.display()
                )
            })?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Guardian) => {
            holdfastd::daemon::raise_fd_limit();
            holdfastd::guardian::run(std::time::Duration::from_secs(30))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Check) => {
            let c = load(&cli)?;
            println!("ok: cluster {} with {} nodes", c.cluster_id, c.nodes.len());
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let cfg = load(&cli)?;
            let node = cli.node.clone().context("--node NAME is required")?;
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(holdfastd::daemon::run(cfg, &node, cli.run_dir.clone()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
