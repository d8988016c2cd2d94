//! The typed data-set reference of a model's `train { data: ... }` entry.
//!
//! The checker turns `data: name(key: value, ...)` into a [`DataSpec`] through
//! [`DataSpec::from_call`]; errors come back per argument so the checker can
//! point at the exact key. The `data` stage reads nothing but this type.

use super::value::Value;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub source: DataSource,
    /// A path written in the model file (searched before `$PNN_DATA`).
    pub path: Option<String>,
    /// Fraction of the training split held out for validation.
    pub val_fraction: f64,
    /// How the validation part is chosen from the training split.
    pub split: SplitBy,
    /// Use at most this many training samples (after the validation hold-out).
    pub limit_train: Option<usize>,
    /// Train-time augmentation (applied by `data::augment_batch`).
    pub augment: Augment,
}

/// How validation samples are drawn from the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitBy {
    /// Individual samples, shuffled by the run's seed.
    Random,
    /// Whole groups (HAR subjects, audio speakers), chosen by the run's seed,
    /// so that no group is in both train and validation.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Augment {
    /// Random crop after zero padding of this many pixels on each side (images).
    pub crop_padding: usize,
    /// Random horizontal flip with probability 1/2 (images).
    pub hflip: bool,
    /// Zero out one random span of at most this many time frames (audio, SpecAugment).
    pub time_mask: usize,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    /// IDX image/label files with custom names (relative to the data folder).
    Idx(IdxFiles),
    Mnist,
    FashionMnist,
    Cifar10 {
        format: CifarFormat,
    },
    /// The Free Spoken Digit Dataset (`fsdd.tar.gz` or a `recordings/` folder).
    Fsdd(AudioSpec),
    /// Any folder or tar(.gz) of WAV files labelled by their names.
    Audio(AudioSpec),
    /// HAPT raw inertial recordings cut into windows.
    Hapt {
        window: usize,
        stride: usize,
    },
    BasicMotions,
    /// UEA/sktime `.ts` files (names relative to the data folder).
    Ts {
        train: String,
        test: String,
    },
    /// One row per sample, a header line, one label column, numeric features.
    Csv {
        train: String,
        test: Option<String>,
        label: String,
        classes: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdxFiles {
    pub train_images: String,
    pub train_labels: String,
    pub test_images: String,
    pub test_labels: String,
    pub classes: usize,
}

impl Default for IdxFiles {
    fn default() -> Self {
        IdxFiles {
            train_images: "train-images-idx3-ubyte.gz".into(),
            train_labels: "train-labels-idx1-ubyte.gz".into(),
            test_images: "t10k-images-idx3-ubyte.gz".into(),
            test_labels: "t10k-labels-idx1-ubyte.gz".into(),
            classes: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CifarFormat {
    /// `cifar10-jpeg.tar.gz`: `train|test/<class>/NNNN.jpg`.
    JpegTar,
    /// The standard `data_batch_{1..5}.bin` / `test_batch.bin` files.
    Binary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioSpec {
    /// File-name pattern with `{field}` placeholders, e.g. `{digit}_{speaker}_{idx}.wav`.
    pub pattern: String,
    /// Field holding the class label.
    pub label: String,
    /// Field naming the group (speaker) for `split: group`.
    pub group: Option<String>,
    /// Recordings whose integer field `test_field` is below `test_below` form the test split.
    pub test_field: Option<String>,
    pub test_below: u64,
    pub mel: MelSpec,
}

impl AudioSpec {
    /// The fields named in [`AudioSpec::pattern`], in order.
    pub fn fields(&self) -> Vec<String> {
        pattern_fields(&self.pattern)
    }
}

/// Log-mel spectrogram settings; sizes in samples at `sample_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MelSpec {
    pub sample_rate: u32,
    /// Seconds; recordings are padded with zeros or cut to this length.
    pub duration: f64,
    pub window: usize,
    pub hop: usize,
    pub n_fft: usize,
    pub n_mels: usize,
    /// Added to the mel energy before the log: the quietest level told apart. Zero padding
    /// sits exactly on it, so a floor far below the recordings' own noise turns padding into
    /// outliers. Specs written before this field existed used 1e-10.
    #[serde(default = "MelSpec::legacy_log_floor")]
    pub log_floor: f64,
}

impl MelSpec {
    /// Near the power of 16-bit quantisation noise in one mel band.
    pub const DEFAULT_LOG_FLOOR: f64 = 1e-6;
    fn legacy_log_floor() -> f64 {
        1e-10
    }
    pub fn samples(&self) -> usize {
        (self.duration * self.sample_rate as f64).round() as usize
    }
    /// Frames of the STFT (frames start every `hop` samples while a full window fits).
    pub fn frames(&self) -> usize {
        let n = self.samples();
        if n < self.window {
            1
        } else {
            (n - self.window) / self.hop + 1
        }
    }
}

impl Default for MelSpec {
    fn default() -> Self {
        MelSpec {
            sample_rate: 8000,
            duration: 1.0,
            window: 256,
            hop: 128,
            n_fft: 256,
            n_mels: 32,
            log_floor: MelSpec::DEFAULT_LOG_FLOOR,
        }
    }
}

/// One problem with one argument of a data call (`arg` None: the call itself).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub arg: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

/// `{a}_{b}.wav` -> ["a", "b"].
fn pattern_fields(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    out
}

const COMMON: &[&str] = &["path", "val_fraction", "split", "limit_train"];
const MEL_KEYS: &[&str] = &[
    "sample_rate",
    "duration",
    "window",
    "hop",
    "n_fft",
    "n_mels",
    "log_floor",
    "time_mask",
];

/// Collects typed arguments and per-argument errors.
struct Args<'a> {
    name: &'a str,
    errors: Vec<SpecError>,
}

impl Args<'_> {
    fn bad(&mut self, key: &str, message: String, help: &str) {
        self.errors.push(SpecError {
            arg: Some(key.to_string()),
            message,
            help: Some(help.to_string()),
        });
    }
    fn string(&mut self, key: &str, v: &Value, example: &str) -> Option<String> {
        match v {
            Value::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                self.bad(
                    key,
                    format!(
                        "`{key}` must be a non-empty string, found {}",
                        v.type_name()
                    ),
                    &format!("write it in quotes, e.g. {key}: \"{example}\""),
                );
                None
            }
        }
    }
    fn count(&mut self, key: &str, v: &Value, min: usize, example: usize) -> Option<usize> {
        match v.as_usize() {
            Some(n) if n >= min => Some(n),
            _ => {
                self.bad(
                    key,
                    format!("`{key}` must be an integer >= {min}, found `{v}`"),
                    &format!("e.g. {key}: {example}"),
                );
                None
            }
        }
    }
    /// A number in (0, max].
    fn positive(&mut self, key: &str, v: &Value, max: f64, help: &str) -> Option<f64> {
        match v.as_f64() {
            Some(x) if x > 0.0 && x <= max => Some(x),
            _ => {
                self.bad(
                    key,
                    format!("`{key}` must be a number in (0, {max}], found `{v}`"),
                    help,
                );
                None
            }
        }
    }
    fn flag(&mut self, key: &str, v: &Value) -> Option<bool> {
        let b = v.as_bool();
        if b.is_none() {
            self.bad(
                key,
                format!("`{key}` must be true or false, found `{v}`"),
                &format!("e.g. {key}: true"),
            );
        }
        b
    }
    fn unknown(&mut self, key: &str, allowed: &[&str]) {
        let name = self.name;
        self.bad(
            key,
            format!("`{name}` has no option `{key}`"),
            &format!("options of `{name}`: {}", allowed.join(", ")),
        );
    }
}

impl DataSpec {
    /// Names accepted in `data: NAME(...)`.
    pub const KNOWN: &'static [&'static str] = &[
        "mnist",
        "fashion_mnist",
        "idx",
        "cifar10",
        "fsdd",
        "audio",
        "hapt",
        "basicmotions",
        "ts",
        "csv",
    ];

    /// The name this spec is written with in a model file.
    pub fn name(&self) -> &'static str {
        match &self.source {
            DataSource::Idx(_) => "idx",
            DataSource::Mnist => "mnist",
            DataSource::FashionMnist => "fashion_mnist",
            DataSource::Cifar10 { .. } => "cifar10",
            DataSource::Fsdd(_) => "fsdd",
            DataSource::Audio(_) => "audio",
            DataSource::Hapt { .. } => "hapt",
            DataSource::BasicMotions => "basicmotions",
            DataSource::Ts { .. } => "ts",
            DataSource::Csv { .. } => "csv",
        }
    }

    /// Shape of one sample, when the data set fixes it without reading files
    /// (None for formats whose shape is only known from the files: idx, ts, csv).
    pub fn sample_shape(&self) -> Option<Vec<usize>> {
        match &self.source {
            DataSource::Mnist | DataSource::FashionMnist => Some(vec![1, 28, 28]),
            DataSource::Cifar10 { .. } => Some(vec![3, 32, 32]),
            DataSource::Fsdd(a) | DataSource::Audio(a) => {
                Some(vec![1, a.mel.n_mels, a.mel.frames()])
            }
            DataSource::Hapt { window, .. } => Some(vec![6, *window]),
            DataSource::BasicMotions => Some(vec![6, 100]),
            DataSource::Idx(_) | DataSource::Ts { .. } | DataSource::Csv { .. } => None,
        }
    }

    /// Number of classes, when the data set fixes it without reading files.
    pub fn classes(&self) -> Option<usize> {
        match &self.source {
            DataSource::Mnist | DataSource::FashionMnist | DataSource::Cifar10 { .. } => Some(10),
            DataSource::Fsdd(_) => Some(10),
            DataSource::Hapt { .. } => Some(6),
            DataSource::BasicMotions => Some(4),
            DataSource::Idx(files) => Some(files.classes),
            DataSource::Csv { classes, .. } => *classes,
            DataSource::Audio(_) | DataSource::Ts { .. } => None,
        }
    }

    /// The spec a bare `NAME` (no arguments) stands for.
    pub fn named(name: &str) -> Result<DataSpec, Vec<SpecError>> {
        Self::from_call(name, &[])
    }

    /// Build a spec from a call as written in the model file.
    pub fn from_call(name: &str, args: &[(String, Value)]) -> Result<DataSpec, Vec<SpecError>> {
        let mut source = match name {
            "mnist" => DataSource::Mnist,
            "fashion_mnist" => DataSource::FashionMnist,
            "idx" => DataSource::Idx(IdxFiles::default()),
            "cifar10" => DataSource::Cifar10 {
                format: CifarFormat::JpegTar,
            },
            "fsdd" => DataSource::Fsdd(AudioSpec {
                pattern: "{digit}_{speaker}_{idx}.wav".into(),
                label: "digit".into(),
                group: Some("speaker".into()),
                test_field: Some("idx".into()),
                test_below: 5,
                mel: MelSpec::default(),
            }),
            "audio" => DataSource::Audio(AudioSpec {
                pattern: String::new(),
                label: String::new(),
                group: None,
                test_field: None,
                test_below: 0,
                mel: MelSpec::default(),
            }),
            "hapt" => DataSource::Hapt {
                window: 128,
                stride: 64,
            },
            "basicmotions" => DataSource::BasicMotions,
            "ts" => DataSource::Ts {
                train: String::new(),
                test: String::new(),
            },
            "csv" => DataSource::Csv {
                train: "train.csv".into(),
                test: None,
                label: "label".into(),
                classes: None,
            },
            other => {
                return Err(vec![SpecError {
                    arg: None,
                    message: format!("unknown data set `{other}`"),
                    help: Some(format!("known data sets: {}", Self::KNOWN.join(", "))),
                }]);
            }
        };
        let mut spec = DataSpec {
            source: DataSource::Mnist,
            path: None,
            val_fraction: 0.1,
            split: SplitBy::Random,
            limit_train: None,
            augment: Augment::default(),
        };
        let mut p = Args {
            name,
            errors: Vec::new(),
        };
        let mut group_requested_at = None;
        for (key, value) in args {
            let key = key.as_str();
            let common = match key {
                "path" => {
                    spec.path = p.string(key, value, "data/fmnist");
                    true
                }
                "val_fraction" => {
                    match value.as_f64() {
                        Some(f) if (0.0..1.0).contains(&f) => spec.val_fraction = f,
                        _ => p.bad(
                            key,
                            format!("invalid value `{value}` for `val_fraction`"),
                            "use a fraction in [0, 1), e.g. val_fraction: 0.1",
                        ),
                    }
                    true
                }
                "limit_train" => {
                    spec.limit_train = p.count(key, value, 1, 1000);
                    true
                }
                "split" => {
                    match value.as_str() {
                        Some("random" | "seed") => spec.split = SplitBy::Random,
                        Some("group" | "subject" | "speaker") => {
                            spec.split = SplitBy::Group;
                            group_requested_at = Some(key.to_string());
                        }
                        _ => p.bad(
                            key,
                            format!("invalid value `{value}` for `split`"),
                            "use split: random (by seed) or split: group (whole subjects/speakers)",
                        ),
                    }
                    true
                }
                _ => false,
            };
            if common {
                continue;
            }
            parse_source_arg(&mut p, &mut source, &mut spec.augment, key, value);
        }
        check_source(&mut p, &source);
        if let Some(key) = group_requested_at
            && !has_groups(&source)
        {
            p.bad(
                &key,
                format!("`{name}` has no groups to split by"),
                "split: group needs subjects (hapt) or speakers (fsdd, or audio with group: \"field\"); use split: random",
            );
        }
        spec.source = source;
        if p.errors.is_empty() {
            Ok(spec)
        } else {
            Err(p.errors)
        }
    }
}

fn has_groups(source: &DataSource) -> bool {
    match source {
        DataSource::Hapt { .. } => true,
        DataSource::Fsdd(a) | DataSource::Audio(a) => a.group.is_some(),
        _ => false,
    }
}

fn allowed_keys(source: &DataSource) -> Vec<&'static str> {
    let mut keys = COMMON.to_vec();
    match source {
        DataSource::Mnist | DataSource::FashionMnist | DataSource::BasicMotions => {}
        DataSource::Idx(_) => keys.extend([
            "train_images",
            "train_labels",
            "test_images",
            "test_labels",
            "classes",
        ]),
        DataSource::Cifar10 { .. } => keys.extend(["format", "crop", "hflip"]),
        DataSource::Fsdd(_) => keys.extend(MEL_KEYS),
        DataSource::Audio(_) => {
            keys.extend(MEL_KEYS);
            keys.extend(["pattern", "label", "group", "test_field", "test_below"]);
        }
        DataSource::Hapt { .. } => keys.extend(["window", "stride"]),
        DataSource::Ts { .. } => keys.extend(["train", "test"]),
        DataSource::Csv { .. } => keys.extend(["train", "test", "label", "classes"]),
    }
    keys
}

fn parse_source_arg(
    p: &mut Args,
    source: &mut DataSource,
    augment: &mut Augment,
    key: &str,
    v: &Value,
) {
    let allowed = allowed_keys(source);
    match (&mut *source, key) {
        (DataSource::Idx(f), "train_images") => set(&mut f.train_images, p.string(key, v, "x.gz")),
        (DataSource::Idx(f), "train_labels") => set(&mut f.train_labels, p.string(key, v, "y.gz")),
        (DataSource::Idx(f), "test_images") => set(&mut f.test_images, p.string(key, v, "tx.gz")),
        (DataSource::Idx(f), "test_labels") => set(&mut f.test_labels, p.string(key, v, "ty.gz")),
        (DataSource::Idx(f), "classes") => set(&mut f.classes, p.count(key, v, 2, 10)),
        (DataSource::Cifar10 { format }, "format") => match v.as_str() {
            Some("jpeg" | "jpeg_tar") => *format = CifarFormat::JpegTar,
            Some("binary" | "bin") => *format = CifarFormat::Binary,
            _ => p.bad(
                key,
                format!("invalid value `{v}` for `format`"),
                "use format: jpeg (cifar10-jpeg.tar.gz) or format: binary (data_batch_N.bin)",
            ),
        },
        (DataSource::Cifar10 { .. }, "crop") => {
            set(&mut augment.crop_padding, p.count(key, v, 0, 4))
        }
        (DataSource::Cifar10 { .. }, "hflip") => set(&mut augment.hflip, p.flag(key, v)),
        (DataSource::Fsdd(a) | DataSource::Audio(a), _) if MEL_KEYS.contains(&key) => {
            parse_mel_arg(p, &mut a.mel, augment, key, v)
        }
        (DataSource::Audio(a), "pattern") => {
            if let Some(s) = p.string(key, v, "{digit}_{speaker}_{idx}.wav") {
                if pattern_fields(&s).is_empty() {
                    p.bad(
                        key,
                        format!("pattern `{s}` names no `{{field}}`"),
                        "e.g. pattern: \"{digit}_{speaker}_{idx}.wav\"",
                    );
                } else {
                    a.pattern = s;
                }
            }
        }
        (DataSource::Audio(a), "label") => set(&mut a.label, p.string(key, v, "digit")),
        (DataSource::Audio(a), "group") => a.group = p.string(key, v, "speaker"),
        (DataSource::Audio(a), "test_field") => a.test_field = p.string(key, v, "idx"),
        (DataSource::Audio(a), "test_below") => {
            set(&mut a.test_below, p.count(key, v, 1, 5).map(|n| n as u64))
        }
        (DataSource::Hapt { window, .. }, "window") => set(window, p.count(key, v, 2, 128)),
        (DataSource::Hapt { stride, .. }, "stride") => set(stride, p.count(key, v, 1, 64)),
        (DataSource::Ts { train, .. }, "train") => set(train, p.string(key, v, "X_TRAIN.ts")),
        (DataSource::Ts { test, .. }, "test") => set(test, p.string(key, v, "X_TEST.ts")),
        (DataSource::Csv { train, .. }, "train") => set(train, p.string(key, v, "train.csv")),
        (DataSource::Csv { test, .. }, "test") => *test = p.string(key, v, "test.csv"),
        (DataSource::Csv { label, .. }, "label") => set(label, p.string(key, v, "label")),
        (DataSource::Csv { classes, .. }, "classes") => *classes = p.count(key, v, 2, 10),
        _ => p.unknown(key, &allowed),
    }
}

fn parse_mel_arg(p: &mut Args, mel: &mut MelSpec, augment: &mut Augment, key: &str, v: &Value) {
    match key {
        "sample_rate" => set(
            &mut mel.sample_rate,
            p.count(key, v, 1000, 8000)
                .and_then(|n| u32::try_from(n).ok()),
        ),
        "duration" => set(
            &mut mel.duration,
            p.positive(key, v, 600.0, "e.g. duration: 1.0 (seconds)"),
        ),
        "window" => set(&mut mel.window, p.count(key, v, 16, 256)),
        "hop" => set(&mut mel.hop, p.count(key, v, 1, 128)),
        "n_fft" => set(&mut mel.n_fft, p.count(key, v, 16, 256)),
        "n_mels" => set(&mut mel.n_mels, p.count(key, v, 1, 32)),
        "log_floor" => set(
            &mut mel.log_floor,
            p.positive(
                key,
                v,
                1.0,
                "e.g. log_floor: 1e-6 (mel energies below it all read as ln(1e-6))",
            ),
        ),
        "time_mask" => set(&mut augment.time_mask, p.count(key, v, 0, 8)),
        _ => {}
    }
}

/// Cross-argument checks, reported on the argument that has to change.
fn check_source(p: &mut Args, source: &DataSource) {
    match source {
        DataSource::Fsdd(a) | DataSource::Audio(a) => {
            let m = &a.mel;
            if m.n_fft < m.window {
                p.bad(
                    "n_fft",
                    format!("n_fft ({}) is smaller than window ({})", m.n_fft, m.window),
                    "n_fft must be >= window, e.g. n_fft: 256 with window: 256",
                );
            }
            if m.n_mels > m.n_fft / 2 + 1 {
                p.bad(
                    "n_mels",
                    format!(
                        "n_mels ({}) exceeds the {} FFT bins",
                        m.n_mels,
                        m.n_fft / 2 + 1
                    ),
                    "use fewer mel bands or a larger n_fft",
                );
            }
            if let DataSource::Audio(a) = source {
                if a.pattern.is_empty() {
                    p.errors.push(SpecError {
                        arg: None,
                        message: "`audio` needs a file-name pattern".into(),
                        help: Some("e.g. audio(pattern: \"{digit}_{speaker}_{idx}.wav\", label: \"digit\")".into()),
                    });
                    return;
                }
                let fields = a.fields();
                let label_ok = if a.label.is_empty() {
                    true // defaults to the first field at load time
                } else {
                    fields.contains(&a.label)
                };
                for (key, field) in [
                    ("label", Some(&a.label).filter(|_| !label_ok)),
                    ("group", a.group.as_ref().filter(|g| !fields.contains(g))),
                    (
                        "test_field",
                        a.test_field.as_ref().filter(|g| !fields.contains(g)),
                    ),
                ] {
                    if let Some(field) = field {
                        p.bad(
                            key,
                            format!("`{field}` is not a field of the pattern `{}`", a.pattern),
                            &format!("fields: {}", fields.join(", ")),
                        );
                    }
                }
                if a.test_field.is_some() != (a.test_below > 0) {
                    p.errors.push(SpecError {
                        arg: Some(
                            if a.test_field.is_some() {
                                "test_field"
                            } else {
                                "test_below"
                            }
                            .into(),
                        ),
                        message: "`test_field` and `test_below` go together".into(),
                        help: Some(
                            "e.g. test_field: \"idx\", test_below: 5 (idx 0-4 is the test split)"
                                .into(),
                        ),
                    });
                }
            }
        }
        DataSource::Ts { train, test } if train.is_empty() || test.is_empty() => {
            p.errors.push(SpecError {
                arg: None,
                message: "`ts` needs the train and test file names".into(),
                help: Some("e.g. ts(train: \"X_TRAIN.ts\", test: \"X_TEST.ts\")".into()),
            });
        }
        _ => {}
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[(&str, Value)]) -> Result<DataSpec, Vec<SpecError>> {
        let args: Vec<(String, Value)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        DataSpec::from_call(name, &args)
    }

    #[test]
    fn every_known_name_parses_with_defaults_except_those_needing_arguments() {
        for name in DataSpec::KNOWN {
            let r = DataSpec::named(name);
            match *name {
                "audio" | "ts" => assert!(r.is_err(), "{name} needs arguments"),
                _ => assert_eq!(r.expect(name).name(), *name),
            }
        }
    }

    #[test]
    fn cifar_augmentation_and_format() {
        let s = call(
            "cifar10",
            &[
                ("format", Value::Ident("binary".into())),
                ("crop", Value::Int(4)),
                ("hflip", Value::Bool(true)),
            ],
        )
        .unwrap();
        assert_eq!(
            s.source,
            DataSource::Cifar10 {
                format: CifarFormat::Binary
            }
        );
        assert_eq!(s.augment.crop_padding, 4);
        assert!(s.augment.hflip);
    }

    #[test]
    fn errors_are_located_at_their_argument() {
        let errs = call(
            "hapt",
            &[
                ("window", Value::Int(-3)),
                ("crop", Value::Int(4)),
                ("val_fraction", Value::Float(1.5)),
            ],
        )
        .unwrap_err();
        let args: Vec<_> = errs.iter().map(|e| e.arg.clone().unwrap()).collect();
        assert_eq!(args, ["window", "crop", "val_fraction"]);
        assert!(errs[1].help.as_ref().unwrap().contains("stride"));
    }

    #[test]
    fn group_split_needs_groups() {
        assert_eq!(
            call("hapt", &[("split", Value::Ident("subject".into()))])
                .unwrap()
                .split,
            SplitBy::Group
        );
        let errs = call("mnist", &[("split", Value::Ident("group".into()))]).unwrap_err();
        assert_eq!(errs[0].arg.as_deref(), Some("split"));
    }

    #[test]
    fn audio_checks_fields_and_fft_sizes() {
        let errs = call(
            "audio",
            &[
                ("pattern", Value::Str("{word}_{who}.wav".into())),
                ("label", Value::Str("digit".into())),
                ("n_fft", Value::Int(64)),
            ],
        )
        .unwrap_err();
        let args: Vec<_> = errs.iter().filter_map(|e| e.arg.clone()).collect();
        assert!(args.contains(&"label".to_string()), "{errs:?}");
        assert!(args.contains(&"n_fft".to_string()), "{errs:?}");
        let ok = call(
            "audio",
            &[
                ("pattern", Value::Str("{word}_{who}.wav".into())),
                ("label", Value::Str("word".into())),
                ("group", Value::Str("who".into())),
                ("time_mask", Value::Int(5)),
            ],
        )
        .unwrap();
        assert_eq!(ok.augment.time_mask, 5);
    }

    #[test]
    fn log_floor_is_checked_and_old_specs_keep_theirs() {
        let mel = |spec: DataSpec| match spec.source {
            DataSource::Fsdd(a) => a.mel,
            other => panic!("{other:?}"),
        };
        assert_eq!(mel(call("fsdd", &[]).unwrap()).log_floor, 1e-6);
        let set = call("fsdd", &[("log_floor", Value::Float(1e-8))]).unwrap();
        assert_eq!(mel(set).log_floor, 1e-8);
        for bad in [Value::Float(0.0), Value::Float(2.0), Value::Str("x".into())] {
            let errs = call("fsdd", &[("log_floor", bad)]).unwrap_err();
            assert_eq!(errs[0].arg.as_deref(), Some("log_floor"));
        }
        // A spec saved before the field existed was computed with 1e-10.
        let mut json = serde_json::to_value(MelSpec::default()).unwrap();
        json.as_object_mut().unwrap().remove("log_floor");
        let old: MelSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old.log_floor, 1e-10);
    }
}
