//! Per-epoch metrics of a run, written to `metrics.jsonl` and `metrics.csv`
//! in the run folder (rewritten whole, atomically, after every epoch so that
//! a resumed run keeps exactly the epochs it continues from).

use crate::ir::WeightsError;
use crate::ir::weights::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One row per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean total loss (cross-entropy + weighted boundary loss) over the batches.
    pub train_loss: f64,
    /// Mean cross-entropy over the batches.
    pub train_ce_loss: f64,
    pub train_acc: f64,
    /// Mean weighted boundary term (lambda * reduce(...)) over the batches (0 when off).
    pub boundary_loss: f64,
    /// Cross-entropy on the validation split.
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    /// The weighted boundary term on the validation split (None without a
    /// boundary loss, and in files written before it was recorded); the
    /// plateau schedule watches val_loss + val_boundary_loss.
    #[serde(default)]
    pub val_boundary_loss: Option<f64>,
    /// Mean and max over the batches of the global gradient L2 norm before clipping.
    pub grad_norm: f64,
    pub grad_norm_max: f64,
    /// Learning rate of plain parameters and of polynomial coefficients in this epoch.
    pub lr: f64,
    pub poly_lr: f64,
    /// Max |input| seen by each polynomial site during the epoch (training batches).
    pub act_max_abs: BTreeMap<String, f32>,
    pub seconds: f64,
}

/// Columns added later come last, so older readers keep their positions.
const FIXED_COLUMNS: [&str; 13] = [
    "epoch",
    "train_loss",
    "train_ce_loss",
    "train_acc",
    "boundary_loss",
    "val_loss",
    "val_acc",
    "grad_norm",
    "grad_norm_max",
    "lr",
    "poly_lr",
    "seconds",
    "val_boundary_loss",
];

fn opt(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV text of `rows`: fixed columns, then `act_max_abs.<site>` per site.
pub fn to_csv(rows: &[EpochMetrics]) -> String {
    let sites: Vec<&String> = rows
        .first()
        .map(|r| r.act_max_abs.keys().collect())
        .unwrap_or_default();
    let mut out = FIXED_COLUMNS.join(",");
    for s in &sites {
        out.push_str(&format!(",act_max_abs.{s}"));
    }
    out.push('\n');
    for r in rows {
        let fields = [
            r.epoch.to_string(),
            r.train_loss.to_string(),
            r.train_ce_loss.to_string(),
            r.train_acc.to_string(),
            r.boundary_loss.to_string(),
            opt(r.val_loss),
            opt(r.val_acc),
            r.grad_norm.to_string(),
            r.grad_norm_max.to_string(),
            r.lr.to_string(),
            r.poly_lr.to_string(),
            format!("{:.3}", r.seconds),
            opt(r.val_boundary_loss),
        ];
        out.push_str(&fields.join(","));
        for s in &sites {
            out.push(',');
            if let Some(v) = r.act_max_abs.get(*s) {
                out.push_str(&v.to_string());
            }
        }
        out.push('\n');
    }
    out
}

/// Write both metric files of a run folder.
pub fn write(dir: &Path, rows: &[EpochMetrics]) -> Result<(), WeightsError> {
    let mut jsonl = String::new();
    for r in rows {
        // Serialising plain numbers and strings cannot fail.
        jsonl.push_str(&serde_json::to_string(r).unwrap_or_default());
        jsonl.push('\n');
    }
    write_atomic(&dir.join("metrics.jsonl"), jsonl.as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), to_csv(rows).as_bytes())
}

/// Read `metrics.jsonl` back (for `--resume`); a missing file is no rows.
pub fn read(dir: &Path) -> Result<Vec<EpochMetrics>, String> {
    let path = dir.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.5,
            train_ce_loss: 1.25,
            train_acc: 0.5,
            boundary_loss: 0.025,
            val_loss: Some(1.0),
            val_acc: None,
            val_boundary_loss: Some(0.5),
            grad_norm: 2.0,
            grad_norm_max: 3.0,
            lr: 1e-3,
            poly_lr: 1e-4,
            act_max_abs: [("a1".to_string(), 7.5f32), ("a2".to_string(), 12.0)]
                .into_iter()
                .collect(),
            seconds: 1.23456,
        }
    }

    #[test]
    fn csv_has_fixed_columns_then_one_per_site() {
        let csv = to_csv(&[row(1), row(2)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,train_loss,train_ce_loss,train_acc,boundary_loss,val_loss,val_acc,grad_norm,\
             grad_norm_max,lr,poly_lr,seconds,val_boundary_loss,act_max_abs.a1,act_max_abs.a2"
        );
        assert_eq!(
            lines[2],
            "2,1.5,1.25,0.5,0.025,1,,2,3,0.001,0.0001,1.235,0.5,7.5,12"
        );
    }

    /// A row written before `val_boundary_loss` existed still reads.
    #[test]
    fn older_rows_read_without_the_validation_boundary_term() {
        let mut v = serde_json::to_value(row(1)).unwrap();
        v.as_object_mut().unwrap().remove("val_boundary_loss");
        let back: EpochMetrics = serde_json::from_value(v).unwrap();
        assert_eq!(back.val_boundary_loss, None);
        assert_eq!(back.val_loss, Some(1.0));
    }

    #[test]
    fn jsonl_round_trips() {
        let dir = std::env::temp_dir().join(format!("pnnc-metrics-{}", std::process::id()));
        write(&dir, &[row(1), row(2)]).unwrap();
        assert_eq!(read(&dir).unwrap(), vec![row(1), row(2)]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), vec![]);
    }
}
