//! `pnnc data list | inspect SPEC | get fashion-mnist | verify DIR | bench`.

use crate::data::{self, DataError, LoadOptions, locate, parse_spec};
use crate::ir::DataSpec;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Known data sets, where pnnc looks for each, and whether it is found.
    List {
        /// Also search this folder first (like `--data` of `pnnc train`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Counts, shapes, class histogram and value range of a data set.
    Inspect {
        /// A data call as in a model file, e.g. `fashion_mnist` or `hapt(window: 128)`.
        spec: String,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Write a PNG grid of the first 32 training images here (image sets).
        #[arg(long)]
        preview: Option<PathBuf>,
        /// Decode from the source files even when a cached copy exists.
        #[arg(long)]
        no_cache: bool,
    },
    /// Download a data set into the user cache (no root needed).
    Get {
        /// Only `fashion-mnist` (Debian package `dataset-fashion-mnist`).
        name: String,
    },
    /// Check every file listed in DIR/SHA256SUMS.
    Verify { dir: PathBuf },
    /// Time decoding (no cache), a cache miss (decode + write) and cached loads of every set found.
    Bench {
        #[arg(long)]
        data: Option<PathBuf>,
        /// Only these sets (comma separated), e.g. `mnist,cifar10`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Runs per measurement; the median is printed.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

pub fn run(args: &DataArgs) -> ExitCode {
    let result = match &args.command {
        DataCommand::List { data } => list(data.clone()),
        DataCommand::Inspect {
            spec,
            data,
            preview,
            no_cache,
        } => inspect(spec, data.clone(), preview.as_deref(), !no_cache),
        DataCommand::Get { name } => get(name),
        DataCommand::Verify { dir } => verify(dir),
        DataCommand::Bench { data, only, runs } => bench(data.clone(), only, *runs),
    };
    match result {
        Ok(code) => code,
        Err(CliError {
            file,
            message,
            help,
        }) => {
            eprintln!("error: {file}: {message}");
            if let Some(h) = help {
                eprintln!("help: {h}");
            }
            ExitCode::from(2)
        }
    }
}

struct CliError {
    file: String,
    message: String,
    help: Option<String>,
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        let (file, message, help) = match &e {
            DataError::Io { path, source } => {
                (path.display().to_string(), source.to_string(), None)
            }
            DataError::Format {
                file,
                place,
                message,
            } => (
                file.display().to_string(),
                format!("{place}: {message}"),
                None,
            ),
            DataError::NotFound { .. } => {
                let text = e.to_string();
                let (msg, help) = text.split_once("\n  help: ").unwrap_or((&text, ""));
                ("<data>".into(), msg.to_string(), Some(help.to_string()))
            }
            DataError::Invalid(m) => ("<data>".into(), m.clone(), None),
        };
        CliError {
            file,
            message,
            help,
        }
    }
}

fn usage(what: &str, message: String, help: &str) -> CliError {
    CliError {
        file: what.into(),
        message,
        help: Some(help.into()),
    }
}

/// Data sets that have a conventional folder and can be found without arguments.
const LISTED: &[&str] = &[
    "mnist",
    "fashion_mnist",
    "cifar10",
    "fsdd",
    "hapt",
    "basicmotions",
];

fn list(data_dir: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let opts = LoadOptions {
        data_dir,
        ..Default::default()
    };
    for name in LISTED {
        let spec = DataSpec::named(name).map_err(|_| usage(name, "unknown".into(), ""))?;
        match locate(&spec, &opts) {
            Ok(p) => println!("{name:<14} found      {}", p.display()),
            Err(_) => println!("{name:<14} not found"),
        }
        for p in data::locate::candidates(&spec, &opts) {
            println!("{:<14}   looks in {}", "", p.display());
        }
    }
    println!(
        "also: idx(...), audio(pattern: ...), ts(train: ..., test: ...), csv(train: ..., label: ...) with --data DIR or path: \"DIR\""
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(
    text: &str,
    data_dir: Option<PathBuf>,
    preview: Option<&Path>,
    use_cache: bool,
) -> Result<ExitCode, CliError> {
    // A folder is inspected as `train --data` reads it: as the data set it holds.
    let (spec, data_dir) = match Path::new(text).is_dir() {
        true => (spec_in_folder(Path::new(text))?, Some(PathBuf::from(text))),
        false => (
            parse_spec(text).map_err(|m| {
                usage(
                    text,
                    m,
                    "e.g. pnnc data inspect 'hapt(window: 128, stride: 64)', or the folder of a data set",
                )
            })?,
            data_dir,
        ),
    };
    let opts = LoadOptions {
        data_dir,
        use_cache,
        ..Default::default()
    };
    let start = Instant::now();
    let path = locate(&spec, &opts)?;
    let raw = data::load_raw(&spec, &opts)?;
    let loaded = start.elapsed();
    let (train_idx, val_idx) = data::split::split_indices(&spec, &raw, &opts)?;
    println!("data set     {} ({})", spec.name(), path.display());
    println!(
        "loaded in    {:.2} s{}",
        loaded.as_secs_f64(),
        if use_cache { " (cache on)" } else { "" }
    );
    println!("sample shape {:?}", raw.train.sample_shape);
    println!(
        "samples      train {} (of which validation {} by seed 0, train used {}), test {}",
        raw.train.len(),
        val_idx.len(),
        train_idx.len(),
        raw.test.len()
    );
    for (label, set) in [("train", &raw.train), ("test", &raw.test)] {
        let (lo, hi) = set
            .x
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if !set.is_empty() {
            println!("{label:<5} range  [{lo}, {hi}] (before normalisation)");
        }
    }
    println!("classes      {}", raw.train.class_names.len());
    let (htr, hte) = (raw.train.class_histogram(), raw.test.class_histogram());
    for (i, name) in raw.train.class_names.iter().enumerate() {
        println!(
            "  {i:>3} {name:<20} train {:>6}  test {:>6}",
            htr[i],
            hte.get(i).copied().unwrap_or(0)
        );
    }
    if let Some(out) = preview {
        match data::png::preview_grid(&raw.train, 32, 8) {
            Some(png) => {
                crate::ir::weights::write_atomic(out, &png).map_err(|e| {
                    usage(
                        &out.display().to_string(),
                        e.to_string(),
                        "choose a writable path",
                    )
                })?;
                println!("preview      {}", out.display());
            }
            None => println!("preview      (not an image set: no PNG written)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The known data set that `folder` holds (as `--data` would find it).
fn spec_in_folder(folder: &Path) -> Result<DataSpec, CliError> {
    let opts = LoadOptions {
        data_dir: Some(folder.to_path_buf()),
        ..Default::default()
    };
    LISTED
        .iter()
        .filter_map(|name| DataSpec::named(name).ok())
        .find(|spec| locate(spec, &opts).is_ok())
        .ok_or_else(|| {
            usage(
                &folder.display().to_string(),
                "holds none of the known data sets".into(),
                "`pnnc data list` shows the files each data set needs; for other layouts pass a data call, e.g. pnnc data inspect 'idx(...)' --data DIR",
            )
        })
}

fn get(name: &str) -> Result<ExitCode, CliError> {
    if name.replace('_', "-") != "fashion-mnist" {
        return Err(usage(
            name,
            format!("`pnnc data get` cannot fetch `{name}`"),
            "only `fashion-mnist` can be fetched (from Debian); other sets: pass --data DIR",
        ));
    }
    let dest = data::fetch::fashion_mnist(&mut |line| println!("{line}"))?;
    println!("fashion-mnist is in {}", dest.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> Result<ExitCode, CliError> {
    use rayon::prelude::*;
    let sums = dir.join("SHA256SUMS");
    let text =
        std::fs::read_to_string(&sums).map_err(|e| CliError::from(DataError::io(&sums, e)))?;
    let mut entries = Vec::new();
    for (ln, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (hash, file) = line
            .split_once(char::is_whitespace)
            .map(|(h, f)| {
                (
                    h.to_ascii_lowercase(),
                    f.trim_start().trim_start_matches('*').to_string(),
                )
            })
            .filter(|(h, _)| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| {
                usage(
                    &sums.display().to_string(),
                    format!("line {}: expected `<64 hex digits>  <file>`", ln + 1),
                    "regenerate it with `sha256sum FILES > SHA256SUMS`",
                )
            })?;
        entries.push((hash, file));
    }
    let results: Vec<(String, Result<bool, String>)> = entries
        .par_iter()
        .map(|(hash, file)| {
            (
                file.clone(),
                data::fetch::sha256_file(&dir.join(file))
                    .map(|h| &h == hash)
                    .map_err(|e| e.to_string()),
            )
        })
        .collect();
    let mut bad = 0;
    for (file, r) in &results {
        match r {
            Ok(true) => println!("{file}: OK"),
            Ok(false) => {
                bad += 1;
                println!("{file}: FAILED (checksum differs)");
            }
            Err(e) => {
                bad += 1;
                println!("{file}: FAILED ({e})");
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "error: {}: {bad} of {} files failed",
            sums.display(),
            results.len()
        );
        eprintln!("help: fetch the failed files again");
        return Ok(ExitCode::from(1));
    }
    println!("all {} files OK", results.len());
    Ok(ExitCode::SUCCESS)
}

/// User + system CPU seconds of this process so far (Linux `/proc`; None elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(command)`: state is field 3, utime 14 and stime 15 (clock ticks).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Seconds of each of `runs` calls of `f`, and the last result.
fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> Result<T, DataError>,
) -> Result<(Vec<f64>, T), DataError> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed().as_secs_f64());
    }
    match last {
        Some(v) => Ok((times, v)),
        None => Err(DataError::Invalid("no benchmark run".into())),
    }
}

fn bench(data_dir: Option<PathBuf>, only: &[String], runs: usize) -> Result<ExitCode, CliError> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "threads: {} (rayon); load average: {}; medians of {runs} run(s)",
        rayon::current_num_threads(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<14} {:>9} {:>12} {:>16} {:>18} {:>10}",
        "data set", "samples", "decode (s)", "+cache write (s)", "cached (s) (cpu)", "cache MB"
    );
    let cache_dir = data::cache::default_dir();
    for name in LISTED {
        if !only.is_empty() && !only.iter().any(|o| o.replace('-', "_") == *name) {
            continue;
        }
        let spec = DataSpec::named(name).map_err(|_| usage(name, "unknown".into(), ""))?;
        let opts = LoadOptions {
            data_dir: data_dir.clone(),
            ..Default::default()
        };
        let Ok(path) = locate(&spec, &opts) else {
            println!("{name:<14} (not found, skipped)");
            continue;
        };
        let (decode_times, raw) = timed(runs, || data::decode(&spec, &path))?;
        let (mut first, mut cached, mut size) = ("-".to_string(), "-".to_string(), "-".to_string());
        let small = data::cache::source_bytes(&spec, &path)? < data::cache::MIN_SOURCE_BYTES;
        if let (Some(dir), false) = (&cache_dir, small) {
            let key = data::cache::key(&spec, &path)?;
            let file = data::cache::cache_file(dir, &spec, &key);
            let _ = std::fs::remove_file(&file); // time a cache miss: decode + write
            let cache_opts = LoadOptions {
                use_cache: true,
                ..opts.clone()
            };
            let (t, _) = timed(1, || data::load_raw(&spec, &cache_opts))?;
            first = format!("{:.3}", t[0]);
            let cpu_before = cpu_seconds();
            let (times, again) = timed(runs, || data::load_raw(&spec, &cache_opts))?;
            let cpu = cpu_before
                .zip(cpu_seconds())
                .map(|(a, b)| (b - a) / runs.max(1) as f64);
            if again != raw {
                return Err(usage(
                    name,
                    "cached copy differs from the decoded data".into(),
                    &format!("delete {}", dir.display()),
                ));
            }
            cached = match cpu {
                Some(c) => format!("{:.3} ({c:.2})", median(times)),
                None => format!("{:.3}", median(times)),
            };
            if let Ok(m) = std::fs::metadata(&file) {
                size = format!("{:.1}", m.len() as f64 / 1e6);
            }
        }
        println!(
            "{name:<14} {:>9} {:>12.3} {first:>16} {cached:>18} {size:>10}",
            raw.train.len() + raw.test.len(),
            median(decode_times)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_strings_parse_like_model_calls() {
        let s = parse_spec("hapt(window: 64, stride: 32, split: subject)").unwrap();
        assert_eq!(
            s.source,
            crate::ir::DataSource::Hapt {
                window: 64,
                stride: 32
            }
        );
        assert_eq!(s.split, crate::ir::SplitBy::Group);
        assert_eq!(parse_spec("fashion-mnist").unwrap().name(), "fashion_mnist");
        let a = parse_spec(r#"audio(pattern: "{w}_{s},x.wav", label: "w")"#).unwrap();
        assert_eq!(a.name(), "audio");
        let e = parse_spec("cifar10(crop: -1)").unwrap_err();
        assert!(e.contains("`crop`"), "{e}");
        assert!(
            parse_spec("hapt(window: 3")
                .unwrap_err()
                .contains("missing `)`")
        );
    }

    #[test]
    fn verify_reports_mismatches() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        std::fs::write(d.path().join("SHA256SUMS"), format!("{good}  a\n")).unwrap();
        assert_eq!(verify(d.path()).ok(), Some(ExitCode::SUCCESS));
        std::fs::write(d.path().join("a"), b"hellO").unwrap();
        assert_eq!(verify(d.path()).ok(), Some(ExitCode::from(1)));
        std::fs::write(d.path().join("SHA256SUMS"), "nonsense\n").unwrap();
        assert!(verify(d.path()).is_err());
    }
}
