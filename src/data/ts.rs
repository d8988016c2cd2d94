//! The UEA/sktime `.ts` text format (equal-length multivariate series, one
//! case per line: dimensions separated by `:`, class label last).

use super::{DataError, Dataset, RawData};
use std::path::Path;

pub fn load_pair(train: &Path, test: &Path) -> Result<RawData, DataError> {
    let train = load_file(train, None)?;
    let test = load_file(test, Some(&train.class_names))?;
    if test.sample_shape != train.sample_shape {
        return Err(DataError::Invalid(format!(
            "train cases have shape {:?} but test cases have {:?}",
            train.sample_shape, test.sample_shape
        )));
    }
    Ok(RawData {
        train,
        test,
        train_groups: Vec::new(),
    })
}

/// Parse one `.ts` file; `classes` forces the class order (the train file's).
pub fn load_file(path: &Path, classes: Option<&[String]>) -> Result<Dataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let err = |line: usize, msg: String| DataError::format(path, format!("line {}", line + 1), msg);
    let mut class_names: Option<Vec<String>> = classes.map(|c| c.to_vec());
    let mut in_data = false;
    let mut set = Dataset::default();
    let mut shape: Option<(usize, usize)> = None;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !in_data {
            let lower = line.to_ascii_lowercase();
            if lower == "@data" {
                in_data = true;
            } else if let Some(rest) = lower.strip_prefix("@classlabel") {
                let mut words = line[line.len() - rest.len()..].split_whitespace();
                if words.next() != Some("true") {
                    return Err(err(
                        ln,
                        "`@classLabel false`: pnnc needs labelled cases".into(),
                    ));
                }
                let declared: Vec<String> = words.map(String::from).collect();
                if class_names.is_none() {
                    class_names = Some(declared);
                }
            } else if lower.starts_with("@timestamps true") {
                return Err(err(
                    ln,
                    "time-stamped series are not supported; expected `@timeStamps false`".into(),
                ));
            }
            continue;
        }
        let names = class_names.as_ref().ok_or_else(|| {
            err(
                ln,
                "data before any `@classLabel true ...` header line".into(),
            )
        })?;
        let fields: Vec<&str> = line.split(':').collect();
        let (label, dims) = fields
            .split_last()
            .ok_or_else(|| err(ln, "empty case".into()))?;
        let label = label.trim();
        let y = names.iter().position(|c| c == label).ok_or_else(|| {
            err(
                ln,
                format!("class `{label}` is not one of the declared classes {names:?}"),
            )
        })?;
        let mut len = None;
        for (d, dim) in dims.iter().enumerate() {
            let mut count = 0;
            for v in dim.split(',') {
                let parsed: f32 = v.trim().parse().map_err(|_| {
                    err(ln, format!("dimension {d}: `{}` is not a number (missing values are not supported)", v.trim()))
                })?;
                set.x.push(parsed);
                count += 1;
            }
            if *len.get_or_insert(count) != count {
                return Err(err(
                    ln,
                    format!(
                        "dimension {d} has {count} values, dimension 0 has {}",
                        len.unwrap_or(0)
                    ),
                ));
            }
        }
        let this = (dims.len(), len.unwrap_or(0));
        match shape {
            None => shape = Some(this),
            Some(s) if s != this => {
                return Err(err(
                    ln,
                    format!(
                        "case has {} dimensions of length {}, expected {} of length {} like the first case",
                        this.0, this.1, s.0, s.1
                    ),
                ));
            }
            _ => {}
        }
        set.y.push(y as u32);
    }
    if !in_data || set.is_empty() {
        return Err(DataError::format(
            path,
            "end of file",
            "no `@data` section with cases",
        ));
    }
    let (dims, len) = shape.unwrap_or((0, 0));
    set.sample_shape = vec![dims, len];
    set.class_names = class_names.unwrap_or_default();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{real_data, write};

    const HEADER: &str =
        "# comment\n@problemName T\n@univariate false\n@classLabel true Up Down\n@data\n";

    #[test]
    fn parses_cases_channel_major() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.ts",
            format!("{HEADER}1,2,3:4,5,6:Down\n7,8,9:1.5,-2,3e1:Up\n").as_bytes(),
        );
        let s = load_file(&p, None).unwrap();
        assert_eq!(s.sample_shape, [2, 3]);
        assert_eq!(s.y, [1, 0]);
        assert_eq!(s.sample(1), &[7.0, 8.0, 9.0, 1.5, -2.0, 30.0]);
        assert_eq!(s.class_names, ["Up", "Down"]);
    }

    #[test]
    fn malformed_cases_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        for (body, want) in [
            ("1,2:3,4:Sideways\n", "line 6: class `Sideways`"),
            ("1,2:3,4:Up\n1,2:Up\n", "line 7: case has 1 dimensions"),
            ("1,2:3,x:Up\n", "line 6: dimension 1: `x` is not a number"),
            ("1,2:3:Up\n", "line 6: dimension 1 has 1 values"),
        ] {
            let p = write(d.path(), "b.ts", format!("{HEADER}{body}").as_bytes());
            let e = load_file(&p, None).unwrap_err().to_string();
            assert!(e.contains(&format!("b.ts: {want}")), "{e}");
        }
        let p = write(d.path(), "c.ts", b"@classLabel true A\n");
        assert!(
            load_file(&p, None)
                .unwrap_err()
                .to_string()
                .contains("c.ts: end of file")
        );
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_basicmotions),
        ignore = "needs the BasicMotions data set: ../shared/data/basicmotions or $PNN_DATA/basicmotions"
    )]
    fn real_basicmotions_counts() {
        let dir = real_data("basicmotions");
        let r = load_pair(
            &dir.join("BasicMotions_TRAIN.ts"),
            &dir.join("BasicMotions_TEST.ts"),
        )
        .unwrap();
        assert_eq!(r.train.sample_shape, [6, 100]);
        assert_eq!(r.train.class_histogram(), [10; 4]);
        assert_eq!(r.test.class_histogram(), [10; 4]);
        assert_eq!(
            r.train.class_names,
            ["Standing", "Running", "Walking", "Badminton"]
        );
    }
}
