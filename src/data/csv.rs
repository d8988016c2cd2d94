//! CSV: a header line, one row per sample, one label column (named in the
//! model file), every other column a number. Sample shape `[features]`.

use super::{DataError, Dataset, RawData};
use std::path::Path;

struct Table {
    features: usize,
    x: Vec<f32>,
    labels: Vec<(usize, String)>, // (line number, label text)
}

fn read_table(path: &Path, label: &str) -> Result<Table, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| DataError::format(path, "line 1", "empty file; expected a header line"))?;
    let cols: Vec<&str> = header
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    let label_col = cols.iter().position(|c| *c == label).ok_or_else(|| {
        DataError::format(
            path,
            "line 1",
            format!(
                "no column named `{label}` in the header (columns: {})",
                cols.join(", ")
            ),
        )
    })?;
    let mut t = Table {
        features: cols.len() - 1,
        x: Vec::new(),
        labels: Vec::new(),
    };
    for (ln, line) in lines {
        let place = || format!("line {}", ln + 1);
        let fields: Vec<&str> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        if fields.len() != cols.len() {
            return Err(DataError::format(
                path,
                place(),
                format!(
                    "{} columns, expected {} as in the header",
                    fields.len(),
                    cols.len()
                ),
            ));
        }
        for (c, f) in fields.iter().enumerate() {
            if c == label_col {
                t.labels.push((ln + 1, f.to_string()));
                continue;
            }
            let v: f32 = f.parse().map_err(|_| {
                DataError::format(
                    path,
                    place(),
                    format!("column `{}`: `{f}` is not a number", cols[c]),
                )
            })?;
            t.x.push(v);
        }
    }
    if t.labels.is_empty() {
        return Err(DataError::format(
            path,
            "end of file",
            "no data rows after the header",
        ));
    }
    Ok(t)
}

pub fn load_pair(
    train: &Path,
    test: Option<&Path>,
    label: &str,
    classes: Option<usize>,
) -> Result<RawData, DataError> {
    let tr = read_table(train, label)?;
    let te = test.map(|p| read_table(p, label)).transpose()?;
    // Integer labels when a class count is given or every label is an integer.
    let all_int = std::iter::once(&tr)
        .chain(&te)
        .flat_map(|t| &t.labels)
        .all(|(_, l)| l.parse::<u32>().is_ok());
    let class_names: Vec<String> = match classes {
        Some(k) => (0..k).map(|i| i.to_string()).collect(),
        None if all_int => {
            let max = tr
                .labels
                .iter()
                .filter_map(|(_, l)| l.parse::<u32>().ok())
                .max()
                .unwrap_or(0);
            (0..=max).map(|i| i.to_string()).collect()
        }
        None => {
            let mut names: Vec<String> = tr.labels.iter().map(|(_, l)| l.clone()).collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let features = tr.features;
    let to_set = |t: Table, path: &Path| -> Result<Dataset, DataError> {
        if t.features != features {
            return Err(DataError::format(
                path,
                "line 1",
                format!(
                    "{} feature columns, the train file has {features}",
                    t.features
                ),
            ));
        }
        let y = t
            .labels
            .iter()
            .map(|(ln, l)| {
                let idx = if classes.is_some() || all_int {
                    l.parse::<usize>().ok().filter(|&i| i < class_names.len())
                } else {
                    class_names.iter().position(|c| c == l)
                };
                idx.map(|i| i as u32).ok_or_else(|| {
                    DataError::format(
                        path,
                        format!("line {ln}"),
                        format!(
                            "label `{l}` is outside the class range (classes: {})",
                            if class_names.len() > 12 {
                                format!("0..{}", class_names.len() - 1)
                            } else {
                                class_names.join(", ")
                            }
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dataset {
            sample_shape: vec![t.features],
            x: t.x,
            y,
            class_names: class_names.clone(),
        })
    };
    let train_set = to_set(tr, train)?;
    let test_set = match (te, test) {
        (Some(t), Some(p)) => to_set(t, p)?,
        _ => Dataset {
            sample_shape: vec![features],
            class_names: class_names.clone(),
            ..Default::default()
        },
    };
    Ok(RawData {
        train: train_set,
        test: test_set,
        train_groups: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::write;

    #[test]
    fn reads_rows_with_named_label_column() {
        let d = tempfile::tempdir().unwrap();
        let tr = write(
            d.path(),
            "tr.csv",
            b"a,kind,b\n1,cat,2\n3,dog,4.5\n\n5,cat,6\n",
        );
        let te = write(d.path(), "te.csv", b"a,kind,b\n7,dog,8\n");
        let r = load_pair(&tr, Some(&te), "kind", None).unwrap();
        assert_eq!(r.train.sample_shape, [2]);
        assert_eq!(r.train.y, [0, 1, 0]);
        assert_eq!(r.train.sample(1), &[3.0, 4.5]);
        assert_eq!(r.test.y, [1]);
        assert_eq!(r.train.class_names, ["cat", "dog"]);
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "x.csv", b"a,label\n1,0\n2\n");
        let e = load_pair(&p, None, "label", None).unwrap_err().to_string();
        assert!(e.contains("x.csv: line 3: 1 columns, expected 2"), "{e}");
        let p = write(d.path(), "y.csv", b"a,label\n1,0\n2,7\n");
        let e = load_pair(&p, None, "label", Some(3))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.csv: line 3: label `7` is outside the class range"),
            "{e}"
        );
        let p = write(d.path(), "z.csv", b"a,label\nfoo,0\n");
        let e = load_pair(&p, None, "label", None).unwrap_err().to_string();
        assert!(
            e.contains("z.csv: line 2: column `a`: `foo` is not a number"),
            "{e}"
        );
        let e = load_pair(&p, None, "class", None).unwrap_err().to_string();
        assert!(e.contains("z.csv: line 1: no column named `class`"), "{e}");
        let tr = write(d.path(), "tr.csv", b"a,label\n1,cat\n");
        let te = write(d.path(), "te.csv", b"a,label\n1,cow\n");
        let e = load_pair(&tr, Some(&te), "label", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("te.csv: line 2: label `cow`"), "{e}");
    }
}
