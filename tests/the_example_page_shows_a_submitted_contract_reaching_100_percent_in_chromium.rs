//! The example service's page (`examples/contract-service/index.html`) in a real browser,
//! used as a person would: headless Chromium opens it, types a token, fills in a sample
//! contract and clicks "Analyse"; the page follows the run's events until its bar shows
//! 100 % and the run completed; a click on "report" shows the report. The test checks the
//! page's DOM against the service's own answer and saves a screenshot to
//! `target/contract-service.png` (under `CARGO_TARGET_DIR` when it is set).
//!
//! Chromium is driven over the DevTools protocol on a pipe (see `chromium`): every wait is
//! on the page itself, with a deadline, never a sleep. The service runs in memory (no
//! `DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod chromium;
mod example_service;

use std::path::{Path, PathBuf};

use chromium::Chromium;
use example_service::{executable, workspace, Service, HANG_LIMIT};
use serde_json::json;

const TOKEN: &str = "carol-token";
const SAMPLE: &str = "nda-mutual.md";

/// Cargo's target directory (`CARGO_TARGET_DIR` or `target/`): where the example's
/// executable is, `<target>/<profile>/examples/contract-service`.
fn target_dir() -> PathBuf {
    executable().ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| workspace().join("target"))
}

/// The element that starts at `start` (an opening tag's text) in `html`, up to its
/// matching `close` tag (`</tr>`); elements of the same name must not nest in it.
fn element<'a>(html: &'a str, start: &str, close: &str) -> Option<&'a str> {
    let from = html.find(start)?;
    let to = html[from..].find(close)?;
    Some(&html[from..from + to + close.len()])
}

/// The opening tag an element begins with.
fn opening_tag(element: &str) -> &str {
    &element[..=element.find('>').unwrap_or(element.len() - 1)]
}

/// Resolves once the first row of the runs table shows a completed run at 100 % with its
/// report button enabled, or the page shows an error: `{run, percents}` (every percent the
/// row showed, in order) or `{error}`.
const COMPLETED: &str = r##"new Promise((resolve) => {
  const percents = [];
  const check = () => {
    const error = document.getElementById("submit-error").textContent || document.getElementById("runs-error").textContent;
    const row = document.querySelector("#runs tr");
    if (row && row.dataset.percent !== undefined && percents[percents.length - 1] !== row.dataset.percent) {
      percents.push(row.dataset.percent);
    }
    const done = row && row.dataset.percent === "100" && row.querySelector(".status").textContent === "completed"
      && !row.querySelector(".view").disabled;
    if (error || done) {
      observer.disconnect();
      resolve(error ? { error } : { run: row.dataset.run, percents });
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  check();
})"##;

#[test]
fn the_example_page_shows_a_submitted_contract_reaching_100_percent_in_chromium() {
    let service = Service::start(&[("GRAPHLOOP_TOKENS", &format!("carol={TOKEN}"))]);
    let text = std::fs::read_to_string(workspace().join("samples").join(SAMPLE)).unwrap();
    let screenshot = target_dir().join("contract-service.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut browser = Chromium::launch(1100, 900, HANG_LIMIT);
    browser.navigate(&format!("http://{}/", service.addr));
    // The token as typed (the page keeps it on `change`), the contract, then "Analyse".
    browser.eval(&format!(
        r##"(() => {{
            const token = document.getElementById("token");
            token.value = {token};
            token.dispatchEvent(new Event("change"));
            document.getElementById("name").value = {name};
            document.getElementById("text").value = {text};
            document.querySelector("#submit button[type=submit]").click();
        }})()"##,
        token = json!(TOKEN),
        name = json!(SAMPLE),
        text = json!(text),
    ));
    let completed = browser.eval(COMPLETED);
    assert_eq!(completed.get("error"), None, "the page shows an error");
    let run = completed["run"].as_str().unwrap().to_owned();
    let percents: Vec<u32> =
        completed["percents"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().parse().unwrap()).collect();
    assert!(percents.windows(2).all(|pair| pair[0] <= pair[1]), "the bar went back: {percents:?}");
    // "report", and the report shows.
    browser.eval(&format!(
        r#"new Promise((resolve) => {{
            const report = document.getElementById("report");
            const observer = new MutationObserver(() => {{
                if (report.dataset.run === {run}) {{ observer.disconnect(); resolve(); }}
            }});
            observer.observe(report, {{ attributes: true }});
            document.querySelector('#runs tr[data-run="' + {run} + '"] .view').click();
        }})"#,
        run = json!(run),
    ));
    // The bar's width is a CSS transition: once it has run, the bar is full.
    let (bar, track) = {
        let widths = browser.eval(
            r##"Promise.all(document.getAnimations().map((animation) => animation.finished)).then(() => {
                const bar = document.querySelector("#runs tr .bar");
                return [bar.firstElementChild.getBoundingClientRect().width, bar.getBoundingClientRect().width];
            })"##,
        );
        (widths[0].as_f64().unwrap(), widths[1].as_f64().unwrap())
    };
    assert!(bar > 0.0 && (track - bar).abs() < 0.5, "the bar is {bar} px wide in a track of {track} px");
    let dom = browser.eval("document.documentElement.outerHTML").as_str().unwrap().to_owned();
    browser.screenshot(&screenshot);
    browser.close();

    // Nothing went wrong on the page.
    for empty in [r#"<span id="submit-error" class="error"></span>"#, r#"<p id="runs-error" class="error"></p>"#] {
        assert!(dom.contains(empty), "the page shows an error (expected `{empty}`):\n{dom}");
    }
    // One row, the submitted contract's, completed at 100 %.
    let rows = element(&dom, r#"<tbody id="runs">"#, "</tbody>").unwrap_or_else(|| panic!("no runs table:\n{dom}"));
    assert_eq!(rows.matches("<tr ").count(), 1, "the page does not list exactly the contract it was given:\n{rows}");
    let row = element(rows, "<tr ", "</tr>").unwrap();
    let tag = opening_tag(row);
    assert!(tag.contains(&format!(r#"data-run="{run}""#)), "the row is not the run's: {row}");
    assert!(tag.contains(r#"class="status-completed""#), "the row is not completed: {row}");
    assert!(tag.contains(r#"data-percent="100""#), "the row's progress is not at 100 %: {row}");
    assert!(row.contains(r#"<td class="status">completed</td>"#), "{row}");
    assert!(row.contains(r#"<span>100%</span>"#), "the bar does not say 100 %: {row}");
    assert!(row.contains(&format!(r#"<td class="name"><span>{SAMPLE}</span></td>"#)), "{row}");

    // The report of that run, as the service has it.
    let shown = service.get(&format!("/runs/{run}"), Some(TOKEN));
    assert_eq!(shown.status, 200, "the page's run {run} is not carol's");
    let shown = shown.json();
    assert_eq!((&shown["status"], &shown["output"]["name"]), (&json!("completed"), &json!(SAMPLE)));
    let report = element(&dom, r#"<section id="report""#, "</section>").unwrap_or_else(|| panic!("no report:\n{dom}"));
    assert!(
        opening_tag(report).contains(&format!(r#"data-run="{run}""#)),
        "the report shown is not the run's: {report}"
    );
    let score = shown["output"]["report"]["score"].as_u64().unwrap();
    assert!(report.contains(&format!("<b>Score {score}/100.</b>")), "the report does not show score {score}: {report}");
    assert!(row.contains(&format!(r#"<td class="score">{score}/100</td>"#)), "{row}");

    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(png.starts_with(b"\x89PNG"), "{} is not a PNG", screenshot.display());
}
