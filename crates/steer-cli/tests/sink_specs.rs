//! Every sink spec documented in `docs/backends/*.md` parses through the
//! `steer` binary (`steer sinks SPEC...`), and every scheme the binary
//! knows is documented. The docs are read here, so a newly documented
//! spec (a row of a `| spec | example | meaning |` table) is covered, and
//! a newly registered scheme without docs fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn steer(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_steer"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("STEER_PRICES")
        .output()
        .expect("run steer")
}

/// The scheme of a grammar or spec: its leading `[a-z0-9]` characters.
fn scheme(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// `(file, grammar, example)` of every row of every spec table.
fn documented() -> Vec<(String, String, String)> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/backends");
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&docs)
        .expect("docs/backends")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).expect("read doc");
        let mut in_table = false;
        let mut n = 0;
        for line in text.lines() {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() >= 2 && cells[0] == "spec" && cells[1] == "example" {
                in_table = true;
                continue;
            }
            if !line.trim_start().starts_with('|') {
                in_table = false;
                continue;
            }
            if in_table && !cells[0].starts_with("---") {
                let unquote = |c: &str| c.trim().trim_matches('`').to_string();
                rows.push((name.clone(), unquote(cells[0]), unquote(cells[1])));
                n += 1;
            }
        }
        assert!(
            n > 0,
            "{name} documents no sink spec (a `| spec | example | meaning |` table)"
        );
    }
    rows
}

#[test]
fn every_documented_spec_parses_through_the_cli() {
    let rows = documented();
    let mut specs: Vec<String> = rows.iter().map(|(_, _, example)| example.clone()).collect();
    specs.extend([
        "sqlite:steer-metrics.db".into(),
        "jsonl:calls.jsonl".into(),
        "log".into(),
    ]);
    for (file, grammar, example) in &rows {
        assert_eq!(
            scheme(grammar),
            scheme(example),
            "{file}: `{example}` is not an example of `{grammar}`"
        );
    }
    let args: Vec<&str> = std::iter::once("sinks")
        .chain(specs.iter().map(String::as_str))
        .collect();
    let out = steer(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "steer sinks failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), specs.len(), "{stdout}");
    // One spec at a time too, so a failure names its spec.
    for s in &specs {
        let out = steer(&["sinks", s]);
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(!shown.contains(":pw@"), "{s} displayed its password: {shown}");
    }
}

#[test]
fn every_known_scheme_is_documented() {
    let documented: BTreeSet<String> = documented()
        .iter()
        .map(|(_, _, example)| scheme(example))
        .chain(["sqlite", "jsonl", "log"].map(String::from))
        .collect();
    let out = steer(&["sinks"]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    let known: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .flat_map(|s| s.split(','))
        .map(String::from)
        .collect();
    let undocumented: Vec<_> = known.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "schemes without docs: {undocumented:?}\n{listing}"
    );
}

#[test]
fn an_invalid_spec_is_a_usage_error_without_its_password() {
    let out = steer(&["sinks", "influxdbs://u:hunter2-SECRET@h:8086/db?nope=1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid `influxdb` sink spec"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
