//! The paper's fit range B and boundary threshold P by activation degree
//! (DESIGN.md section 4). One table per kind of data; everything that picks
//! (B, P) for a degree (sweeps, `pnnc bench`, the export) reads it here.

use crate::ir::{DataSource, Model};
use serde::{Deserialize, Serialize};

/// Which of the paper's tables applies.
#[derive(
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// Image classifiers (MNIST, Fashion-MNIST, CIFAR).
    Image,
    /// The activity-recognition MLP (inertial time series).
    Har,
}

/// One row: at `degree`, fit on [-range, range], penalise beyond `penalty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRange {
    pub degree: u32,
    pub range: f64,
    pub penalty: f64,
}

const fn row(degree: u32, range: f64, penalty: f64) -> PaperRange {
    PaperRange {
        degree,
        range,
        penalty,
    }
}

pub const IMAGE: [PaperRange; 5] = [
    row(2, 12.0, 12.0),
    row(4, 20.0, 15.0),
    row(8, 35.0, 17.5),
    row(16, 40.0, 20.0),
    row(22, 47.0, 23.5),
];

pub const HAR: [PaperRange; 3] = [row(2, 13.0, 13.0), row(4, 20.0, 20.0), row(8, 35.0, 35.0)];

impl Domain {
    pub fn name(self) -> &'static str {
        match self {
            Domain::Image => "image",
            Domain::Har => "har",
        }
    }

    pub fn table(self) -> &'static [PaperRange] {
        match self {
            Domain::Image => &IMAGE,
            Domain::Har => &HAR,
        }
    }

    /// (B, P) at `degree`, if the paper gives it.
    pub fn lookup(self, degree: u32) -> Option<(f64, f64)> {
        self.table()
            .iter()
            .find(|r| r.degree == degree)
            .map(|r| (r.range, r.penalty))
    }

    /// The degrees of the table, for help messages.
    pub fn degrees(self) -> String {
        let ds: Vec<String> = self.table().iter().map(|r| r.degree.to_string()).collect();
        ds.join(", ")
    }

    /// The table for a model's data: inertial time series use the HAR table,
    /// everything else the image table.
    pub fn of(model: &Model) -> Domain {
        match model.train.data.as_ref().map(|d| &d.source) {
            Some(DataSource::Hapt { .. } | DataSource::BasicMotions | DataSource::Ts { .. }) => {
                Domain::Har
            }
            _ => Domain::Image,
        }
    }
}

/// (B, P) at `degree` or an error naming the table's degrees.
pub fn lookup(domain: Domain, degree: u32) -> Result<(f64, f64), String> {
    domain.lookup(degree).ok_or_else(|| {
        format!(
            "the paper's {} table has no (B, P) for degree {degree}\n  help: use one of its degrees: {}",
            domain.name(),
            domain.degrees()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_the_papers_values() {
        assert_eq!(Domain::Image.lookup(22), Some((47.0, 23.5)));
        assert_eq!(Domain::Image.lookup(8), Some((35.0, 17.5)));
        assert_eq!(Domain::Har.lookup(2), Some((13.0, 13.0)));
        assert_eq!(Domain::Har.lookup(8), Some((35.0, 35.0)));
        assert_eq!(Domain::Image.lookup(3), None);
        let e = lookup(Domain::Har, 16).unwrap_err();
        assert!(e.contains("degree 16") && e.contains("2, 4, 8"), "{e}");
    }
}
