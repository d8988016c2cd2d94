//! HAPT raw inertial recordings (flat little-endian binaries) cut into
//! UCI-HAR-style windows within constant-label runs, with the subject split.

use super::{DataError, Dataset, RawData, existing_variant, read_maybe_gz};
use std::path::{Path, PathBuf};

/// UCI-HAR's test subjects.
pub const TEST_USERS: [i16; 9] = [2, 4, 9, 10, 12, 13, 18, 20, 24];
pub const CHANNELS: usize = 6;

pub fn class_names() -> Vec<String> {
    [
        "WALKING",
        "WALKING_UPSTAIRS",
        "WALKING_DOWNSTAIRS",
        "SITTING",
        "STANDING",
        "LAYING",
    ]
    .map(String::from)
    .to_vec()
}

pub fn load_dir(dir: &Path, window: usize, stride: usize) -> Result<RawData, DataError> {
    let find = |name: &str| -> Result<PathBuf, DataError> {
        let p = dir.join(name);
        existing_variant(&p).ok_or_else(|| {
            DataError::io(
                &p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            )
        })
    };
    let (raw_path, meta_path) = (find("hapt_raw_f32.bin.gz")?, find("hapt_meta_i16.bin.gz")?);
    let (raw, meta) = rayon::join(|| read_maybe_gz(&raw_path), || read_maybe_gz(&meta_path));
    windows(&raw?, &meta?, &raw_path, &meta_path, window, stride)
}

/// Cut windows from the raw rows (N x 6 f32) and meta rows (N x 3 i16: user, experiment, label).
pub fn windows(
    raw: &[u8],
    meta: &[u8],
    raw_path: &Path,
    meta_path: &Path,
    window: usize,
    stride: usize,
) -> Result<RawData, DataError> {
    if !raw.len().is_multiple_of(4 * CHANNELS) {
        return Err(DataError::format(
            raw_path,
            format!("byte {}", raw.len() - raw.len() % (4 * CHANNELS)),
            format!(
                "length {} is not a whole number of 24-byte rows (6 x f32)",
                raw.len()
            ),
        ));
    }
    if !meta.len().is_multiple_of(6) {
        return Err(DataError::format(
            meta_path,
            format!("byte {}", meta.len() - meta.len() % 6),
            format!(
                "length {} is not a whole number of 6-byte rows (3 x i16)",
                meta.len()
            ),
        ));
    }
    let n = raw.len() / 24;
    if meta.len() / 6 != n {
        return Err(DataError::format(
            meta_path,
            "whole file",
            format!(
                "holds {} rows but {} holds {n}; each raw row needs one meta row",
                meta.len() / 6,
                raw_path.display()
            ),
        ));
    }
    let meta_row = |i: usize| {
        let m = &meta[i * 6..i * 6 + 6];
        [
            i16::from_le_bytes([m[0], m[1]]),
            i16::from_le_bytes([m[2], m[3]]),
            i16::from_le_bytes([m[4], m[5]]),
        ]
    };
    let value = |row: usize, c: usize| {
        let o = row * 24 + c * 4;
        f32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]])
    };
    let names = class_names();
    let mut train = Dataset {
        sample_shape: vec![CHANNELS, window],
        class_names: names.clone(),
        ..Default::default()
    };
    let mut test = train.clone();
    let mut train_groups = Vec::new();
    let mut start = 0;
    while start < n {
        let [user, exp, label] = meta_row(start);
        if !(-1..=12).contains(&label) || user < 1 {
            return Err(DataError::format(
                meta_path,
                format!("row {start}"),
                format!("user {user}, label {label}: expected user >= 1 and label in -1..12"),
            ));
        }
        let mut end = start + 1;
        while end < n && meta_row(end) == [user, exp, label] {
            end += 1;
        }
        if (1..=6).contains(&label) {
            let is_test = TEST_USERS.contains(&user);
            let set = if is_test { &mut test } else { &mut train };
            let mut off = start;
            while off + window <= end {
                for c in 0..CHANNELS {
                    for t in 0..window {
                        set.x.push(value(off + t, c));
                    }
                }
                set.y.push(label as u32 - 1);
                if !is_test {
                    train_groups.push(user as u32);
                }
                off += stride;
            }
        }
        start = end;
    }
    if let Some(i) = train.x.iter().chain(&test.x).position(|v| !v.is_finite()) {
        return Err(DataError::format(
            raw_path,
            format!("window value {i}"),
            "NaN or infinite sensor value",
        ));
    }
    Ok(RawData {
        train,
        test,
        train_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::real_data;

    fn rows(meta: &[[i16; 3]]) -> (Vec<u8>, Vec<u8>) {
        let raw: Vec<u8> = (0..meta.len() * 6)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let m: Vec<u8> = meta
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        (raw, m)
    }

    #[test]
    fn windows_stay_within_constant_label_runs_and_split_by_subject() {
        let mut meta = vec![[1, 0, 1]; 10]; // user 1: 10 rows label 1 -> windows at 0, 2, 4, 6
        meta.extend(vec![[1, 0, -1]; 3]); // unlabelled: skipped
        meta.extend(vec![[1, 0, 7]; 5]); // transition: skipped
        meta.extend(vec![[2, 0, 6]; 5]); // test user 2, label 6 -> windows at 0
        meta.extend(vec![[3, 0, 6]; 3]); // too short
        let (raw, m) = rows(&meta);
        let r = windows(&raw, &m, Path::new("r"), Path::new("m"), 4, 2).unwrap();
        assert_eq!(r.train.y, vec![0, 0, 0, 0]);
        assert_eq!(r.train_groups, vec![1, 1, 1, 1]);
        assert_eq!(r.test.y, vec![5]);
        // Channel-major: channel 1 of the second window holds rows 2..6, column 1.
        let s = r.train.sample(1);
        assert_eq!(&s[4..8], &[13.0, 19.0, 25.0, 31.0]);
        assert_eq!(r.test.sample(0)[0], (18 * 6) as f32);
    }

    #[test]
    fn malformed_binaries_are_located() {
        let (raw, m) = rows(&[[1, 0, 1]; 4]);
        let e = windows(
            &raw[..raw.len() - 3],
            &m,
            Path::new("raw.bin"),
            Path::new("meta.bin"),
            2,
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("raw.bin: byte 72: length 93 is not a whole number"),
            "{e}"
        );
        let e = windows(
            &raw,
            &m[..12],
            Path::new("raw.bin"),
            Path::new("meta.bin"),
            2,
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("meta.bin: whole file: holds 2 rows"), "{e}");
        let (raw, m) = rows(&[[1, 0, 1], [1, 0, 40]]);
        let e = windows(&raw, &m, Path::new("raw.bin"), Path::new("meta.bin"), 2, 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("meta.bin: row 1: user 1, label 40"), "{e}");
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_hapt),
        ignore = "needs the HAPT data set: ../shared/data/hapt or $PNN_DATA/hapt"
    )]
    fn real_hapt_counts() {
        let dir = real_data("hapt");
        let r = load_dir(&dir, 128, 64).unwrap();
        assert_eq!((r.train.len(), r.test.len()), (7415, 2996));
        let total: Vec<usize> = r
            .train
            .class_histogram()
            .iter()
            .zip(r.test.class_histogram())
            .map(|(a, b)| a + b)
            .collect();
        assert_eq!(total, [1722, 1544, 1407, 1801, 1979, 1958]);
        assert_eq!(r.train.sample_shape, vec![6, 128]);
    }
}
