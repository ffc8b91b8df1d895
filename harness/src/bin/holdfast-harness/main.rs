//! `holdfast-harness`: build clusters from TOML topologies, fault them, capture every link.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use holdfast_harness::adapter::Adapter;
use holdfast_harness::client::{self, ClientSpec, Service, Workload};
use holdfast_harness::registry::{self, RunRecord};
use holdfast_harness::scenario::Scenario;
use holdfast_harness::{Fault, Topology, netns};

mod supervisor;

use holdfast_harness::runner;
use supervisor::{call, down, supervise, up};

/// Builds multi-node clusters from TOML topologies in network namespaces, runs any
/// implementation on the nodes, injects faults (power-off, isolate, freeze, crash, loss), drives
/// real kernel-TCP clients, and captures every switch port to pcapng for Wireshark.
///
/// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for everything except `check`, `serve` and
/// `client`. Never touches the root namespace's interfaces or sysctls.
#[derive(Parser)]
#[command(name = "holdfast-harness", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXAMPLES: &str = "\
Examples:
  holdfast-harness check topologies/*.toml
  holdfast-harness check --adapter adapters/keepalived topologies/*.toml   # render it for each
  holdfast-harness graph topologies/two-node-routed.toml --svg /tmp/routed.svg
  RUN=$(holdfast-harness up topologies/two-node.toml --adapter adapters/holdfastd)
                                                          # prints the run id, leaves it running
  holdfast-harness exec $RUN client -- ping -c1 198.18.0.1
  holdfast-harness fault $RUN power-off a
  holdfast-harness fault $RUN power-on a
  holdfast-harness fault $RUN partition a b               # a and b cannot talk; both reach the client
  holdfast-harness fault $RUN heal-partition a
  holdfast-harness fault $RUN impair client 'delay=20ms rate=100mbit'
  holdfast-harness down $RUN
  holdfast-harness run topologies/two-node.toml --adapter adapters/keepalived \
      --scenario scenarios/demo.toml
  holdfast-harness clean                                  # remove what a killed harness left

Captures land in pcaps/out/RUN/SWITCH.pcapng, one interface per port named SWITCH:NODE.";

#[derive(Subcommand)]
enum Cmd {
    /// Validate topology files; print every problem as FILE:LINE: field: problem.
    Check {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check an adapter (adapters/NAME): its adapter.toml and templates, and its
        /// rendering of each topology's [cluster] (into a scratch directory, removed afterwards
        /// unless --out says where to keep it), or why it cannot express one.
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// Keep the adapter's rendered files here (OUT/TOPOLOGY/NODE/...).
        #[arg(long, value_name = "OUT", requires = "adapter")]
        out: Option<PathBuf>,
    },
    /// Build a topology, start its processes, and return once it is ready. Prints the run id;
    /// the run stays up (held by a background supervisor) until `down`.
    Up {
        /// The topology file.
        file: PathBuf,
        /// Where logs and pcaps go (default pcaps/out/RUN).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Do not capture.
        #[arg(long)]
        no_capture: bool,
        /// Run this implementation on the topology's [cluster]: an adapter directory such as
        /// adapters/holdfastd or adapters/keepalived (without it, only the topology's own
        /// processes run).
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
    },
    /// Draw a topology: Graphviz DOT on stdout, or an SVG file with --svg (needs Graphviz's
    /// `dot`): switches, nodes with their addresses and owned addresses, links with their
    /// impairments, mirrors, routers.
    Graph {
        /// The topology file.
        file: PathBuf,
        /// Write an SVG here (runs `dot -Tsvg`) instead of printing DOT.
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
    },
    /// Tear a run down: processes, namespaces, links; the pcaps stay.
    Down {
        /// The run id (from `up` or `list`).
        run: String,
    },
    /// List recorded runs.
    List,
    /// Run a program inside a node of a running topology; its exit code is returned.
    Exec {
        /// The run id.
        run: String,
        /// The node, by its name in the topology.
        node: String,
        /// The program and its arguments (after `--`).
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Apply a fault to a node of a running topology.
    ///
    /// KIND is one of: power-off, power-on, isolate, heal, freeze, thaw, crash (ARG: process
    /// name), loss (ARG: percent; NODE may be SWITCH:NODE), partition (NODE and ARG are the two
    /// sides, comma-separated: `partition a b,c` drops every frame between a and b or c in the
    /// switches, both ways), partition-one-way (only from NODE's side to ARG's), heal-partition
    /// (NODE: any; removes every partition), impair (NODE may be SWITCH:NODE; ARG: "delay=20ms
    /// jitter=5ms loss=1% duplicate=1% reorder=10% rate=100mbit", any subset, or "none"; a
    /// delay line in the switch, both ways: this kernel has no netem).
    Fault {
        /// The run id.
        run: String,
        /// The fault kind.
        kind: String,
        /// The node, by its name in the topology.
        node: String,
        /// The process (crash) or percentage (loss).
        arg: Option<String>,
    },
    /// Bring a topology up, run a scenario, tear down. Writes pcaps, logs and report.json
    /// under the run directory; exits 1 when a client check fails.
    Run {
        /// The topology file.
        file: PathBuf,
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// Where logs and pcaps go (default pcaps/out/RUN).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Run this implementation on the topology's [cluster]: an adapter directory such as
        /// adapters/holdfastd or adapters/keepalived (without it, only the topology's own
        /// processes run).
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
    },
    /// Remove what killed harness runs left behind (namespaces, links, processes).
    Clean {
        /// Only this run.
        run: Option<String>,
        /// Also runs whose owner is still alive.
        #[arg(long)]
        force: bool,
    },
    /// Run a service for client workloads (used in topology process templates).
    Serve {
        /// The service.
        service: Service,
        /// Address to listen on (the source address for beacon).
        #[arg(long)]
        listen: SocketAddr,
        /// Beacon destination.
        #[arg(long)]
        to: Option<SocketAddr>,
        /// Beacon interval.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
    /// Run a client workload from the current namespace (use with `exec`); prints JSON.
    Client {
        /// The workload.
        workload: Workload,
        /// The service address.
        #[arg(long)]
        target: SocketAddr,
        /// Bytes per connection (stream, download).
        #[arg(long, default_value_t = 1 << 20)]
        bytes: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Requests per connection (request).
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Requests per second (request).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Write the JSON report here instead of stdout.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// (internal) Hold a run for `up`.
    #[command(hide = true)]
    Supervise {
        file: PathBuf,
        #[arg(long)]
        run_dir: Option<PathBuf>,
        #[arg(long)]
        no_capture: bool,
        #[arg(long)]
        adapter: Option<PathBuf>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Request {
    Fault { fault: Fault },
    Down,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    message: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("holdfast-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn need_root() -> Result<()> {
    if !holdfast_harness::privileged() {
        bail!(
            "this needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo. Without root, \
             `run` runs in a user namespace of its own; `up` cannot, since its run \
             would vanish with the command"
        );
    }
    Ok(())
}

/// For the one-shot command `run`: without root, runs this very command again in a rootless
/// sandbox ([`holdfast_harness::rootless`]) and exits with its status.
fn root_or_sandbox() -> Result<()> {
    holdfast_harness::rootless::root_or_sandbox("holdfast-harness").map_err(Into::into)
}

fn load_topology(file: &Path) -> Result<Topology> {
    Topology::load(file).map_err(|e| anyhow::anyhow!("{e}"))
}

fn load_adapter(dir: &Path) -> Result<Adapter> {
    Adapter::load(dir).map_err(|e| anyhow::anyhow!("{e}"))
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Check {
            files,
            adapter,
            out,
        } => check(&files, adapter, out),
        Cmd::Up {
            file,
            run_dir,
            no_capture,
            adapter,
        } => {
            need_root()?;
            load_topology(&file)?;
            if let Some(a) = &adapter {
                load_adapter(a)?;
            }
            up(&file, run_dir, no_capture, adapter)
        }
        Cmd::Supervise {
            file,
            run_dir,
            no_capture,
            adapter,
        } => supervise(&file, run_dir, no_capture, adapter),
        Cmd::Graph { file, svg } => graph(&file, svg),
        Cmd::Down { run } => {
            need_root()?;
            down(&run)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List => list(),
        Cmd::Exec { run, node, cmd } => {
            need_root()?;
            let ns = RunRecord::ns_name(&run, &node);
            let f =
                std::fs::File::open(Path::new(netns::NETNS_DIR).join(&ns)).with_context(|| {
                    format!("run {run} has no node {node:?} (or it is powered off)")
                })?;
            // This process is still single-threaded here, so setns moves all of it.
            netns::enter(std::os::fd::AsRawFd::as_raw_fd(&f)).context("setns")?;
            let err = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .env("HOLDFAST_NODE", &node)
                .env("HOLDFAST_RUN", &run)
                .exec();
            bail!("{}: {err}", cmd[0])
        }
        Cmd::Fault {
            run,
            kind,
            node,
            arg,
        } => {
            need_root()?;
            let fault = Fault::parse(&kind, &node, arg.as_deref()).map_err(anyhow::Error::msg)?;
            let reply = call(&run, &Request::Fault { fault })?;
            if !reply.ok {
                bail!("{}", reply.message);
            }
            println!("{kind} {node}: done");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            file,
            scenario,
            run_dir,
            adapter,
        } => {
            root_or_sandbox()?;
            let topo = load_topology(&file)?;
            let adapter = adapter.as_deref().map(load_adapter).transpose()?;
            let sc = Scenario::load(&scenario, &topo).map_err(|e| anyhow::anyhow!("{e}"))?;
            let outcome = runner::run_scenario(topo, Some(file), &sc, run_dir, "run", adapter)?;
            Ok(outcome.verdict())
        }
        Cmd::Serve {
            service,
            listen,
            to,
            interval_ms,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(client::serve(
                service,
                listen,
                to,
                Duration::from_millis(interval_ms),
            ))
            .with_context(|| format!("serve {service:?} on {listen}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Client {
            workload,
            target,
            bytes,
            connections,
            count,
            rate,
            json,
        } => {
            let mut spec = ClientSpec::new(workload, target);
            spec.bytes = bytes;
            spec.connections = connections;
            spec.count = count;
            spec.rate = rate;
            client_run(spec, json)
        }
        Cmd::Clean { run, force } => clean(run, force),
    }
}

/// `check`: every topology file checked (and rendered by the adapter, if one is given).
fn check(files: &[PathBuf], adapter: Option<PathBuf>, out: Option<PathBuf>) -> Result<ExitCode> {
    let mut bad = 0;
    let adapter = adapter.as_deref().map(load_adapter).transpose()?;
    let tmp = match &out {
        Some(_) => None,
        None => Some(
            holdfast_harness::ScratchDir::new("holdfast-check")
                .context("a scratch directory for the rendering")?,
        ),
    };
    let scratch = out
        .clone()
        .unwrap_or_else(|| tmp.as_ref().map(|t| t.to_path_buf()).unwrap_or_default());
    for f in files {
        match Topology::load(f) {
            Ok(t) => {
                println!(
                    "{}: ok ({} nodes, {} switch(es))",
                    f.display(),
                    t.nodes.len(),
                    t.switches.len()
                );
                if let Some(a) = &adapter {
                    match a.cannot_express(&t) {
                        Some(why) => println!("  {}: not expressible: {why}", a.name),
                        None => match a.render(&t, &scratch.join(&t.name)) {
                            Ok(r) => {
                                let added: usize =
                                    r.nodes.iter().map(|n| n.processes.len()).sum::<usize>()
                                        - t.nodes.iter().map(|n| n.processes.len()).sum::<usize>();
                                match &out {
                                    Some(_) => println!(
                                        "  {}: renders ({added} processes, files in {})",
                                        a.name,
                                        scratch.join(&t.name).display()
                                    ),
                                    None => println!(
                                        "  {}: renders ({added} processes; --out DIR keeps the files)",
                                        a.name
                                    ),
                                }
                            }
                            Err(e) => {
                                eprintln!("{}: adapter {}: {e}", f.display(), a.name);
                                bad += 1;
                            }
                        },
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `graph`: the topology as DOT on stdout, or as an SVG file drawn by Graphviz.
fn graph(file: &Path, svg: Option<PathBuf>) -> Result<ExitCode> {
    let topo = load_topology(file)?;
    let dot = holdfast_harness::graph::dot(&topo);
    match svg {
        None => print!("{dot}"),
        Some(out) => {
            let mut child = std::process::Command::new("dot")
                .arg("-Tsvg")
                .arg("-o")
                .arg(&out)
                .stdin(Stdio::piped())
                .spawn()
                .context(
                    "run Graphviz's `dot` (apt-get install graphviz), or leave out --svg for DOT",
                )?;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(dot.as_bytes())?;
            let st = child.wait()?;
            if !st.success() {
                bail!("dot failed: {st}");
            }
            println!("{}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`: the recorded runs, and whether their owner is alive.
fn list() -> Result<ExitCode> {
    for r in registry::list() {
        println!(
            "{}  {}  owner {} ({})  {}",
            r.id,
            r.topology
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            r.owner_pid,
            if r.owner_alive() {
                "alive"
            } else {
                "dead: run `holdfast-harness clean`"
            },
            r.run_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `clean`: removes what killed runs left behind (all dead ones, or the one named).
fn clean(run: Option<String>, force: bool) -> Result<ExitCode> {
    need_root()?;
    let c = registry::clean(run.as_deref(), force || run.is_some())?;
    for r in &c.runs {
        println!("removed run {r}");
    }
    for n in &c.orphans {
        println!("removed orphan namespace {n}");
    }
    if c.runs.is_empty() && c.orphans.is_empty() {
        println!("nothing to clean");
    }
    Ok(ExitCode::SUCCESS)
}

/// `client`: runs one workload, prints its report (JSON) and exits 1 unless every byte was
/// verified.
fn client_run(spec: ClientSpec, json: Option<PathBuf>) -> Result<ExitCode> {
    let rep = client::run_blocking(spec)?;
    let out = serde_json::to_string_pretty(&rep)?;
    match json {
        Some(p) => std::fs::write(&p, out).with_context(|| p.display().to_string())?,
        None => println!("{out}"),
    }
    eprintln!("{}", rep.summary());
    Ok(if rep.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
