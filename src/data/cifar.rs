//! CIFAR-10: the JPEG tar layout (`train|test/<class>/NNNN.jpg`, decoded in
//! parallel) and the standard binary batches (1 label byte + 3072 pixel bytes).

use super::{DataError, Dataset, RawData, existing_variant, read_maybe_gz};
use crate::ir::CifarFormat;
use rayon::prelude::*;
use std::io::Read;
use std::path::Path;

pub fn class_names() -> Vec<String> {
    [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .map(String::from)
    .to_vec()
}

pub fn load(dir: &Path, format: CifarFormat) -> Result<RawData, DataError> {
    match format {
        CifarFormat::JpegTar => load_jpeg_tar(&dir.join("cifar10-jpeg.tar.gz")),
        CifarFormat::Binary => load_binary_dir(dir),
    }
}

/// A regular tar member: its name and bytes.
pub struct Member {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// All regular files of a tar(.gz) whose names end with `suffix`, sorted by name.
pub fn tar_members(path: &Path, suffix: &str) -> Result<Vec<Member>, DataError> {
    let bytes = read_maybe_gz(path)?;
    let mut archive = tar::Archive::new(&bytes[..]);
    let entries = archive.entries().map_err(|e| {
        DataError::format(
            path,
            "tar header",
            format!("not a readable tar archive: {e}"),
        )
    })?;
    let mut out = Vec::new();
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            DataError::format(
                path,
                format!("tar entry {i}"),
                format!("unreadable tar member: {e}"),
            )
        })?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| {
                DataError::format(
                    path,
                    format!("tar entry {i}"),
                    format!("bad member name: {e}"),
                )
            })?;
        if !name.ends_with(suffix) {
            continue;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(|e| {
            DataError::format(
                path,
                format!("member {name}"),
                format!("unreadable tar member: {e}"),
            )
        })?;
        if (data.len() as u64) < entry.size() {
            return Err(DataError::format(
                path,
                format!("member {name}"),
                format!(
                    "unreadable tar member: truncated ({} of {} bytes)",
                    data.len(),
                    entry.size()
                ),
            ));
        }
        out.push(Member { name, bytes: data });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Decode one JPEG to interleaved RGB bytes: (height, width, pixels).
fn decode_rgb(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let rgb = decoder
        .decode()
        .map_err(|e| format!("corrupt JPEG: {e:?}"))?;
    let info = decoder.info().ok_or("corrupt JPEG: no header")?;
    let (w, h) = (info.width as usize, info.height as usize);
    if rgb.len() != w * h * 3 {
        return Err(format!(
            "JPEG decoded to {} bytes, expected {w}x{h}x3 RGB",
            rgb.len()
        ));
    }
    Ok((h, w, rgb))
}

/// Interleaved RGB bytes to planar `[3, h, w]` values in [0, 1], written into `out`.
fn to_planar(rgb: &[u8], out: &mut [f32]) {
    let plane = out.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
        (*r, *g, *b) = (
            px[0] as f32 / 255.0,
            px[1] as f32 / 255.0,
            px[2] as f32 / 255.0,
        );
    }
}

/// Decode one JPEG to planar RGB `[3, h, w]` in [0, 1].
pub fn decode_jpeg(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    let (h, w, rgb) = decode_rgb(bytes)?;
    let mut out = vec![0f32; 3 * h * w];
    to_planar(&rgb, &mut out);
    Ok((h, w, out))
}

/// Decode one JPEG of exactly `h` x `w` pixels into `out` (`3 * h * w` values, planar).
fn decode_jpeg_into(bytes: &[u8], h: usize, w: usize, out: &mut [f32]) -> Result<(), String> {
    let (dh, dw, rgb) = decode_rgb(bytes)?;
    if (dh, dw) != (h, w) {
        return Err(format!(
            "image is {dw}x{dh}, expected {w}x{h} like the first image"
        ));
    }
    to_planar(&rgb, out);
    Ok(())
}

/// The `.jpg` members of a CIFAR tar with their split (true = test) and class index,
/// and the class names (alphabetical order of the class folders).
/// Members, (is_test, class index) per member, class names.
pub type JpegIndex = (Vec<Member>, Vec<(bool, u32)>, Vec<String>);

pub fn index_jpeg_tar(path: &Path) -> Result<JpegIndex, DataError> {
    let members = tar_members(path, ".jpg")?;
    let mut named = Vec::with_capacity(members.len());
    for m in &members {
        let parts: Vec<&str> = m.name.trim_start_matches("./").split('/').collect();
        let [split @ ("train" | "test"), class, _file] = parts[..] else {
            return Err(DataError::format(
                path,
                format!("member {}", m.name),
                "expected a name like train/<class>/NNNN.jpg or test/<class>/NNNN.jpg",
            ));
        };
        named.push((split == "test", class.to_string()));
    }
    let mut classes: Vec<String> = named.iter().map(|(_, c)| c.clone()).collect();
    classes.sort();
    classes.dedup();
    let parsed = named
        .into_iter()
        .map(|(t, c)| (t, classes.binary_search(&c).unwrap_or(0) as u32))
        .collect();
    Ok((members, parsed, classes))
}

pub fn load_jpeg_tar(path: &Path) -> Result<RawData, DataError> {
    let (members, parsed, classes) = index_jpeg_tar(path)?;
    let at =
        |i: usize, e: String| DataError::format(path, format!("member {}", members[i].name), e);
    // The first image fixes the size of all; each image is decoded straight into its slot.
    let (h, w) = match members.first() {
        Some(m) => decode_rgb(&m.bytes)
            .map(|(h, w, _)| (h, w))
            .map_err(|e| at(0, e))?,
        None => (32, 32),
    };
    let sample = 3 * h * w;
    let [train, test] = [false, true].map(|is_test| -> Result<Dataset, DataError> {
        let picked: Vec<usize> = (0..members.len())
            .filter(|&i| parsed[i].0 == is_test)
            .collect();
        let mut x = vec![0f32; picked.len() * sample];
        x.par_chunks_exact_mut(sample)
            .zip(picked.par_iter())
            .try_for_each(|(out, &i)| {
                decode_jpeg_into(&members[i].bytes, h, w, out).map_err(|e| at(i, e))
            })?;
        Ok(Dataset {
            sample_shape: vec![3, h, w],
            x,
            y: picked.iter().map(|&i| parsed[i].1).collect(),
            class_names: classes.clone(),
        })
    });
    Ok(RawData {
        train: train?,
        test: test?,
        train_groups: Vec::new(),
    })
}

const RECORD: usize = 1 + 3 * 32 * 32;

pub fn load_binary_dir(dir: &Path) -> Result<RawData, DataError> {
    let mut train = Dataset {
        sample_shape: vec![3, 32, 32],
        class_names: class_names(),
        ..Default::default()
    };
    let mut test = train.clone();
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        match existing_variant(&p) {
            Some(p) => read_batch(&p, &mut train)?,
            None if i == 1 => return Err(DataError::io(&p, std::io::ErrorKind::NotFound.into())),
            None => break,
        }
    }
    let p = dir.join("test_batch.bin");
    let p = existing_variant(&p)
        .ok_or_else(|| DataError::io(&p, std::io::ErrorKind::NotFound.into()))?;
    read_batch(&p, &mut test)?;
    Ok(RawData {
        train,
        test,
        train_groups: Vec::new(),
    })
}

/// Append one binary batch file to `set`.
pub fn read_batch(path: &Path, set: &mut Dataset) -> Result<(), DataError> {
    let bytes = read_maybe_gz(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::format(
            path,
            format!("record {}", bytes.len() / RECORD),
            format!(
                "length {} is not a whole number of {RECORD}-byte records (1 label + 3072 pixels)",
                bytes.len()
            ),
        ));
    }
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(DataError::format(
                path,
                format!("record {i} (byte {})", i * RECORD),
                format!("label {} is outside the class range 0..9", rec[0]),
            ));
        }
        set.y.push(rec[0] as u32);
        set.x.extend(rec[1..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::testutil::{gz, real_data, write};

    /// A w x h JPEG of one solid colour.
    pub fn jpeg(w: u16, h: u16, rgb: [u8; 3]) -> Vec<u8> {
        let px: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| rgb).collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    pub fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &bytes[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn jpeg_tar_decodes_classes_and_splits() {
        let d = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("train/cat/0000.jpg", jpeg(8, 8, [250, 10, 10])),
            ("train/airplane/0000.jpg", jpeg(8, 8, [10, 10, 250])),
            ("train/airplane/README.txt", b"ignored".to_vec()),
            ("test/cat/0000.jpg", jpeg(8, 8, [10, 250, 10])),
        ]);
        let p = write(d.path(), "cifar10-jpeg.tar.gz", &gz(&tar));
        let r = load_jpeg_tar(&p).unwrap();
        assert_eq!(r.train.class_names, ["airplane", "cat"]);
        assert_eq!(r.train.y, [0, 1]); // sorted by member name
        assert_eq!(r.test.y, [1]);
        assert_eq!(r.train.sample_shape, [3, 8, 8]);
        let s = r.train.sample(0);
        assert!(
            s[0] < 0.15 && s[128] > 0.9,
            "blue airplane: {} {}",
            s[0],
            s[128]
        );
        assert!(r.test.sample(0)[64] > 0.9);
    }

    #[test]
    fn corrupt_jpeg_and_bad_tar_name_the_member() {
        let d = tempfile::tempdir().unwrap();
        let mut bad = jpeg(8, 8, [1, 2, 3]);
        bad.truncate(40);
        let p = write(d.path(), "a.tar", &tar_of(&[("train/cat/0001.jpg", bad)]));
        let e = load_jpeg_tar(&p).unwrap_err().to_string();
        assert!(
            e.contains("a.tar: member train/cat/0001.jpg: corrupt JPEG"),
            "{e}"
        );

        let p = write(
            d.path(),
            "b.tar",
            &tar_of(&[("cat/0001.jpg", jpeg(8, 8, [0; 3]))]),
        );
        let e = load_jpeg_tar(&p).unwrap_err().to_string();
        assert!(
            e.contains("b.tar: member cat/0001.jpg: expected a name like"),
            "{e}"
        );

        // A member whose data is cut off by the end of the archive.
        let full = tar_of(&[("train/cat/0001.jpg", jpeg(16, 16, [9; 3]))]);
        let p = write(d.path(), "c.tar", &full[..600]);
        let e = load_jpeg_tar(&p).unwrap_err().to_string();
        assert!(
            e.contains("c.tar: member train/cat/0001.jpg: unreadable tar member"),
            "{e}"
        );
    }

    #[test]
    fn binary_batches_decode_and_reject_bad_records() {
        let d = tempfile::tempdir().unwrap();
        let mut rec = vec![3u8];
        rec.extend((0..3072).map(|i| (i % 256) as u8));
        let two: Vec<u8> = rec.iter().chain(&rec).copied().collect();
        write(d.path(), "data_batch_1.bin", &two);
        write(d.path(), "test_batch.bin", &rec);
        let r = load_binary_dir(d.path()).unwrap();
        assert_eq!((r.train.len(), r.test.len()), (2, 1));
        assert_eq!(r.train.y, [3, 3]);
        assert_eq!(r.train.sample(1)[1], 1.0 / 255.0);

        write(d.path(), "test_batch.bin", &rec[..3000]);
        let e = load_binary_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin: record 0: length 3000"), "{e}");
        let mut badlabel = two.clone();
        badlabel[RECORD] = 11;
        write(d.path(), "data_batch_1.bin", &badlabel);
        let e = load_binary_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_1.bin: record 1 (byte 3073): label 11"),
            "{e}"
        );
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_cifar10),
        ignore = "needs the CIFAR-10 data set: ../shared/data/cifar10 or $PNN_DATA/cifar10"
    )]
    fn real_cifar10_counts() {
        let dir = real_data("cifar10");
        // Counts from the member names; decoding all 60,000 is the benchmark's job.
        let (members, parsed, classes) = index_jpeg_tar(&dir.join("cifar10-jpeg.tar.gz")).unwrap();
        assert_eq!(classes, class_names());
        let mut hist = [[0usize; 10]; 2];
        for (is_test, c) in &parsed {
            hist[*is_test as usize][*c as usize] += 1;
        }
        assert_eq!(hist, [[5000; 10], [1000; 10]]);
        for m in members.iter().take(50) {
            let (h, w, _) = decode_jpeg(&m.bytes).unwrap();
            assert_eq!((h, w), (32, 32), "{}", m.name);
        }
    }
}
