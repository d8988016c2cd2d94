//! The documents agree with themselves and run on a reader's machine:
//! - no document names a folder of one machine (`/work/`, `/root/`);
//! - every CSV under `docs/results/` is referenced by a document, and every
//!   `results/NAME.EXT` a document references exists;
//! - every committed sweep CSV is well formed, and the test accuracy of each
//!   of its groups (mean ± sd over seeds, or the single value) is quoted by
//!   some document, so a table cannot drift from its CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Path prefixes that only exist on the machine a document was written on.
const MACHINE_PATHS: [&str; 2] = ["/work/", "/root/"];

/// Columns of a sweep CSV that say which configuration a cell ran; the
/// other columns are the seed and what was measured.
const KEY_COLUMNS: [&str; 4] = ["degree", "method", "basis", "boundary"];

/// Half a unit in the last place of a number quoted with two decimals.
const QUOTE_TOLERANCE: f64 = 0.0051;

struct Doc {
    path: PathBuf,
    text: String,
}

fn rel(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn markdown_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// README.md and every Markdown file under docs/.
fn documents() -> Vec<Doc> {
    let root = Path::new(ROOT);
    let mut paths = vec![root.join("README.md")];
    markdown_under(&root.join("docs"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", rel(&path)));
            Doc { path, text }
        })
        .collect()
}

fn result_csvs() -> BTreeSet<String> {
    result_files()
        .into_iter()
        .filter(|name| name.ends_with(".csv"))
        .collect()
}

/// Every `results/NAME.EXT` in `text` (links from docs/*.md and mentions of
/// `docs/results/NAME.EXT` alike).
fn result_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("results/") {
        let name: String = text[start + "results/".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .collect();
        let name = name.trim_end_matches('.');
        if let Some((stem, ext)) = name.rsplit_once('.')
            && !stem.is_empty()
            && !ext.is_empty()
        {
            found.push(name.to_string());
        }
    }
    found
}

/// The files directly in docs/results/.
fn result_files() -> BTreeSet<String> {
    let dir = Path::new(ROOT).join("docs/results");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

#[test]
fn no_document_names_a_folder_of_one_machine() {
    let mut problems = Vec::new();
    for doc in documents() {
        for (i, line) in doc.text.lines().enumerate() {
            for prefix in MACHINE_PATHS {
                if line.contains(prefix) {
                    problems.push(format!(
                        "{}:{}: names `{prefix}...`, a folder of one machine; write \
                         `../shared/data`, `$PNN_DATA` or a path relative to the checkout",
                        rel(&doc.path),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_results_csv_is_referenced_and_every_reference_exists() {
    let files = result_files();
    let mut referenced = BTreeSet::new();
    let mut problems = Vec::new();
    for doc in documents() {
        for name in result_references(&doc.text) {
            if !files.contains(&name) {
                problems.push(format!(
                    "{}: references results/{name}, which is not in docs/results/",
                    rel(&doc.path)
                ));
            }
            referenced.insert(name);
        }
    }
    for name in result_csvs().difference(&referenced) {
        problems.push(format!(
            "docs/results/{name} is referenced by no document: link it from the table it backs, \
             or remove it"
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// One CSV: its header and rows, checked rectangular.
fn read_csv(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let path = Path::new(ROOT).join("docs/results").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", rel(&path)));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("docs/results/{name}: empty file"))
        .split(',')
        .map(str::to_string)
        .collect();
    let rows: Vec<Vec<String>> = lines
        .enumerate()
        .map(|(i, line)| {
            let row: Vec<String> = line.split(',').map(str::to_string).collect();
            assert_eq!(
                row.len(),
                header.len(),
                "docs/results/{name}:{}: {} fields, the header has {}",
                i + 2,
                row.len(),
                header.len()
            );
            row
        })
        .collect();
    (header, rows)
}

/// Every `A ± B` and every plain decimal number quoted in the documents, and
/// the steps of every "diverged ... at step N[, M]" (as `pnnc sweep` writes them).
#[derive(Default)]
struct Quotes {
    pairs: Vec<(f64, f64)>,
    numbers: Vec<f64>,
    diverged_steps: BTreeSet<u64>,
}

impl Quotes {
    fn collect(docs: &[Doc]) -> Quotes {
        let mut q = Quotes::default();
        for doc in docs {
            let numbers = decimals(&doc.text);
            for (k, &(value, _, end)) in numbers.iter().enumerate() {
                q.numbers.push(value);
                if let Some(&(sd, next, _)) = numbers.get(k + 1)
                    && doc.text[end..next].trim() == "±"
                {
                    q.pairs.push((value, sd));
                }
            }
            for (at, _) in doc.text.match_indices("diverged") {
                q.diverged_steps.extend(steps_after(&doc.text[at..]));
            }
        }
        q
    }

    fn has_pair(&self, mean: f64, sd: f64) -> bool {
        self.pairs
            .iter()
            .any(|&(m, s)| (m - mean).abs() <= QUOTE_TOLERANCE && (s - sd).abs() <= QUOTE_TOLERANCE)
    }

    fn has_number(&self, x: f64) -> bool {
        self.numbers
            .iter()
            .any(|&v| (v - x).abs() <= QUOTE_TOLERANCE)
    }
}

/// Decimal numbers with a fractional part: (value, start, end) byte offsets.
fn decimals(text: &str) -> Vec<(f64, usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let token = text[start..i].trim_end_matches('.');
            if token.contains('.')
                && let Ok(v) = token.parse::<f64>()
            {
                out.push((v, start, start + token.len()));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The list of step numbers after the first "step" within a few words of the
/// start of `text` ("diverged at step 2", "diverged** at step 2, 5").
fn steps_after(text: &str) -> Vec<u64> {
    let near: String = text.chars().take(32).collect();
    let Some(at) = near.find("step") else {
        return Vec::new();
    };
    let rest = text[at..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let mut steps = Vec::new();
    for item in rest.split(',') {
        let item = item.trim_start();
        let digits: String = item.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => steps.push(n),
            Err(_) => break,
        }
        if digits.len() != item.trim_end().len() {
            break;
        }
    }
    steps
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[test]
fn every_sweep_csv_is_well_formed_and_quoted_by_a_document() {
    let docs = documents();
    let quotes = Quotes::collect(&docs);
    let mut problems = Vec::new();
    for name in result_csvs() {
        let (header, rows) = read_csv(&name);
        let col = |c: &str| header.iter().position(|h| h == c);
        let (Some(status), Some(acc)) = (col("status"), col("test_acc")) else {
            continue;
        };
        let step = col("diverged_step");
        let keys: Vec<(usize, &str)> = KEY_COLUMNS
            .iter()
            .filter_map(|k| Some((col(k)?, *k)))
            .collect();
        let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let line = i + 2;
            let value = &row[acc];
            match row[status].as_str() {
                "ok" => {
                    let v: f64 = value.parse().unwrap_or(f64::NAN);
                    if !(0.0..=1.0).contains(&v) {
                        problems.push(format!(
                            "docs/results/{name}:{line}: test_acc `{value}` is not an accuracy in [0, 1]"
                        ));
                        continue;
                    }
                    let key: Vec<String> = keys
                        .iter()
                        .map(|&(c, k)| {
                            format!("{k} {}", if row[c].is_empty() { "-" } else { &row[c] })
                        })
                        .collect();
                    groups.entry(key.join(", ")).or_default().push(100.0 * v);
                }
                "diverged" if value.is_empty() => {
                    let quoted = step
                        .and_then(|c| row[c].parse::<u64>().ok())
                        .is_some_and(|n| quotes.diverged_steps.contains(&n));
                    if !quoted {
                        problems.push(format!(
                            "docs/results/{name}:{line}: no document says this cell diverged at \
                             step `{}`",
                            step.map_or("?", |c| row[c].as_str())
                        ));
                    }
                }
                other => problems.push(format!(
                    "docs/results/{name}:{line}: status `{other}` with test_acc `{value}` \
                     (expected `ok` with an accuracy, or `diverged` without one)"
                )),
            }
        }
        for (key, accs) in groups {
            if accs.len() > 1 {
                let (m, s) = mean_sd(&accs);
                if !quotes.has_pair(m, s) {
                    problems.push(format!(
                        "docs/results/{name} ({key}): {m:.2} ± {s:.2} over {} seeds is quoted by \
                         no document; update the table or the CSV",
                        accs.len()
                    ));
                }
            } else if !quotes.has_number(accs[0]) {
                problems.push(format!(
                    "docs/results/{name} ({key}): {:.2} is quoted by no document; update the \
                     table or the CSV",
                    accs[0]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn quotes_are_found_where_tables_put_them() {
    let doc = Doc {
        path: PathBuf::from("t.md"),
        text: "| d2 | 70.14 | **68.69 ± 1.31** | 3.0x | v1.2. |".into(),
    };
    let q = Quotes::collect(&[doc]);
    assert!(q.has_pair(68.69, 1.31));
    assert!(q.has_pair(68.694, 1.306));
    assert!(!q.has_pair(68.70, 1.31));
    assert!(q.has_number(70.14));
    assert!(!q.has_number(70.2));
    let doc = Doc {
        path: PathBuf::from("t.md"),
        text: "No run diverged; degree 2. | diverged at step 2, 5 | **diverged** at step 7 (x)"
            .into(),
    };
    let q = Quotes::collect(&[doc]);
    assert_eq!(q.diverged_steps, BTreeSet::from([2, 5, 7]));
    assert_eq!(
        result_references(
            "[a](results/parity-cifar.csv), docs/results/x_y.svg. results.csv, docs/results/"
        ),
        ["parity-cifar.csv", "x_y.svg"]
    );
}
