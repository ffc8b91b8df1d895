//! The reports a conformance run leaves: report.json reads back, the JUnit file is well-formed
//! XML that counts what it should, and report.html, opened in headless Chromium, shows the
//! matrix with a cell per implementation and case.

use holdfast_conformance::report::{CaseResult, Failure, Moment, Report, write_reports};

fn result(imp: &str, name: &str, verdict: &str, expected: &str) -> CaseResult {
    CaseResult {
        implementation: imp.into(),
        name: name.into(),
        claims: vec![1, 9],
        summary: "Verify that <something> & more.".into(),
        verdict: verdict.into(),
        expected: expected.into(),
        why: if expected == "pass" { "" } else { "because" }.into(),
        as_expected: verdict == expected,
        failures: if verdict == "fail" {
            vec![Failure {
                line: 12,
                what: "no reset".into(),
                evidence: "#12 0.93 sw0:b sent TCP 198.18.0.10:7 > 198.18.0.100:1 [R]".into(),
            }]
        } else {
            Vec::new()
        },
        note: (verdict == "unsupported").then(|| "no profile".into()),
        run_dir: Some(format!("{name}/run")),
        files: vec![format!("{name}/run/sw0.pcapng")],
        timeline: vec![Moment {
            t: 0.5,
            what: "power-off a".into(),
        }],
    }
}

fn sample() -> Report {
    Report::new(vec![
        result("holdfastd", "takeover/x::power-off", "pass", "pass"),
        result("keepalived", "takeover/x::power-off", "fail", "fail"),
        result("holdfastd", "takeover/y::crash", "pass", "pass"),
        result(
            "keepalived",
            "takeover/y::crash",
            "unsupported",
            "unsupported",
        ),
        result("holdfastd", "boot/z::default", "fail", "pass"),
        result("keepalived", "boot/z::default", "error", "fail"),
    ])
}

fn dir(name: &str) -> holdfast_harness::ScratchDir {
    holdfast_harness::ScratchDir::new(&format!("holdfast-report-{name}")).unwrap()
}

#[test]
fn report_json_reads_back_and_counts() {
    let d = dir("json");
    let rep = sample();
    write_reports(&rep, &d).unwrap();
    let back: Report =
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(back.results, rep.results);
    assert_eq!(back.implementations, ["holdfastd", "keepalived"]);
    assert_eq!(back.totals["holdfastd"]["pass"], 2);
    assert_eq!(back.totals["holdfastd"]["not as expected"], 1);
    assert_eq!(back.totals["keepalived"]["unsupported"], 1);
}

#[test]
fn junit_is_well_formed_and_counts_surprises_only() {
    use quick_xml::events::Event;
    let d = dir("junit");
    write_reports(&sample(), &d).unwrap();
    let text = std::fs::read_to_string(d.join("report.junit.xml")).unwrap();
    let mut r = quick_xml::Reader::from_str(&text);
    r.config_mut().check_end_names = true;
    let (mut cases, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("not XML: {e}\n{text}"))
        {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testcase" => cases += 1,
                b"failure" => failures += 1,
                b"error" => errors += 1,
                b"skipped" => skipped += 1,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(cases, 6, "{text}");
    // holdfastd's unexpected fail is a failure, keepalived's unexpected error an error; the
    // expected fail is not a failure; the unsupported one is skipped.
    assert_eq!((failures, errors, skipped), (1, 1, 1), "{text}");
    assert!(!text.contains("<something>"), "unescaped text:\n{text}");
}

#[test]
fn headless_chromium_shows_the_matrix() {
    let d = dir("html");
    write_reports(&sample(), &d).unwrap();
    let page = d.join("report.html");
    let Some(dom) = holdfast_harness::headless_dom(&page) else {
        holdfast_harness::report_skip(
            "skipped: chromium is not installed (.ci/run installs it): the report was not opened",
        );
        return;
    };
    assert!(dom.contains("<table id=\"matrix\">"), "{dom}");
    for cell in [
        "<th>holdfastd</th>",
        "<th>keepalived</th>",
        "<code>takeover/x::power-off</code>",
        "class=\"fail surprise\"",
        "class=\"unsupported\"",
        "href=\"#keepalived--takeover-x--power-off\"",
    ] {
        assert!(dom.contains(cell), "{cell} not in the page:\n{dom}");
    }
    assert!(
        dom.contains("id=\"keepalived--takeover-x--power-off\""),
        "the cell's section"
    );
    assert!(
        dom.contains("Verify that &lt;something&gt; &amp; more."),
        "escaped text"
    );
}
