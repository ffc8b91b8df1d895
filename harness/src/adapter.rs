//! Adapters: how one failover implementation is run on a topology's `[cluster]`.
//!
//! An adapter is a directory with an `adapter.toml` and the templates it names. Read
//! [`Adapter::load`] first, then [`Adapter::render`]: for every cluster member it renders the
//! implementation's configuration files into `RUN_DIR/config/NODE/` and adds the processes that
//! run it to the node. Templates are Jinja (minijinja); they see the topology's
//! [`ClusterSpec`], the member being rendered with the groups it takes part in, and its
//! `config_dir`. `docs/adding-an-implementation.md` walks through writing one.
//!
//! The format of `adapter.toml`:
//!
//! ```toml
//! name = "keepalived"
//! about = "VRRPv3: moves the addresses, not the connections"
//! requires = ["keepalived"]              # programs that must be on PATH
//! [supports]                             # the [cluster] values it can express (default: all)
//! assignment = ["ordered"]
//! settle_ms = 0                          # how long after start it serves its addresses
//! [[file]]                               # rendered per member into {{ config_dir }}/NAME
//! name = "keepalived.conf"
//! template = "keepalived.conf.j2"            # executable = true for a script
//! cleanup = "rm -rf /tmp/x-{run}"         # after teardown, in the root namespace
//! [[process]]                            # started on every member (per = "group": per group)
//! name = "keepalived"
//! command = "keepalived --use-file {{ config_dir }}/keepalived.conf --dont-fork"
//! [unsupported]                          # conformance cases it declares it does not support
//! "takeover/stream-survives::crash" = "why"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::spec::{ClusterSpec, Member, SUPPORTS};
use crate::topology::{Process, TemplateEnv, Topology, expand};

pub use holdfast_tomlcheck::Problem;

/// An adapter, loaded and checked.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The implementation's name (`holdfastd`, `keepalived`, ...).
    pub name: String,
    /// The directory the adapter was loaded from (templates are relative to it).
    pub dir: PathBuf,
    /// One line on what the implementation does.
    pub about: String,
    /// Programs that must be on `PATH` for the adapter to run.
    pub requires: Vec<String>,
    /// For each enumerated `[cluster]` field, the values it can express; a missing field means
    /// every value.
    pub supports: BTreeMap<String, Vec<String>>,
    /// Files rendered for every member.
    pub files: Vec<FileTemplate>,
    /// Processes started on the members.
    pub processes: Vec<ProcessTemplate>,
    /// Conformance cases (`case` or `case::variant`) it declares unsupported, with why.
    pub unsupported: BTreeMap<String, String>,
    /// How long after its processes start the implementation serves its addresses (a
    /// conformance case waits at least this long before its first step).
    pub settle_ms: u64,
    /// A command run in the root namespace once the run is torn down (`{run}` and `{run_dir}`
    /// filled in), for what the implementation leaves outside the run directory.
    pub cleanup: Option<String>,
}

/// A configuration file rendered for every member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTemplate {
    /// The file's name in the member's config directory (a template itself).
    pub name: String,
    /// The template, relative to the adapter's directory.
    pub template: String,
    /// Written executable (a script the implementation runs, such as ucarp's up script).
    #[serde(default)]
    pub executable: bool,
}

/// How many copies of a process a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// One per member.
    #[default]
    Node,
    /// One per group the member takes part in (owner or backup), with `group` in the context.
    Group,
}

/// A process started on the members.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTemplate {
    /// Its name (a template: per-group processes need distinct names); names its logs.
    pub name: String,
    /// The command: a template, then split into words, then the harness's `{placeholders}`.
    pub command: String,
    /// One per member or one per group.
    #[serde(default)]
    pub per: Per,
    /// Started again when the node is powered on after a power-off.
    #[serde(default = "yes")]
    pub restart: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdapter {
    name: Spanned<String>,
    #[serde(default)]
    about: String,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    supports: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    file: Vec<Spanned<FileTemplate>>,
    #[serde(default)]
    process: Vec<Spanned<ProcessTemplate>>,
    #[serde(default)]
    unsupported: BTreeMap<String, String>,
    #[serde(default)]
    settle_ms: u64,
    cleanup: Option<Spanned<String>>,
}

/// What is wrong with an adapter, or with rendering it for a topology.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdapterError {
    /// `adapter.toml` has problems (each with its line).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    /// A file could not be read or written, or a template did not render.
    #[error("{0}")]
    Other(String),
}

/// One group (a member's addresses) as a template sees it from the member being rendered.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The owner's member index (from 1).
    pub index: u32,
    /// The owning member's node.
    pub owner: String,
    /// The addresses, `ADDR/LEN`.
    pub owns: Vec<String>,
    /// The owner, then its backups in order.
    pub ranking: Vec<String>,
    /// This member's place in `ranking`: 0 for the owner, 1 for the first backup.
    pub rank: usize,
    /// Whether this member owns the group.
    pub mine: bool,
}

#[derive(Serialize)]
struct NodeView<'a> {
    #[serde(flatten)]
    member: &'a Member,
    groups: Vec<GroupView>,
}

impl Adapter {
    /// Reads `DIR/adapter.toml` and checks that every template exists and compiles.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, AdapterError> {
        let dir = dir.as_ref();
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let file = dir.join("adapter.toml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| AdapterError::Other(format!("{}: cannot read: {e}", file.display())))?;
        let mut cx = holdfast_tomlcheck::Checker::new(&file, &text);
        let raw: RawAdapter = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                cx.serde_error(&e);
                return Err(AdapterError::Invalid(cx.problems));
            }
        };
        for (field, values) in &raw.supports {
            match SUPPORTS.iter().find(|(f, _)| f == field) {
                None => cx.err(
                    &values.span(),
                    format!("supports.{field}"),
                    format!(
                        "not something an adapter can restrict (those are: {})",
                        SUPPORTS
                            .iter()
                            .map(|(f, _)| *f)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some((_, allowed)) => {
                    for v in values.get_ref() {
                        if !allowed.contains(&v.as_str()) {
                            cx.err(
                                &values.span(),
                                format!("supports.{field}"),
                                format!("{v:?} is not one of: {}", allowed.join(", ")),
                            );
                        }
                    }
                }
            }
        }
        let env = environment();
        for f in &raw.file {
            let p = dir.join(&f.get_ref().template);
            match std::fs::read_to_string(&p) {
                Err(e) => cx.err(
                    &f.span(),
                    "file.template",
                    format!("cannot read {}: {e}", p.display()),
                ),
                Ok(t) => {
                    if let Err(e) = env.template_from_named_str(&f.get_ref().template, &t) {
                        cx.err(&f.span(), "file.template", describe(&e));
                    }
                }
            }
        }
        for p in &raw.process {
            for (what, t) in [
                ("name", &p.get_ref().name),
                ("command", &p.get_ref().command),
            ] {
                if let Err(e) = env.template_from_str(t) {
                    cx.err(&p.span(), format!("process.{what}"), describe(&e));
                }
            }
        }
        if let Some(c) = &raw.cleanup
            && let Err(e) = shell_words::split(c.get_ref())
        {
            cx.err(
                &c.span(),
                "cleanup",
                format!("cannot split into words: {e}"),
            );
        }
        if raw.process.is_empty() {
            cx.err(&(0..0), "process", "an adapter starts at least one process");
        }
        if !cx.problems.is_empty() {
            return Err(AdapterError::Invalid(cx.problems));
        }
        Ok(Self {
            name: raw.name.into_inner(),
            dir,
            about: raw.about,
            requires: raw.requires,
            supports: raw
                .supports
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            files: raw.file.into_iter().map(Spanned::into_inner).collect(),
            processes: raw.process.into_iter().map(Spanned::into_inner).collect(),
            unsupported: raw.unsupported,
            settle_ms: raw.settle_ms,
            cleanup: raw.cleanup.map(Spanned::into_inner),
        })
    }

    /// The programs in `requires` that are not on `PATH`.
    pub fn missing_programs(&self) -> Vec<String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        self.requires
            .iter()
            .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .cloned()
            .collect()
    }

    /// Why the adapter cannot run this topology (no `[cluster]`, or a value it cannot express).
    pub fn cannot_express(&self, topo: &Topology) -> Option<String> {
        let Some(spec) = &topo.cluster else {
            return Some(format!("topology {} has no [cluster] to render", topo.name));
        };
        for (field, values) in &self.supports {
            let v = spec.choice(field).unwrap_or_default();
            if !values.contains(&v) {
                return Some(format!(
                    "{} cannot express {field} = {v:?} (topology {}; it supports: {})",
                    self.name,
                    topo.name,
                    values.join(", ")
                ));
            }
        }
        None
    }

    /// The cleanup command for a run, as an argument vector.
    pub fn cleanup_command(&self, run: &str, run_dir: &Path) -> Option<Vec<String>> {
        let c = self.cleanup.as_ref()?;
        let words = shell_words::split(c).ok()?;
        Some(
            words
                .iter()
                .map(|w| {
                    w.replace("{run_dir}", &run_dir.display().to_string())
                        .replace("{run}", run)
                })
                .collect(),
        )
    }

    /// Why the adapter declares a case (`case`) or variant (`case::variant`) unsupported.
    pub fn declared_unsupported(&self, case: &str, variant: Option<&str>) -> Option<&str> {
        variant
            .and_then(|v| self.unsupported.get(&format!("{case}::{v}")))
            .or_else(|| self.unsupported.get(case))
            .map(String::as_str)
    }

    /// The topology with the implementation's processes added to every member, its
    /// configuration files written under `config_root/NODE/`.
    pub fn render(&self, topo: &Topology, config_root: &Path) -> Result<Topology, AdapterError> {
        if let Some(why) = self.cannot_express(topo) {
            return Err(AdapterError::Other(why));
        }
        let spec = topo.cluster.as_ref().expect("checked by cannot_express");
        let mut env = environment();
        let mut sources = Vec::new();
        for f in &self.files {
            let p = self.dir.join(&f.template);
            let t = std::fs::read_to_string(&p)
                .map_err(|e| AdapterError::Other(format!("{}: {e}", p.display())))?;
            sources.push((f.template.clone(), t));
        }
        for (name, text) in sources {
            env.add_template_owned(name, text)
                .map_err(|e| AdapterError::Other(describe(&e)))?;
        }
        let mut out = topo.clone();
        for m in &spec.members {
            let config_dir = config_root.join(&m.node);
            std::fs::create_dir_all(&config_dir)
                .map_err(|e| AdapterError::Other(format!("{}: {e}", config_dir.display())))?;
            let node = NodeView {
                member: m,
                groups: groups_of(spec, &m.node),
            };
            let base = minijinja::context! {
                topology => minijinja::context! { name => &topo.name, dir => &topo.dir },
                cluster => spec,
                node => &node,
                config_dir => config_dir.display().to_string(),
            };
            for f in &self.files {
                let name = self.render_str(&env, &f.name, &base, "file.name")?;
                let text = env
                    .get_template(&f.template)
                    .and_then(|t| t.render(&base))
                    .map_err(|e| self.err(&f.template, &e))?;
                let p = config_dir.join(&name);
                let mode = if f.executable { 0o755 } else { 0o644 };
                std::fs::write(&p, text)
                    .and_then(|()| {
                        std::fs::set_permissions(
                            &p,
                            std::os::unix::fs::PermissionsExt::from_mode(mode),
                        )
                    })
                    .map_err(|e| AdapterError::Other(format!("{}: {e}", p.display())))?;
            }
            let mut procs = Vec::new();
            for p in &self.processes {
                let contexts: Vec<minijinja::Value> = match p.per {
                    Per::Node => vec![base.clone()],
                    Per::Group => node
                        .groups
                        .iter()
                        .map(|g| minijinja::context! { group => g, ..base.clone() })
                        .collect(),
                };
                for cx in contexts {
                    let name = self.render_str(&env, &p.name, &cx, "process.name")?;
                    let line = self.render_str(&env, &p.command, &cx, "process.command")?;
                    let command = shell_words::split(&line).map_err(|e| {
                        AdapterError::Other(format!(
                            "{}: process {name}: cannot split {line:?} into words: {e}",
                            self.file().display()
                        ))
                    })?;
                    procs.push(Process {
                        name,
                        command,
                        restart: p.restart,
                    });
                }
            }
            let n = out
                .nodes
                .iter_mut()
                .find(|n| n.name == m.node)
                .expect("members are nodes");
            let dummy = PathBuf::from("/run");
            for p in procs {
                if n.processes.iter().any(|x| x.name == p.name) {
                    return Err(AdapterError::Other(format!(
                        "{}: node {} already has a process named {:?}",
                        self.file().display(),
                        m.node,
                        p.name
                    )));
                }
                let tenv = TemplateEnv {
                    topology: topo,
                    node: &m.node,
                    run: "check",
                    run_dir: &dummy,
                    harness: &dummy,
                };
                for arg in &p.command {
                    expand(arg, &tenv).map_err(|e| {
                        AdapterError::Other(format!(
                            "{}: process {}: {e}",
                            self.file().display(),
                            p.name
                        ))
                    })?;
                }
                n.processes.push(p);
            }
        }
        Ok(out)
    }

    fn file(&self) -> PathBuf {
        self.dir.join("adapter.toml")
    }

    fn render_str(
        &self,
        env: &minijinja::Environment<'_>,
        template: &str,
        cx: &minijinja::Value,
        field: &str,
    ) -> Result<String, AdapterError> {
        env.render_str(template, cx).map_err(|e| {
            AdapterError::Other(format!(
                "{}: {field} {template:?}: {}",
                self.file().display(),
                describe(&e)
            ))
        })
    }

    fn err(&self, template: &str, e: &minijinja::Error) -> AdapterError {
        AdapterError::Other(format!(
            "{}: {}",
            self.dir.join(template).display(),
            describe(e)
        ))
    }
}

/// The groups `node` takes part in, as owner or backup, in member order.
pub fn groups_of(spec: &ClusterSpec, node: &str) -> Vec<GroupView> {
    spec.members
        .iter()
        .filter_map(|m| {
            let ranking: Vec<String> = std::iter::once(m.node.clone())
                .chain(m.backups.iter().cloned())
                .collect();
            let rank = ranking.iter().position(|n| n == node)?;
            Some(GroupView {
                index: m.index,
                owner: m.node.clone(),
                owns: m.owns.clone(),
                ranking,
                rank,
                mine: rank == 0,
            })
        })
        .collect()
}

/// Templates fail on an undefined name (a typo), never render it as empty.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// A template error with its line, and what caused it.
fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.line() {
        Some(l) => format!("line {l}: {e}"),
        None => e.to_string(),
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}
