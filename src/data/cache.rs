//! On-disk cache of decoded (unnormalised) data sets: one place for every loader.
//!
//! **Key.** A SHA-256 of the cache [`VERSION`], the preprocessing settings (the spec's source,
//! serialised) and, for every source file the decoder reads, its canonical path, size and
//! modification time in nanoseconds. Nothing is hashed by content, so computing the key costs a
//! few `stat` calls; a source that is replaced, grown or touched gets a new key.
//!
//! **File.** `MAGIC`, `VERSION` (u32 LE), the header length (u64 LE), a JSON header (key,
//! shapes, counts, class names, value encoding, payload length and payload checksum), a checksum
//! of everything before it (u64 LE), then the payload: per set the values (u8 or f32 LE), the
//! labels (u32 LE), then the training groups (u32 LE). Values that are all exact multiples of
//! 1/255 (decoded images) are stored as bytes, which makes the CIFAR-10 cache 4x smaller
//! (184 MB instead of 737 MB) and exact.
//!
//! **Trust.** A file is used only if magic, version, header checksum, key, total length and the
//! payload checksum all match; anything else is ignored and rebuilt. The checksum is a fast
//! word-wise hash computed in parallel blocks (a few tens of ms for CIFAR-10), not a
//! cryptographic one: it catches truncation and corruption, not tampering. Files are written to
//! a temporary name and renamed, and a file torn by a crash fails the checks above, so a
//! later run never trusts a half-written cache.

use super::{DataError, Dataset, RawData, cache_root, existing_variant, locate::required_files};
use crate::ir::{CifarFormat, DataSource, DataSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bump when a decoder or this layout changes.
pub const VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"PNNCDATA";
/// Magic, version and header length.
const PREFIX: usize = 8 + 4 + 8;

/// The source files `decode` reads for `spec` at the located `path`, in a fixed order.
pub fn source_files(spec: &DataSpec, path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = match &spec.source {
        DataSource::Fsdd(_) | DataSource::Audio(_) if !path.join("fsdd.tar.gz").is_file() => {
            wav_files(path)?
        }
        DataSource::Cifar10 {
            format: CifarFormat::Binary,
        } => (1..=5)
            .map(|i| format!("data_batch_{i}.bin"))
            .chain(["test_batch.bin".to_string()])
            .filter_map(|f| existing_variant(&path.join(f)))
            .collect(),
        _ => required_files(spec)
            .iter()
            .filter_map(|f| existing_variant(&path.join(f)))
            .collect(),
    };
    files.sort();
    Ok(files)
}

/// Every `.wav` below `dir` (the audio loader's folder layout).
fn wav_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
            let p = entry.map_err(|e| DataError::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
                files.push(p);
            }
        }
    }
    Ok(files)
}

/// Cache key: version, settings, and (canonical path, size, mtime in ns) of every source file.
pub fn key(spec: &DataSpec, path: &Path) -> Result<String, DataError> {
    let mut h = Sha256::new();
    h.update(VERSION.to_le_bytes());
    let settings = serde_json::to_string(&spec.source)
        .map_err(|e| DataError::Invalid(format!("cannot serialise the data settings: {e}")))?;
    h.update((settings.len() as u64).to_le_bytes());
    h.update(settings.as_bytes());
    for f in source_files(spec, path)? {
        let canonical = std::fs::canonicalize(&f).map_err(|e| DataError::io(&f, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| DataError::io(&f, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = canonical.to_string_lossy();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime_ns.to_le_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `<dir>/<name>-<first 16 hex digits of the key>.bin`.
pub fn cache_file(dir: &Path, spec: &DataSpec, key: &str) -> PathBuf {
    dir.join(format!("{}-{}.bin", spec.name(), &key[..16.min(key.len())]))
}

/// The user's cache folder for decoded sets (`~/.cache/pnnc/decoded`).
pub fn default_dir() -> Option<PathBuf> {
    cache_root().map(|r| r.join("decoded"))
}

/// Sources smaller than this (in total) decode in milliseconds and are not cached in the
/// user cache, so small sets and test fixtures leave no files behind.
pub const MIN_SOURCE_BYTES: u64 = 1 << 20;

/// Total size of the source files of `spec` at `path`.
pub fn source_bytes(spec: &DataSpec, path: &Path) -> Result<u64, DataError> {
    source_files(spec, path)?.iter().try_fold(0u64, |sum, f| {
        let len = std::fs::metadata(f).map_err(|e| DataError::io(f, e))?.len();
        Ok(sum.saturating_add(len))
    })
}

/// Read from the user cache, or decode and write it (errors writing it are only reported:
/// the cache is an optimisation). Sources under [`MIN_SOURCE_BYTES`] are always decoded.
pub fn load_or_decode(
    spec: &DataSpec,
    path: &Path,
    decode: impl FnOnce() -> Result<RawData, DataError>,
) -> Result<RawData, DataError> {
    match default_dir() {
        Some(dir) if source_bytes(spec, path)? >= MIN_SOURCE_BYTES => {
            load_or_decode_in(&dir, spec, path, decode)
        }
        _ => decode(),
    }
}

/// [`load_or_decode`] with the cache in `dir`.
pub fn load_or_decode_in(
    dir: &Path,
    spec: &DataSpec,
    path: &Path,
    decode: impl FnOnce() -> Result<RawData, DataError>,
) -> Result<RawData, DataError> {
    let key = key(spec, path)?;
    let file = cache_file(dir, spec, &key);
    if let Some(raw) = read(&file, &key) {
        return Ok(raw);
    }
    let raw = decode()?;
    if let Err(e) = write(&file, &raw, &key) {
        eprintln!(
            "note: {}: could not write the data cache: {e}",
            file.display()
        );
    }
    Ok(raw)
}

/// The cached data in `file` if it is a complete, intact cache file for `key`.
pub fn read(file: &Path, key: &str) -> Option<RawData> {
    // One bulk read; the payload is then converted in parallel.
    let bytes = std::fs::read(file).ok()?;
    from_bytes(&bytes, key)
}

#[derive(Serialize, Deserialize, PartialEq, Clone, Copy)]
enum Encoding {
    /// `round(v * 255)` as one byte; exact for values that are multiples of 1/255.
    U8,
    F32,
}

#[derive(Serialize, Deserialize)]
struct SetHeader {
    shape: Vec<usize>,
    n: usize,
    class_names: Vec<String>,
    values: Encoding,
}

impl SetHeader {
    fn of(d: &Dataset) -> SetHeader {
        SetHeader {
            shape: d.sample_shape.clone(),
            n: d.len(),
            class_names: d.class_names.clone(),
            values: if all_byte_valued(&d.x) {
                Encoding::U8
            } else {
                Encoding::F32
            },
        }
    }
    /// Bytes of values and labels in the payload.
    fn payload_len(&self) -> Option<usize> {
        let values = self.n.checked_mul(
            self.shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))?,
        )?;
        let width = match self.values {
            Encoding::U8 => 1,
            Encoding::F32 => 4,
        };
        values
            .checked_mul(width)?
            .checked_add(self.n.checked_mul(4)?)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    train: SetHeader,
    test: SetHeader,
    groups: usize,
    payload_len: usize,
    payload_checksum: u64,
}

impl Header {
    fn expected_payload_len(&self) -> Option<usize> {
        self.train
            .payload_len()?
            .checked_add(self.test.payload_len()?)?
            .checked_add(self.groups.checked_mul(4)?)
    }
}

/// Every value reads back bit for bit from its byte `round(v * 255)` (so -0.0 and NaN do not).
fn all_byte_valued(x: &[f32]) -> bool {
    x.par_iter().all(|&v| {
        let s = (v * 255.0).round();
        (0.0..=255.0).contains(&s) && ((s as u8) as f32 / 255.0).to_bits() == v.to_bits()
    })
}

/// Write the cache file for `raw`: to a temporary name, then renamed into place. There is no
/// fsync: a file torn by a crash fails the length or checksum test and is rebuilt.
pub fn write(file: &Path, raw: &RawData, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp{}-{}",
        name.unwrap_or_default(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let (head, payload) = encode(raw, key);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&head)?;
        f.write_all(&payload)?;
        drop(f);
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The whole cache file as bytes (see [`write`]).
pub fn to_bytes(raw: &RawData, key: &str) -> Vec<u8> {
    let (mut head, payload) = encode(raw, key);
    head.extend_from_slice(&payload);
    head
}

/// The file's head (prefix, header, header checksum) and payload.
fn encode(raw: &RawData, key: &str) -> (Vec<u8>, Vec<u8>) {
    let (train, test) = (SetHeader::of(&raw.train), SetHeader::of(&raw.test));
    let parts = [
        encode_values(&raw.train.x, train.values),
        u32_bytes(&raw.train.y),
        encode_values(&raw.test.x, test.values),
        u32_bytes(&raw.test.y),
        u32_bytes(&raw.train_groups),
    ];
    let payload = parts.concat();
    let header = Header {
        key: key.to_string(),
        train,
        test,
        groups: raw.train_groups.len(),
        payload_len: payload.len(),
        payload_checksum: checksum(&payload),
    };
    // Serialising plain structs of numbers and strings cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut head = Vec::with_capacity(PREFIX + json.len() + 8);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(json.len() as u64).to_le_bytes());
    head.extend_from_slice(&json);
    let header_sum = checksum(&head);
    head.extend_from_slice(&header_sum.to_le_bytes());
    (head, payload)
}

fn encode_values(x: &[f32], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::U8 => x.par_iter().map(|&v| (v * 255.0).round() as u8).collect(),
        Encoding::F32 => {
            let mut out = vec![0u8; x.len() * 4];
            out.par_chunks_exact_mut(4)
                .zip(x.par_iter())
                .for_each(|(o, v)| o.copy_from_slice(&v.to_le_bytes()));
            out
        }
    }
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// None for anything that is not a complete, intact cache file for `key`.
pub fn from_bytes(b: &[u8], key: &str) -> Option<RawData> {
    if b.len() < PREFIX || &b[..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return None;
    }
    let json_len = usize::try_from(le_u64(&b[12..PREFIX])?).ok()?;
    let header_end = PREFIX.checked_add(json_len)?;
    let payload_start = header_end.checked_add(8)?;
    if le_u64(b.get(header_end..payload_start)?)? != checksum(&b[..header_end]) {
        return None;
    }
    let header: Header = serde_json::from_slice(&b[PREFIX..header_end]).ok()?;
    let payload = &b[payload_start..];
    if header.key != key
        || header.expected_payload_len()? != header.payload_len
        || payload.len() != header.payload_len
        || checksum(payload) != header.payload_checksum
    {
        return None;
    }
    let mut rest = payload;
    // Lengths were checked above, so the splits below stay in bounds.
    let mut sets = Vec::with_capacity(2);
    for h in [&header.train, &header.test] {
        let values = h.n * h.shape.iter().product::<usize>();
        let x: Vec<f32> = match h.values {
            Encoding::U8 => take(&mut rest, values)
                .par_iter()
                .map(|&p| p as f32 / 255.0)
                .collect(),
            Encoding::F32 => take(&mut rest, values * 4)
                .par_chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        let y = u32s(take(&mut rest, h.n * 4));
        sets.push(Dataset {
            sample_shape: h.shape.clone(),
            x,
            y,
            class_names: h.class_names.clone(),
        });
    }
    let train_groups = u32s(take(&mut rest, header.groups * 4));
    let test = sets.pop()?;
    let train = sets.pop()?;
    Some(RawData {
        train,
        test,
        train_groups,
    })
}

/// The first `n` bytes of `rest`, advancing it (`n` is within bounds: lengths are checked first).
fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    head
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Blocks hashed independently (in parallel), then combined in order.
const BLOCK: usize = 1 << 20;
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fast 64-bit checksum (not cryptographic): any single changed 8-byte word changes it.
pub fn checksum(bytes: &[u8]) -> u64 {
    let blocks: Vec<u64> = bytes.par_chunks(BLOCK).map(block_hash).collect();
    let mut h = (bytes.len() as u64).wrapping_mul(MUL);
    for b in blocks {
        h = mix(h, b);
    }
    finish(h)
}

fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(MUL).rotate_left(29)
}

fn finish(mut h: u64) -> u64 {
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
}

/// Four independent lanes of 8-byte words, so the loop is not one long dependency chain.
fn block_hash(block: &[u8]) -> u64 {
    let mut lanes = [1u64, 2, 3, 4].map(|s| s.wrapping_mul(MUL));
    let mut chunks = block.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = c[i * 8..i * 8 + 8].try_into().map_or(0, u64::from_le_bytes);
            *lane = mix(*lane, w);
        }
    }
    let mut h = lanes.into_iter().fold(block.len() as u64, mix);
    for &byte in chunks.remainder() {
        h = mix(h, byte as u64);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::audio::encode_wav;
    use crate::data::cifar::tests::{jpeg, tar_of};
    use crate::data::testutil::{gz, write};
    use crate::ir::{AudioSpec, IdxFiles};
    use std::cell::Cell;
    use std::time::{Duration, SystemTime};

    fn sample() -> RawData {
        RawData {
            train: Dataset {
                sample_shape: vec![1, 2],
                x: vec![0.0, 1.0, 128.0 / 255.0, 3.0 / 255.0],
                y: vec![0, 1],
                class_names: vec!["a".into(), "b".into()],
            },
            test: Dataset {
                sample_shape: vec![1, 2],
                x: vec![-1.5, 0.25],
                y: vec![1],
                class_names: vec!["a".into(), "b".into()],
            },
            train_groups: vec![4, 5],
        }
    }

    fn bits(raw: &RawData) -> Vec<u32> {
        raw.train
            .x
            .iter()
            .chain(&raw.test.x)
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn round_trip_is_bit_exact_in_both_encodings() {
        let mut raw = sample();
        let b = to_bytes(&raw, "k");
        let back = from_bytes(&b, "k").unwrap();
        assert_eq!((&back, bits(&back)), (&raw, bits(&raw)));
        // -0.0 is not a byte value: the set must fall back to f32 and keep the sign.
        raw.train.x[0] = -0.0;
        let back = from_bytes(&to_bytes(&raw, "k"), "k").unwrap();
        assert_eq!(bits(&back), bits(&raw));
    }

    #[test]
    fn byte_valued_sets_are_stored_as_bytes() {
        let mut raw = sample();
        raw.test.x = vec![0.0; 2];
        let small = to_bytes(&raw, "k").len();
        raw.test.x = vec![0.5; 2]; // not k/255: the test set grows by 3 bytes per value
        let header_growth = "F32".len() - "U8".len();
        assert_eq!(to_bytes(&raw, "k").len(), small + 2 * 3 + header_growth);
    }

    #[test]
    fn truncated_corrupt_or_foreign_files_are_not_trusted() {
        let b = to_bytes(&sample(), "k");
        for cut in [0, 10, PREFIX, PREFIX + 5, b.len() - 9, b.len() - 1] {
            assert_eq!(from_bytes(&b[..cut], "k"), None, "cut at {cut}");
        }
        assert_eq!(from_bytes(&b, "other"), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(from_bytes(&longer, "k"), None);
        // Any flipped byte (magic, version, header, header checksum, payload) is caught.
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert_eq!(from_bytes(&bad, "k"), None, "flipped byte {i}");
        }
    }

    #[test]
    fn checksum_sees_single_word_changes_across_blocks() {
        let data: Vec<u8> = (0..3 * BLOCK + 13).map(|i| (i * 31 % 251) as u8).collect();
        let base = checksum(&data);
        for i in [0, 7, BLOCK - 1, BLOCK, 2 * BLOCK + 5, data.len() - 1] {
            let mut d = data.clone();
            d[i] = d[i].wrapping_add(1);
            assert_ne!(checksum(&d), base, "byte {i}");
        }
        assert_ne!(checksum(&data[..data.len() - 1]), base);
    }

    fn idx_fixture(dir: &Path) -> PathBuf {
        let n = 12u32;
        let px: Vec<u8> = (0..n * 4).map(|i| (i * 37 % 256) as u8).collect();
        let lb: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (img, lbl) = (
            crate::data::idx::encode(&[n, 2, 2], &px),
            crate::data::idx::encode(&[n], &lb),
        );
        write(dir, "train-images-idx3-ubyte.gz", &gz(&img));
        write(dir, "train-labels-idx1-ubyte", &lbl);
        write(dir, "t10k-images-idx3-ubyte", &img);
        write(dir, "t10k-labels-idx1-ubyte", &lbl)
    }

    fn with_source(source: DataSource) -> DataSpec {
        let mut spec = DataSpec::named("mnist").unwrap();
        spec.source = source;
        spec
    }

    fn tone(freq: f32, n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let v = (2.0 * std::f32::consts::PI * freq * i as f32 / 8000.0).sin() * 0.5;
                ((v * 32767.0) as i16).to_le_bytes()
            })
            .collect()
    }

    /// Every cached loader kind: (what, spec, located path, one source file it reads).
    fn fixtures(root: &Path) -> Vec<(&'static str, DataSpec, PathBuf, PathBuf)> {
        let mut out = Vec::new();
        let d = root.join("idx");
        let f = idx_fixture(&d);
        out.push(("idx", DataSpec::named("mnist").unwrap(), d, f));
        let d = root.join("idx-custom");
        let f = idx_fixture(&d);
        let files = IdxFiles {
            classes: 10,
            ..Default::default()
        };
        out.push(("idx(...)", with_source(DataSource::Idx(files)), d, f));

        let d = root.join("hapt");
        let meta: Vec<u8> = (0..40)
            .flat_map(|i| [1i16, 1, if i < 20 { 1 } else { 3 }])
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let raw: Vec<u8> = (0..40 * 6)
            .flat_map(|i| (i as f32 * 0.37).to_le_bytes())
            .collect();
        let f = write(&d, "hapt_raw_f32.bin.gz", &gz(&raw));
        write(&d, "hapt_meta_i16.bin.gz", &gz(&meta));
        let hapt = DataSource::Hapt {
            window: 8,
            stride: 4,
        };
        out.push(("hapt", with_source(hapt), d, f));

        let d = root.join("ts");
        let ts = "@problemName T\n@classLabel true Up Down\n@data\n1,2.5,3:4,5,6:Down\n7,8,9:1.5,-2,3e1:Up\n";
        let f = write(&d, "a.ts", ts.as_bytes());
        write(&d, "b.ts", ts.as_bytes());
        let source = DataSource::Ts {
            train: "a.ts".into(),
            test: "b.ts".into(),
        };
        out.push(("ts", with_source(source), d, f));

        let d = root.join("csv");
        let f = write(&d, "train.csv", b"a,label,b\n1,0,2.25\n3,1,-4.5\n");
        write(&d, "test.csv", b"a,label,b\n7,1,8\n");
        let source = DataSource::Csv {
            train: "train.csv".into(),
            test: Some("test.csv".into()),
            label: "label".into(),
            classes: None,
        };
        out.push(("csv", with_source(source), d, f));

        let names = ["0_ann_0.wav", "0_ann_7.wav", "1_bob_2.wav", "1_bob_9.wav"];
        let wavs: Vec<(&str, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    *n,
                    encode_wav(8000, 1, 16, &tone(300.0 * (i + 1) as f32, 900)),
                )
            })
            .collect();
        let d = root.join("wav");
        for (n, b) in &wavs {
            write(&d.join("sub"), n, b);
        }
        let DataSource::Fsdd(fsdd) = DataSpec::named("fsdd").unwrap().source else {
            unreachable!()
        };
        let audio = AudioSpec {
            pattern: "{digit}_{speaker}_{idx}.wav".into(),
            label: "digit".into(),
            ..fsdd.clone()
        };
        let f = d.join("sub").join(names[2]);
        out.push(("audio folder", with_source(DataSource::Audio(audio)), d, f));
        let d = root.join("fsdd");
        let f = write(&d, "fsdd.tar.gz", &gz(&tar_of(&wavs)));
        out.push(("fsdd tar", with_source(DataSource::Fsdd(fsdd)), d, f));

        let d = root.join("cifar-jpeg");
        let tar = tar_of(&[
            ("train/cat/0000.jpg", jpeg(8, 8, [250, 10, 10])),
            ("train/dog/0000.jpg", jpeg(8, 8, [10, 10, 250])),
            ("test/cat/0000.jpg", jpeg(8, 8, [200, 100, 10])),
        ]);
        let f = write(&d, "cifar10-jpeg.tar.gz", &gz(&tar));
        out.push(("cifar jpeg", DataSpec::named("cifar10").unwrap(), d, f));
        let d = root.join("cifar-bin");
        let record = |label: u8| -> Vec<u8> {
            std::iter::once(label)
                .chain((0..3072).map(|i| (i * 7 % 256) as u8))
                .collect()
        };
        let f = write(&d, "data_batch_2.bin", &[record(3), record(4)].concat());
        write(&d, "data_batch_1.bin", &record(1));
        write(&d, "test_batch.bin", &record(9));
        let bin = DataSource::Cifar10 {
            format: CifarFormat::Binary,
        };
        out.push(("cifar binary", with_source(bin), d, f));
        out
    }

    /// Load through the cache in `dir`; returns the data and whether it was decoded.
    fn load(dir: &Path, spec: &DataSpec, path: &Path) -> (RawData, bool) {
        let decoded = Cell::new(false);
        let raw = load_or_decode_in(dir, spec, path, || {
            decoded.set(true);
            crate::data::decode(spec, path)
        })
        .unwrap();
        (raw, decoded.get())
    }

    fn only_cache_file(dir: &Path) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[test]
    fn every_loader_kind_is_cached_exactly_and_rebuilt_when_stale_or_damaged() {
        let root = tempfile::tempdir().unwrap();
        for (what, spec, path, source) in fixtures(root.path()) {
            let cache = tempfile::tempdir().unwrap();
            let dir = cache.path();
            let fresh = crate::data::decode(&spec, &path).unwrap();
            assert!(!fresh.train.is_empty(), "{what}: fixture decodes to data");

            let (first, decoded) = load(dir, &spec, &path);
            assert!(decoded, "{what}: first load decodes");
            assert_eq!((bits(&first), &first), (bits(&fresh), &fresh), "{what}");
            let (second, decoded) = load(dir, &spec, &path);
            assert!(!decoded, "{what}: second load comes from the cache");
            assert_eq!((bits(&second), &second), (bits(&fresh), &fresh), "{what}");

            // Truncated, then corrupted cache files are rebuilt, not trusted.
            let file = only_cache_file(dir);
            let good = std::fs::read(&file).unwrap();
            std::fs::write(&file, &good[..good.len() - 3]).unwrap();
            assert!(load(dir, &spec, &path).1, "{what}: truncated cache rebuilt");
            assert_eq!(std::fs::read(&file).unwrap(), good, "{what}: rewritten");
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            std::fs::write(&file, &bad).unwrap();
            assert!(load(dir, &spec, &path).1, "{what}: corrupt cache rebuilt");
            assert!(!load(dir, &spec, &path).1, "{what}: and then trusted");

            // A touched source (same size, new mtime) gets a new key and is decoded again.
            let t = SystemTime::now() + Duration::from_secs(5);
            let f = std::fs::File::options().write(true).open(&source).unwrap();
            f.set_modified(t).unwrap();
            drop(f);
            assert!(load(dir, &spec, &path).1, "{what}: touched source decoded");
            assert!(!load(dir, &spec, &path).1, "{what}: new copy cached");
        }
    }

    #[test]
    fn key_changes_with_size_mtime_and_settings_but_not_unrelated_files() {
        let d = tempfile::tempdir().unwrap();
        let f = idx_fixture(d.path());
        let spec = DataSpec::named("mnist").unwrap();
        let k1 = key(&spec, d.path()).unwrap();
        assert_eq!(k1, key(&spec, d.path()).unwrap());
        write(d.path(), "README.md", b"notes");
        assert_eq!(k1, key(&spec, d.path()).unwrap(), "unrelated file");
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        bytes.push(0);
        std::fs::write(&f, &bytes).unwrap();
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(mtime).unwrap(); // same mtime, other size
        drop(file);
        let k2 = key(&spec, d.path()).unwrap();
        assert_ne!(k1, k2, "size");
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(mtime + Duration::from_nanos(1)).unwrap();
        drop(file);
        let k3 = key(&spec, d.path()).unwrap();
        assert_ne!(k2, k3, "mtime by one nanosecond");
        let fashion = DataSpec::named("fashion_mnist").unwrap();
        assert_ne!(k3, key(&fashion, d.path()).unwrap(), "settings");
    }

    #[test]
    fn small_sources_are_not_worth_a_cache_file() {
        let d = tempfile::tempdir().unwrap();
        idx_fixture(d.path());
        let spec = DataSpec::named("mnist").unwrap();
        let bytes = source_bytes(&spec, d.path()).unwrap();
        assert!(bytes > 0 && bytes < MIN_SOURCE_BYTES, "{bytes}");
        write(
            d.path(),
            "t10k-images-idx3-ubyte",
            &vec![0; MIN_SOURCE_BYTES as usize],
        );
        assert!(source_bytes(&spec, d.path()).unwrap() > MIN_SOURCE_BYTES);
    }

    #[test]
    fn failed_cache_write_still_returns_the_data() {
        let d = tempfile::tempdir().unwrap();
        idx_fixture(d.path());
        let blocker = write(d.path(), "not-a-dir", b"x"); // the cache "folder" is a file
        let spec = DataSpec::named("mnist").unwrap();
        let (raw, decoded) = load(&blocker, &spec, d.path());
        assert!(decoded);
        assert_eq!(raw, crate::data::decode(&spec, d.path()).unwrap());
    }
}
