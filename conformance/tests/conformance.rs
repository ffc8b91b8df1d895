//! The conformance suite: one trial per case and variant (libtest-mimic), against the
//! implementation named by `HOLDFAST_IMPL` (default holdfastd). A trial passes when the
//! implementation does exactly what `conformance/expected/IMPL.toml` says: every case passes
//! unless listed there as an expected failure, and a listed case must fail.
//!
//! `cargo test -p holdfast-conformance -- --list`; filters work as usual
//! (`cargo test -p holdfast-conformance -- failover`).

use std::path::PathBuf;
use std::process::ExitCode;

use holdfast_conformance::case::{Case, files};
use holdfast_conformance::run::{
    expected_failures, expected_to_fail, implementation, root, run_case,
};
use libtest_mimic::{Arguments, Failed, Trial};

/// The directory holding `holdfastd` and `holdfast-harness` (a cargo target directory).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).to_owned()
}

/// When run by cargo, makes sure the implementation's binaries are built and current.
fn ensure_built() {
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = bin_dir().ends_with("release");
        let mut c = std::process::Command::new(cargo);
        c.args(["build", "-q", "-p", "holdfastd", "-p", "holdfast-harness"]);
        if release {
            c.arg("--release");
        }
        let _ = c.status();
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One cluster at a time unless asked otherwise: the cases use 10 ms heartbeats, and on a
    // 2-core machine several clusters at once can starve a daemon long enough to be declared
    // failed, which is the machine's fault, not the implementation's.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let dir = root().join("conformance/cases");
    let imp = implementation();
    let fails = expected_failures(&imp);
    let mut trials = Vec::new();
    let mut load_errors = Vec::new();
    for f in files(&dir) {
        match Case::load(&dir, &f) {
            Ok(cases) => {
                for case in cases {
                    let name = case.name();
                    let expect_fail = expected_to_fail(&case, &fails);
                    let kind = imp.clone();
                    let imp = imp.clone();
                    trials.push(Trial::test(name, move || {
                        if !holdfast_harness::privileged() {
                            holdfast_harness::report_skip(holdfast_harness::SKIP_UNPRIVILEGED);
                            return Ok(());
                        }
                        let verdict = run_case(&case, &imp, &bin_dir());
                        match (verdict, expect_fail) {
                            (Ok(v), None) if v.passed() => Ok(()),
                            (Ok(v), None) => Err(Failed::from(format!(
                                "{}\n{}",
                                case.summary,
                                v.report(&case)
                            ))),
                            (Err(e), None) => Err(Failed::from(format!("{}: {e}", case.summary))),
                            (Ok(v), Some(why)) if v.passed() => Err(Failed::from(format!(
                                "{imp} was expected to fail ({why}) but passed: update conformance/expected/{imp}.toml\npcaps: {}",
                                v.run_dir.display()
                            ))),
                            (Ok(v), Some(why)) => {
                                // As expected: show what failed (the resets, the missing
                                // messages), so the comparison is visible, not just counted.
                                eprintln!("{} [{imp}]: fails as expected ({why})\n{}", case.name(), v.report(&case));
                                Ok(())
                            }
                            (Err(e), Some(why)) => {
                                eprintln!("{} [{imp}]: cannot run, as expected ({why}): {e}", case.name());
                                Ok(())
                            }
                        }
                    }).with_kind(kind));
                }
            }
            Err(e) => load_errors.push(e.to_string()),
        }
    }
    if !load_errors.is_empty() {
        eprintln!("{}", load_errors.join("\n"));
        return ExitCode::from(2);
    }
    if !args.list {
        ensure_built();
    }
    libtest_mimic::run(&args, trials).exit_code()
}
