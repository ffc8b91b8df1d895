//! The interop matrix in one command: every case against every implementation installed here
//! (every adapter in `adapters/` whose programs are on the PATH), one cluster at a time, then
//! the reports (`pcaps/out/report.{json,junit.xml,md,html}`). Exit status 1 when any verdict
//! differs from the implementation's expected results.
//!
//! `sudo cargo run -p holdfast-conformance --bin interop [-- IMPL...]`

use std::path::PathBuf;

use holdfast_conformance::case::{Case, files};
use holdfast_conformance::report::{CaseResult, Report, load_all, out_dir, write_reports};
use holdfast_conformance::run::{Expected, kind_of, root, run_case};

/// Whether the programs the implementation's adapter needs are on the PATH.
fn installed(imp: &str) -> bool {
    match holdfast_conformance::run::adapter(imp) {
        Ok(a) => {
            let missing = a.missing_programs();
            if !missing.is_empty() {
                eprintln!("{imp}: skipped, not installed ({})", missing.join(", "));
            }
            missing.is_empty()
        }
        Err(e) => {
            eprintln!("{e}");
            false
        }
    }
}

fn main() {
    if !holdfast_harness::privileged() {
        eprintln!("interop: needs root (network namespaces)");
        std::process::exit(2);
    }
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let imps: Vec<String> = if asked.is_empty() {
        holdfast_conformance::run::implementations()
            .into_iter()
            .filter(|i| installed(i))
            .collect()
    } else {
        asked
    };
    // holdfastd and the harness, built beside this binary.
    let exe = std::env::current_exe().expect("current exe");
    let bin_dir: PathBuf = exe.parent().expect("bin dir").to_owned();
    let release = bin_dir.ends_with("release");
    let mut build = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    build.args(["build", "-q", "-p", "holdfastd", "-p", "holdfast-harness"]);
    if release {
        build.arg("--release");
    }
    let _ = build.status();
    let dir = root().join("conformance/cases");
    let mut cases = Vec::new();
    for f in files(&dir) {
        match Case::load(&dir, &f) {
            Ok(c) => cases.extend(c),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }
    let mut surprises = 0;
    for imp in &imps {
        let expected = Expected::load(imp).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        });
        let _ = std::fs::remove_dir_all(out_dir().join("results").join(imp));
        for case in &cases {
            let (want, why) = expected.of(case);
            let result = run_case(case, imp, &bin_dir);
            let got = kind_of(&result);
            let r = CaseResult::of(case, imp, &result, want, &why);
            if let Err(e) = r.save() {
                eprintln!("{}: result not saved: {e}", case.name());
            }
            if got == want {
                if let Ok(v) = &result {
                    let _ = holdfast_harness::shrink::shrink_dir(&v.run_dir);
                }
            } else {
                surprises += 1;
            }
            println!(
                "{imp:>10}  {:<45} {:<11}{}",
                case.name(),
                got.name(),
                if got == want {
                    String::new()
                } else {
                    format!("  (expected {})", want.name())
                }
            );
        }
    }
    let rep = Report::new(load_all());
    match write_reports(&rep, &out_dir()) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
        }
        Err(e) => eprintln!("interop: {e}"),
    }
    if surprises > 0 {
        println!("{surprises} verdicts differ from the expected results");
        std::process::exit(1);
    }
}
