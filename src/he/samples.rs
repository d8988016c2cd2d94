//! Samples for the HE commands (`simulate`, `calibrate`, `he-run`): one way to
//! give a model its inputs, either the test split of its data set or a JSON
//! file (docs/cli.md, "Samples").
//!
//! JSON samples hold *raw* values (as the model reads them, before the
//! normalisation that the circuit folds in). Accepted shapes:
//! - `[{"x": [...], "label": 3}, ...]` (label optional; other keys ignored);
//! - `[[...], ...]`, an array of sample vectors;
//! - `{"samples": [[...], ...], "labels": [...]}` (what `he-run --inputs` read first).
//!
//! Nested vectors (`[C][H][W]`) are flattened.

use crate::data::{Dataset, LoadOptions};
use crate::ir::DataSpec;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which test samples to take when fewer than all are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Pick {
    /// N evenly spaced over the split (test splits are often sorted by class).
    #[default]
    Spread,
    /// The first N.
    First,
}

/// Raw samples with optional labels and, for a data set, their test-split indices.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleSet {
    pub x: Vec<Vec<f64>>,
    pub labels: Vec<Option<usize>>,
    /// Index of each sample in the test split (data sets only).
    pub test_indices: Option<Vec<usize>>,
}

impl SampleSet {
    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// Where samples come from: a JSON file, or a data set's test split.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleSource {
    Json(PathBuf),
    /// The model's own data set; the folder (if any) is searched first.
    Dataset(Option<PathBuf>),
}

/// Everything [`load`] needs besides the source.
pub struct Request<'a> {
    /// Values one sample has.
    pub input_len: usize,
    /// At most this many samples (None: all).
    pub limit: Option<usize>,
    pub pick: Pick,
    /// The model's `train { data: ... }` (for [`SampleSource::Dataset`]).
    pub spec: Option<&'a DataSpec>,
    /// Folder of the model or circuit: relative data paths resolve against it.
    pub model_dir: Option<PathBuf>,
    /// Names the file that holds the data spec in messages.
    pub owner: &'a Path,
}

pub fn load(source: &SampleSource, req: &Request) -> Result<SampleSet, String> {
    if req.limit == Some(0) {
        return Err("-n 0 selects no samples (need at least one)".into());
    }
    match source {
        SampleSource::Json(path) => read_json(path, req.input_len, req.limit),
        SampleSource::Dataset(dir) => {
            let test = load_test_split(req, dir.as_deref())?;
            from_dataset(&test, req.input_len, req.limit, req.pick)
        }
    }
}

fn load_test_split(req: &Request, dir: Option<&Path>) -> Result<Dataset, String> {
    let owner = req.owner.display();
    let spec = req.spec.ok_or_else(|| {
        format!(
            "{owner}: names no data set (its model has no `train {{ data: ... }}`)\n  help: pass samples with --inputs FILE"
        )
    })?;
    if let Some(dir) = dir
        && dir.is_file()
    {
        return Err(format!(
            "{}: `--data` takes a data-set folder, this is a file\n  help: pass JSON samples with --inputs {}",
            dir.display(),
            dir.display()
        ));
    }
    let opts = LoadOptions {
        data_dir: dir.map(Path::to_path_buf),
        model_dir: req.model_dir.clone(),
        use_cache: true,
        ..Default::default()
    };
    crate::data::load_raw(spec, &opts)
        .map(|raw| raw.test)
        .map_err(|e| {
            format!(
                "{owner}: cannot load its data set: {e}\n  help: pass --data DIR with the data folder, or --inputs FILE"
            )
        })
}

/// `limit` samples of `test` (the first, or evenly spaced) with labels and indices.
pub fn from_dataset(
    test: &Dataset,
    input_len: usize,
    limit: Option<usize>,
    pick: Pick,
) -> Result<SampleSet, String> {
    if test.sample_len() != input_len {
        return Err(format!(
            "the data set's samples have {} values, the model's input needs {input_len}",
            test.sample_len()
        ));
    }
    if test.is_empty() || limit == Some(0) {
        return Err("no test samples to run (need at least one, and -n >= 1)".into());
    }
    let take = limit.unwrap_or(usize::MAX).min(test.len());
    let indices: Vec<usize> = match pick {
        Pick::First => (0..take).collect(),
        Pick::Spread => (0..take).map(|i| i * test.len() / take).collect(),
    };
    Ok(SampleSet {
        x: indices
            .iter()
            .map(|&i| test.sample(i).iter().map(|&v| f64::from(v)).collect())
            .collect(),
        labels: indices.iter().map(|&i| Some(test.y[i] as usize)).collect(),
        test_indices: Some(indices),
    })
}

/// The first `limit` samples of a JSON file in any accepted shape, length-checked.
pub fn read_json(path: &Path, input_len: usize, limit: Option<usize>) -> Result<SampleSet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    parse_json(&doc, input_len, limit).map_err(|m| {
        format!(
            "{}: {m}\n  help: write [{{\"x\": [...], \"label\": 3}}, ...] (raw values, label optional)",
            path.display()
        )
    })
}

fn parse_json(doc: &Value, input_len: usize, limit: Option<usize>) -> Result<SampleSet, String> {
    let (items, labels): (&[Value], Option<&Value>) = match doc {
        Value::Array(items) => (items, None),
        Value::Object(map) => match map.get("samples") {
            Some(Value::Array(items)) => (items, map.get("labels")),
            _ => return Err("expected an array of samples, or an object with `samples`".into()),
        },
        _ => return Err("expected an array of samples".into()),
    };
    if items.is_empty() {
        return Err("holds no samples".into());
    }
    let take = limit.unwrap_or(usize::MAX).min(items.len());
    let labels: Vec<Option<usize>> = match labels {
        None | Some(Value::Null) => items[..take]
            .iter()
            .map(item_label)
            .collect::<Result<_, _>>()?,
        Some(Value::Array(l)) if l.len() >= take => {
            l[..take].iter().map(label).collect::<Result<_, _>>()?
        }
        Some(_) => return Err("`labels` must be an array with one entry per sample".into()),
    };
    let mut x = Vec::with_capacity(take);
    for (i, item) in items[..take].iter().enumerate() {
        let values = match item {
            Value::Object(o) => o.get("x"),
            v => Some(v),
        };
        let values = values
            .and_then(flatten_numbers)
            .ok_or_else(|| format!("sample {i} is not an array of finite numbers"))?;
        if values.len() != input_len {
            return Err(format!(
                "sample {i} has {} values, the model's input needs {input_len}",
                values.len()
            ));
        }
        x.push(values);
    }
    Ok(SampleSet {
        x,
        labels,
        test_indices: None,
    })
}

fn item_label(item: &Value) -> Result<Option<usize>, String> {
    match item {
        Value::Object(o) => o.get("label").map_or(Ok(None), label),
        _ => Ok(None),
    }
}

fn label(v: &Value) -> Result<Option<usize>, String> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .map(|l| Some(l as usize))
            .ok_or_else(|| format!("label {v} is not a class index")),
    }
}

/// A (possibly nested, e.g. [C][H][W]) array of finite numbers, flattened.
fn flatten_numbers(v: &Value) -> Option<Vec<f64>> {
    fn walk(v: &Value, out: &mut Vec<f64>) -> bool {
        match v {
            Value::Number(x) => match x.as_f64() {
                Some(x) if x.is_finite() => {
                    out.push(x);
                    true
                }
                _ => false,
            },
            Value::Array(items) => items.iter().all(|item| walk(item, out)),
            _ => false,
        }
    }
    let mut out = Vec::new();
    (matches!(v, Value::Array(_)) && walk(v, &mut out)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_json_shape_reads_the_same_samples() {
        let want = SampleSet {
            x: vec![vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0, 7.0, 8.0]],
            labels: vec![Some(1), None],
            test_indices: None,
        };
        let objects =
            json!([{"x": [[1, 2], [3, 4]], "label": 1}, {"x": [5, 6, 7, 8], "logits": [0]}]);
        assert_eq!(parse_json(&objects, 4, None).unwrap(), want);
        let old = json!({"samples": [[[1, 2], [3, 4]], [5, 6, 7, 8], [0, 0, 0, 0]], "labels": [1, null, 2]});
        assert_eq!(parse_json(&old, 4, Some(2)).unwrap(), want);
        let arrays = json!([[1, 2, 3, 4], [5, 6, 7, 8]]);
        let plain = parse_json(&arrays, 4, None).unwrap();
        assert_eq!((plain.x, plain.labels), (want.x, vec![None, None]));
    }

    #[test]
    fn bad_json_samples_are_named() {
        let err = parse_json(&json!([[1, 2, 3]]), 4, None).unwrap_err();
        assert!(
            err.contains("sample 0 has 3 values") && err.contains("needs 4"),
            "{err}"
        );
        let err = parse_json(&json!([[1, "a"]]), 2, None).unwrap_err();
        assert!(
            err.contains("sample 0 is not an array of finite numbers"),
            "{err}"
        );
        let err = parse_json(&json!([{"x": [1, 2], "label": -1}]), 2, None).unwrap_err();
        assert!(err.contains("label -1"), "{err}");
        assert!(parse_json(&json!([]), 2, None).is_err());
        assert!(parse_json(&json!({"samples": [[1]], "labels": []}), 1, None).is_err());
        assert!(parse_json(&json!(3), 2, None).is_err());
    }

    #[test]
    fn test_split_samples_are_limited_labelled_and_length_checked() {
        let test = Dataset {
            sample_shape: vec![2],
            x: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            y: vec![2, 0, 1],
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        let first = from_dataset(&test, 2, Some(2), Pick::First).unwrap();
        assert_eq!(first.x, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(first.labels, vec![Some(2), Some(0)]);
        // Evenly spaced: 2 of 3 -> indices 0 and 1 (i * 3 / 2).
        let spread = from_dataset(&test, 2, Some(2), Pick::Spread).unwrap();
        assert_eq!(spread.test_indices, Some(vec![0, 1]));
        let all = from_dataset(&test, 2, None, Pick::Spread).unwrap();
        assert_eq!(all.labels, vec![Some(2), Some(0), Some(1)]);
        let err = from_dataset(&test, 3, Some(2), Pick::First).unwrap_err();
        assert!(
            err.contains("have 2 values") && err.contains("needs 3"),
            "{err}"
        );
        assert!(from_dataset(&test, 2, Some(0), Pick::First).is_err());
    }

    #[test]
    fn a_file_given_as_data_folder_points_to_inputs() {
        let dir = std::env::temp_dir().join(format!("pnnc-samples-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.json");
        std::fs::write(&file, "[]").unwrap();
        let spec = DataSpec {
            source: crate::ir::DataSource::Mnist,
            path: None,
            val_fraction: 0.1,
            split: crate::ir::SplitBy::Random,
            limit_train: None,
            augment: Default::default(),
        };
        let req = Request {
            input_len: 1,
            limit: None,
            pick: Pick::Spread,
            spec: Some(&spec),
            model_dir: None,
            owner: Path::new("m.circuit.json"),
        };
        let err = load(&SampleSource::Dataset(Some(file.clone())), &req).unwrap_err();
        assert!(
            err.contains("takes a data-set folder") && err.contains("--inputs"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
