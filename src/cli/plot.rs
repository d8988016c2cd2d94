//! `pnnc plot runs/NAME`: training curves of one run folder, as SVG and PNG
//! in `runs/NAME/plots/`: loss, accuracy, and the max |activation input| of
//! every polynomial site per epoch with its fit range B marked.

use super::failure::{Failure, report};
use super::plots::{self, Chart, Series};
use crate::train::metrics::EpochMetrics;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct PlotArgs {
    /// A run folder written by `pnnc train`, `pnnc run` or `pnnc sweep`.
    pub run: PathBuf,
}

pub fn run(args: &PlotArgs) -> ExitCode {
    report(match plot_run(&args.run) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Err(e) => Err(Failure::usage(e)),
    })
}

/// Epoch rows of `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e}\n  help: pass a run folder written by `pnnc train` or `pnnc run` (it holds metrics.jsonl)",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The fit range B of every site, from `config.json` (`config.site_ranges`).
fn site_ranges(dir: &Path) -> BTreeMap<String, f64> {
    let read = || -> Option<BTreeMap<String, f64>> {
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        serde_json::from_value(v.get("config")?.get("site_ranges")?.clone()).ok()
    };
    read().unwrap_or_default()
}

fn line(label: &str, rows: &[EpochMetrics], f: impl Fn(&EpochMetrics) -> Option<f64>) -> Series {
    Series {
        label: label.into(),
        points: rows
            .iter()
            .filter_map(|r| f(r).map(|y| (f64::from(r.epoch), y)))
            .collect(),
    }
}

/// The charts of one run.
pub fn charts(rows: &[EpochMetrics], ranges: &BTreeMap<String, f64>) -> Vec<(&'static str, Chart)> {
    let markers = rows.len() < 20;
    let loss = Chart {
        title: "training loss".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: vec![
            line("train total", rows, |r| Some(r.train_loss)),
            line("train cross-entropy", rows, |r| Some(r.train_ce_loss)),
            line("validation", rows, |r| r.val_loss),
        ],
        hlines: Vec::new(),
        markers,
    };
    let acc = Chart {
        title: "accuracy".into(),
        x_label: "epoch".into(),
        y_label: "accuracy (%)".into(),
        series: vec![
            line("train", rows, |r| Some(100.0 * r.train_acc)),
            line("validation", rows, |r| r.val_acc.map(|a| 100.0 * a)),
        ],
        hlines: Vec::new(),
        markers,
    };
    let sites: BTreeSet<&String> = rows.iter().flat_map(|r| r.act_max_abs.keys()).collect();
    let act = Chart {
        title: "max |activation input| per site".into(),
        x_label: "epoch".into(),
        y_label: "max |x|".into(),
        series: sites
            .iter()
            .map(|s| line(s, rows, |r| r.act_max_abs.get(*s).map(|v| f64::from(*v))))
            .collect(),
        hlines: ranges
            .values()
            .map(|b| b.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|b| b.parse::<f64>().ok().map(|v| (v, format!("range B = {b}"))))
            .collect(),
        markers,
    };
    vec![("loss", loss), ("accuracy", acc), ("activation_range", act)]
}

/// Draw the charts of `dir` into `dir/plots`; the files written.
pub fn plot_run(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rows = read_metrics(&dir.join("metrics.jsonl"))?;
    if rows.is_empty() {
        return Err(format!(
            "{}: no finished epoch to plot",
            dir.join("metrics.jsonl").display()
        ));
    }
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut files = Vec::new();
    for (name, chart) in charts(&rows, &site_ranges(dir)) {
        files.extend(plots::draw(&chart, &out.join(name)).map_err(|e| e.to_string())?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u32, loss: f64, act: f32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: loss,
            train_ce_loss: loss * 0.9,
            train_acc: 0.5,
            boundary_loss: 0.1,
            val_loss: Some(loss),
            val_acc: Some(0.6),
            val_boundary_loss: None,
            grad_norm: 1.0,
            grad_norm_max: 2.0,
            lr: 1e-3,
            poly_lr: 1e-4,
            act_max_abs: [("conv1_act".to_string(), act)].into_iter().collect(),
            seconds: 1.0,
        }
    }

    #[test]
    fn charts_carry_every_site_and_the_range() {
        let rows = vec![row(1, 2.0, 10.0), row(2, 1.5, 14.0)];
        let ranges = [("conv1_act".to_string(), 12.0)].into_iter().collect();
        let c = charts(&rows, &ranges);
        let act = &c[2].1;
        assert_eq!(act.series[0].points, vec![(1.0, 10.0), (2.0, 14.0)]);
        assert_eq!(act.hlines, vec![(12.0, "range B = 12".to_string())]);
        assert_eq!(c[0].1.series[2].points, vec![(1.0, 2.0), (2.0, 1.5)]);
    }

    #[test]
    fn plots_a_fixture_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [row(1, 2.0, 10.0), row(2, 1.5, 14.0), row(3, 1.2, 11.0)];
        let text: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"config": {"site_ranges": {"conv1_act": 12.0}}}"#,
        )
        .unwrap();
        match plot_run(dir.path()) {
            Ok(files) => {
                assert_eq!(files.len(), 6);
                for f in files {
                    let len = std::fs::metadata(&f).unwrap().len();
                    assert!(len > 500, "{} has {len} bytes", f.display());
                }
                let svg =
                    std::fs::read_to_string(dir.path().join("plots/activation_range.svg")).unwrap();
                assert!(svg.contains("range B = 12"));
            }
            Err(e) if e.contains("no TrueType font") => eprintln!("skipped: {e}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn missing_metrics_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = plot_run(dir.path()).unwrap_err();
        assert!(e.contains("metrics.jsonl") && e.contains("help:"), "{e}");
    }
}
