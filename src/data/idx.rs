//! IDX files (MNIST, Fashion-MNIST): big-endian header, unsigned-byte payload,
//! gzip-compressed or raw.

use super::{DataError, Dataset, RawData, existing_variant, read_maybe_gz};
use crate::ir::IdxFiles;
use std::path::{Path, PathBuf};

pub fn digit_names(classes: usize) -> Vec<String> {
    (0..classes).map(|i| i.to_string()).collect()
}

pub fn fashion_names() -> Vec<String> {
    [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    .map(String::from)
    .to_vec()
}

/// Load the four files of `files` from `dir` (each `.gz` or raw).
pub fn load_dir(
    dir: &Path,
    files: &IdxFiles,
    class_names: Vec<String>,
) -> Result<RawData, DataError> {
    let find = |name: &str| -> Result<PathBuf, DataError> {
        let p = dir.join(name);
        existing_variant(&p).ok_or_else(|| {
            DataError::io(
                &p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            )
        })
    };
    let (train_images, train_labels, test_images, test_labels) = (
        find(&files.train_images)?,
        find(&files.train_labels)?,
        find(&files.test_images)?,
        find(&files.test_labels)?,
    );
    let (train, test) = rayon::join(
        || load_pair(&train_images, &train_labels, &class_names),
        || load_pair(&test_images, &test_labels, &class_names),
    );
    Ok(RawData {
        train: train?,
        test: test?,
        train_groups: Vec::new(),
    })
}

/// One image file and its label file as a data set of `[1, rows, cols]` samples in [0, 1].
pub fn load_pair(
    images: &Path,
    labels: &Path,
    class_names: &[String],
) -> Result<Dataset, DataError> {
    let (img_bytes, lbl_bytes) = rayon::join(|| read_maybe_gz(images), || read_maybe_gz(labels));
    let (img_bytes, lbl_bytes) = (img_bytes?, lbl_bytes?);
    let (dims, pixels) = parse(&img_bytes, images)?;
    let (ldims, label_bytes) = parse(&lbl_bytes, labels)?;
    let [n, rows, cols] = dims[..] else {
        return Err(DataError::format(
            images,
            "header",
            format!(
                "expected an image file with 3 dimensions (count, rows, cols), found {} dimension(s) {dims:?}",
                dims.len()
            ),
        ));
    };
    let [nl] = ldims[..] else {
        return Err(DataError::format(
            labels,
            "header",
            format!("expected a label file with 1 dimension, found {ldims:?}"),
        ));
    };
    if n != nl {
        return Err(DataError::format(
            labels,
            "header",
            format!(
                "holds {nl} labels but {} holds {n} images; the two files must belong together",
                images.display()
            ),
        ));
    }
    let classes = class_names.len();
    if let Some(i) = label_bytes.iter().position(|&l| l as usize >= classes) {
        return Err(DataError::format(
            labels,
            format!("item {i} (byte {})", 8 + i),
            format!(
                "label {} is outside the class range 0..{}",
                label_bytes[i],
                classes - 1
            ),
        ));
    }
    Ok(Dataset {
        sample_shape: vec![1, rows, cols],
        x: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        y: label_bytes.iter().map(|&l| l as u32).collect(),
        class_names: class_names.to_vec(),
    })
}

/// Check the header and size; returns the dimensions and the payload.
pub fn parse<'a>(bytes: &'a [u8], file: &Path) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    if bytes.len() < 4 {
        return Err(DataError::format(
            file,
            "header",
            format!(
                "file is {} bytes long, too short for an IDX header",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(DataError::format(
            file,
            "header (bytes 0-3)",
            format!(
                "wrong IDX magic {:02x}{:02x}{:02x}{:02x}; expected 000008NN (unsigned bytes, NN dimensions), e.g. 00000803 for images",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(DataError::format(
            file,
            "header",
            format!("{ndim} dimension(s) declared, but the header is truncated or empty"),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let b = &bytes[4 + 4 * d..8 + 4 * d];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let payload = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match payload {
        Some(p) if bytes.len() - header == p => Ok((dims, &bytes[header..])),
        _ => Err(DataError::format(
            file,
            format!("byte {header}"),
            format!(
                "dimensions {dims:?} need {} payload bytes, the file has {}",
                payload.map_or("too many".into(), |p| p.to_string()),
                bytes.len() - header
            ),
        )),
    }
}

/// IDX bytes for tests and tools.
pub fn encode(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{gz, real_data, write};
    use crate::data::{LoadOptions, load};
    use crate::ir::DataSpec;

    fn fixture(dir: &Path, n: u32, gzip: bool) {
        let px: Vec<u8> = (0..n * 4).map(|i| (i * 17 % 256) as u8).collect();
        let lb: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (imgs, lbls) = (encode(&[n, 2, 2], &px), encode(&[n], &lb));
        let wrap = |b: Vec<u8>| if gzip { gz(&b) } else { b };
        let sfx = if gzip { ".gz" } else { "" };
        write(
            dir,
            &format!("train-images-idx3-ubyte{sfx}"),
            &wrap(imgs.clone()),
        );
        write(
            dir,
            &format!("train-labels-idx1-ubyte{sfx}"),
            &wrap(lbls.clone()),
        );
        write(dir, &format!("t10k-images-idx3-ubyte{sfx}"), &wrap(imgs));
        write(dir, &format!("t10k-labels-idx1-ubyte{sfx}"), &wrap(lbls));
    }

    #[test]
    fn gz_and_raw_decode_identically() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fixture(a.path(), 20, true);
        fixture(b.path(), 20, false);
        let ra = load_dir(a.path(), &IdxFiles::default(), digit_names(10)).unwrap();
        let rb = load_dir(b.path(), &IdxFiles::default(), digit_names(10)).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(ra.train.sample_shape, vec![1, 2, 2]);
        assert_eq!(ra.train.len(), 20);
        assert_eq!(
            ra.train.sample(1),
            &[68.0 / 255.0, 85.0 / 255.0, 102.0 / 255.0, 119.0 / 255.0]
        );
        assert_eq!(ra.train.y[13], 3);
    }

    #[test]
    fn load_returns_normalised_splits() {
        let d = tempfile::tempdir().unwrap();
        fixture(d.path(), 50, true);
        let spec = DataSpec::named("mnist").unwrap();
        let opts = LoadOptions {
            data_dir: Some(d.path().into()),
            seed: 3,
            ..Default::default()
        };
        let s = load(&spec, &opts).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (45, 5, 50));
        assert_eq!(s.normalization.mean.len(), 1);
        let m: f32 = s.train.x.iter().sum::<f32>() / s.train.x.len() as f32;
        assert!(m.abs() < 1e-4);
        assert_eq!(load(&spec, &opts).unwrap(), s);
    }

    fn err_of(files: &[(&str, Vec<u8>)]) -> String {
        let d = tempfile::tempdir().unwrap();
        fixture(d.path(), 4, true);
        for (name, bytes) in files {
            write(d.path(), name, bytes);
        }
        load_dir(d.path(), &IdxFiles::default(), digit_names(10))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn malformed_files_name_file_and_place() {
        let good = gz(&encode(&[4, 2, 2], &[0; 16]));
        let truncated = &good[..good.len() - 6];
        let e = err_of(&[("train-images-idx3-ubyte.gz", truncated.to_vec())]);
        assert!(
            e.contains("train-images-idx3-ubyte.gz: gzip stream: truncated or corrupt"),
            "{e}"
        );

        let mut corrupt = good.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        let e = err_of(&[("train-images-idx3-ubyte.gz", corrupt)]);
        assert!(e.contains("train-images-idx3-ubyte.gz: gzip stream"), "{e}");

        let mut magic = encode(&[4, 2, 2], &[0; 16]);
        magic[2] = 0x0d;
        let e = err_of(&[("train-images-idx3-ubyte.gz", gz(&magic))]);
        assert!(
            e.contains("train-images-idx3-ubyte.gz: header (bytes 0-3): wrong IDX magic"),
            "{e}"
        );

        let e = err_of(&[("train-images-idx3-ubyte.gz", gz(&encode(&[4, 4], &[0; 16])))]);
        assert!(
            e.contains(
                "train-images-idx3-ubyte.gz: header: expected an image file with 3 dimensions"
            ),
            "{e}"
        );

        let e = err_of(&[(
            "train-images-idx3-ubyte.gz",
            gz(&encode(&[4, 2, 2], &[0; 15])),
        )]);
        assert!(
            e.contains("byte 16: dimensions [4, 2, 2] need 16 payload bytes, the file has 15"),
            "{e}"
        );

        let e = err_of(&[("t10k-labels-idx1-ubyte.gz", gz(&encode(&[3], &[0; 3])))]);
        assert!(
            e.contains("t10k-labels-idx1-ubyte.gz: header: holds 3 labels but"),
            "{e}"
        );

        let e = err_of(&[(
            "train-labels-idx1-ubyte.gz",
            gz(&encode(&[4], &[0, 1, 12, 3])),
        )]);
        assert!(
            e.contains("train-labels-idx1-ubyte.gz: item 2 (byte 10): label 12 is outside"),
            "{e}"
        );
    }

    fn check_real(sub: &str, train_hist: &[usize], test_hist: &[usize]) {
        let dir = real_data(sub);
        let names = if sub == "mnist" {
            digit_names(10)
        } else {
            fashion_names()
        };
        let raw = load_dir(&dir, &IdxFiles::default(), names).unwrap();
        assert_eq!(raw.train.class_histogram(), train_hist);
        assert_eq!(raw.test.class_histogram(), test_hist);
        assert_eq!(raw.train.sample_shape, vec![1, 28, 28]);
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_mnist),
        ignore = "needs the MNIST data set: ../shared/data/mnist or $PNN_DATA/mnist"
    )]
    fn real_mnist_counts() {
        check_real(
            "mnist",
            &[5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
            &[980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        );
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_fashion_mnist),
        ignore = "needs the Fashion-MNIST data set: ../shared/data/fashion-mnist or $PNN_DATA/fashion-mnist"
    )]
    fn real_fashion_mnist_counts() {
        check_real("fashion-mnist", &[6000; 10], &[1000; 10]);
    }
}
