//! The conformance suite: one trial per case and variant (libtest-mimic), against the
//! implementation named by `HOLDFAST_IMPL` (default holdfastd). A trial passes when the
//! implementation does exactly what its expected results say (`adapters/IMP/expected.toml` and
//! the cases its `adapter.toml` declares unsupported): every other case passes.
//!
//! `cargo test -p holdfast-conformance -- --list`; filters work as usual
//! (`cargo test -p holdfast-conformance -- failover`).

use std::path::PathBuf;
use std::process::ExitCode;

use holdfast_conformance::case::{Case, files};
use holdfast_conformance::report::CaseResult;
use holdfast_conformance::run::{Expected, Kind, implementation, kind_of, root, run_case};
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

/// Why the cases skip without root, though the harness could run them in a rootless sandbox.
const SKIP_CONFORMANCE: &str = "skipped: not root. A case's verdict is compared across \
    implementations, and without CAP_SYS_NICE holdfastd's 10 ms heartbeats get no real-time \
    priority: on a loaded 2-core machine that turned arbitration/spread into a false failure in \
    1 of 5 rootless runs. HOLDFAST_CONFORMANCE_ROOTLESS=1 runs them rootless anyway";

fn main() -> ExitCode {
    // Not root: with HOLDFAST_CONFORMANCE_ROOTLESS=1 the whole suite runs again in a user
    // namespace where it is; by default every case skips, saying why (SKIP_CONFORMANCE).
    if !holdfast_harness::privileged()
        && !holdfast_harness::rootless::inside()
        && holdfast_harness::rootless::unavailable().is_none()
        && std::env::var_os("HOLDFAST_CONFORMANCE_ROOTLESS").is_some()
    {
        eprintln!("not root: the suite runs in a user namespace of its own (rootless)");
        return match holdfast_harness::rootless::rerun_self() {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("cannot make the rootless sandbox: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut args = Arguments::from_args();
    // One cluster at a time unless asked otherwise: the cases use 10 ms heartbeats, and on a
    // 2-core machine several clusters at once can starve a daemon long enough to be declared
    // failed, which is the machine's fault, not the implementation's.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let dir = root().join("conformance/cases");
    let imp = implementation();
    let expected = match Expected::load(&imp) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // An implementation that is not installed is skipped, and says so, case by case.
    let missing = match holdfast_conformance::run::adapter(&imp) {
        Ok(a) => a.missing_programs(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut trials = Vec::new();
    let mut load_errors = Vec::new();
    for f in files(&dir) {
        match Case::load(&dir, &f) {
            Ok(cases) => {
                for case in cases {
                    let name = case.name();
                    let (want, why) = expected.of(&case);
                    let kind = imp.clone();
                    let imp = imp.clone();
                    let missing = missing.clone();
                    trials.push(Trial::test(name, move || {
                        if !holdfast_harness::privileged() {
                            holdfast_harness::report_skip(SKIP_CONFORMANCE);
                            return Ok(());
                        }
                        if !missing.is_empty() {
                            holdfast_harness::report_skip(&format!(
                                "skipped: {imp} is not installed (missing: {}; .ci/run installs it)",
                                missing.join(", ")
                            ));
                            return Ok(());
                        }
                        let result = run_case(&case, &imp, &bin_dir());
                        let got = kind_of(&result);
                        // For the reports (`cargo run -p holdfast-conformance --bin report`).
                        if let Err(e) = CaseResult::of(&case, &imp, &result, want, &why).save() {
                            eprintln!("{}: result not saved: {e}", case.name());
                        }
                        let detail = match &result {
                            Ok(v) if !v.passed() => v.report(&case),
                            Ok(v) => format!("pcaps: {}", v.run_dir.display()),
                            Err(e) => e.to_string(),
                        };
                        if got == want {
                            // As expected: the captures are kept small (TCP frames cut to
                            // their headers); a surprise keeps everything for the reader.
                            if let Ok(v) = &result {
                                let _ = holdfast_harness::shrink::shrink_dir(&v.run_dir);
                            }
                            if got != Kind::Pass {
                                // As expected: show what failed (the resets, the missing
                                // messages), so the comparison is visible, not just counted.
                                eprintln!("{} [{imp}]: {} as expected ({why})\n{detail}", case.name(), got.name());
                            }
                            return Ok(());
                        }
                        let hint = if want == Kind::Pass {
                            String::new()
                        } else {
                            format!(" (expected {}: {why}; update adapters/{imp}/expected.toml if this is right)", want.name())
                        };
                        Err(Failed::from(format!(
                            "{}\n{imp}: {}{hint}\n{detail}",
                            case.summary,
                            got.name()
                        )))
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
        // A whole run replaces the implementation's saved results (a filtered one adds to them).
        if args.filter.is_none() && args.skip.is_empty() {
            let _ = std::fs::remove_dir_all(
                holdfast_conformance::report::out_dir()
                    .join("results")
                    .join(&imp),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}
