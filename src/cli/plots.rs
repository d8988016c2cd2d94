//! Line charts as SVG and PNG (plotters), for `pnnc plot` and `pnnc sweep`.
//!
//! Text needs a TrueType font. plotters' `ab_glyph` backend takes the font
//! bytes at run time, so we read one from `$PNNC_FONT` or a list of common
//! system locations instead of shipping a font file; without one, plotting
//! fails with an error that says how to set it.

use crate::ir::weights::write_atomic;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Fonts tried in order when `$PNNC_FONT` is not set.
const FONT_CANDIDATES: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (800, 500);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(
        "no TrueType font found for plot text (tried $PNNC_FONT and {tried})\n  help: set PNNC_FONT=/path/to/a/font.ttf (e.g. DejaVuSans.ttf from the fonts-dejavu package)"
    )]
    NoFont { tried: String },
    #[error("{path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: lines plus dashed horizontal reference lines (e.g. a range B).
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub hlines: Vec<(f64, String)>,
    /// Draw markers at the points (for few points, e.g. accuracy per degree).
    pub markers: bool,
}

/// Register the font once per process; the error when none is found.
fn ensure_font() -> Result<(), PlotError> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    let state = FONT.get_or_init(|| {
        let mut paths: Vec<PathBuf> = std::env::var_os("PNNC_FONT")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        paths.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        for p in &paths {
            let Ok(bytes) = std::fs::read(p) else {
                continue;
            };
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
        Err(FONT_CANDIDATES.join(", "))
    });
    state.clone().map_err(|tried| PlotError::NoFont { tried })
}

/// Write `<stem>.svg` and `<stem>.png`; returns both paths.
pub fn draw(chart: &Chart, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font()?;
    let svg_path = stem.with_extension("svg");
    let png_path = stem.with_extension("png");
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: String| PlotError::Draw {
            path: path.clone(),
            message: e,
        }
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        render(chart, &root).map_err(err(&svg_path))?;
        root.present().map_err(|e| err(&svg_path)(e.to_string()))?;
    }
    write_atomic(&svg_path, svg.as_bytes()).map_err(|e| err(&svg_path)(e.to_string()))?;

    // The bitmap encoder picks the format from the extension, so the
    // temporary file ends in .png too; renamed into place when complete.
    let tmp = stem.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, SIZE).into_drawing_area();
        render(chart, &root).map_err(err(&png_path))?;
        root.present().map_err(|e| err(&png_path)(e.to_string()))?;
    }
    std::fs::rename(&tmp, &png_path).map_err(|e| err(&png_path)(e.to_string()))?;
    Ok(vec![svg_path, png_path])
}

/// Axis bounds covering every finite point and reference line, padded.
fn bounds(chart: &Chart) -> ((f64, f64), (f64, f64)) {
    let pts = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    for (y, _) in &chart.hlines {
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    ((x0, x1), (y0 - pad, y1 + pad))
}

fn render<DB: DrawingBackend>(
    chart: &Chart,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let ((x0, x1), (y0, y1)) = bounds(chart);
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(e)?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        ctx.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if chart.markers {
            ctx.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
        }
    }
    for (y, label) in &chart.hlines {
        let dashed = DashedLineSeries::new(vec![(x0, *y), (x1, *y)], 6, 4, BLACK.stroke_width(1));
        ctx.draw_series(dashed)
            .map_err(e)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .draw()
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_points_and_reference_lines_and_skip_non_finite() {
        let c = Chart {
            series: vec![Series {
                label: "a".into(),
                points: vec![(1.0, 2.0), (3.0, f64::NAN), (2.0, 5.0)],
            }],
            hlines: vec![(12.0, "B".into())],
            ..Chart::default()
        };
        let ((x0, x1), (y0, y1)) = bounds(&c);
        assert_eq!((x0, x1), (1.0, 2.0));
        assert!(y0 < 2.0 && y1 > 12.0, "{y0} {y1}");
    }

    #[test]
    fn draws_non_empty_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let c = Chart {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![Series {
                label: "train".into(),
                points: vec![(1.0, 2.0), (2.0, 1.0)],
            }],
            hlines: vec![(1.5, "B = 1.5".into())],
            markers: true,
        };
        match draw(&c, &dir.path().join("loss")) {
            Ok(files) => {
                let svg = std::fs::read_to_string(&files[0]).unwrap();
                assert!(svg.contains("<svg") && svg.contains("train"));
                let png = std::fs::read(&files[1]).unwrap();
                assert_eq!(&png[1..4], b"PNG");
                assert!(png.len() > 1000);
            }
            Err(PlotError::NoFont { .. }) => eprintln!("skipped: no system font for plot text"),
            Err(e) => panic!("{e}"),
        }
    }
}
