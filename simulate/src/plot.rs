//! `--plot FILE.svg`: replicas over time for every policy against the load, one time axis.

use crate::report::Report;
use plotters::prelude::*;
use std::path::Path;

/// Writes the plot of `report`'s series to `path` (SVG).
pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let end = report
        .series
        .iter()
        .flat_map(|(_, s)| s.points.last().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let top = report
        .series
        .iter()
        .flat_map(|(_, s)| s.points.iter().map(|p| f64::from(p.1).max(p.2)))
        .fold(1.0f64, f64::max)
        * 1.1;
    let (scale, unit) = if end > 7200.0 {
        (3600.0, "h")
    } else if end > 120.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "replicas (starting + ready) and load over time",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end / scale, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("time ({unit})"))
        .y_desc("replicas / requests")
        .draw()
        .map_err(|e| err(&e))?;
    if let Some((_, first)) = report.series.first() {
        chart
            .draw_series(LineSeries::new(
                first.points.iter().map(|p| (p.0 / scale, p.2)),
                RGBColor(180, 180, 180).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("load (in flight + waiting)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(180, 180, 180)));
    }
    for (i, (policy, series)) in report.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // Step plot: hold each count until the next sample.
        let mut steps = Vec::with_capacity(series.points.len() * 2);
        for w in series.points.windows(2) {
            steps.push((w[0].0 / scale, f64::from(w[0].1)));
            steps.push((w[1].0 / scale, f64::from(w[0].1)));
        }
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(policy.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
