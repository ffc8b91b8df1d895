//! Writes the conformance reports from the results the last runs saved
//! (`pcaps/out/results/IMPL/*.json`): `pcaps/out/report.{json,junit.xml,md,html}`, and appends
//! the Markdown to `$GITHUB_STEP_SUMMARY` when that is set. Run the suite first
//! (`cargo test -p holdfast-conformance --test conformance`, with `HOLDFAST_IMPL=...` for each
//! implementation), or use the `interop` binary, which does both.

use holdfast_conformance::report::{Report, load_all, out_dir, write_reports};

fn main() {
    let results = load_all();
    if results.is_empty() {
        eprintln!(
            "report: no results under {}/results: run the conformance suite first",
            out_dir().display()
        );
        std::process::exit(2);
    }
    let rep = Report::new(results);
    match write_reports(&rep, &out_dir()) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("report: {e}");
            std::process::exit(2);
        }
    }
    if let Some(p) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(p) {
            let _ = f.write_all(holdfast_conformance::report::markdown(&rep).as_bytes());
        }
    }
    for imp in &rep.implementations {
        let t: Vec<String> = rep.totals[imp]
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!("{imp}: {}", t.join(", "));
    }
}
