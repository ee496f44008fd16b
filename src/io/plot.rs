//! SVG line charts of a run (losses, D's logits, sample metrics against step), drawn by `plotters`.
//!
//! SVG keeps the text as text (the viewer renders it), so no font file or font rasteriser is
//! needed to label the axes.

use super::write_atomically;
use crate::error::{Error, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Series colours, in order (a series past the end reuses them); SVG writes them as `#RRGGBB`.
pub const SERIES_COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
];

/// Suffix of a panel's y-axis label when its axis is logarithmic.
pub const LOG_AXIS_SUFFIX: &str = " (log scale)";

/// How a series' line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stroke {
    /// A data curve.
    Solid,
    /// A reference level (e.g. the real-vs-real floor of a metric).
    Dashed,
}

/// One curve: `(step, value)` points in step order, its legend name and stroke.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// The legend's text.
    pub name: &'a str,
    /// `(step, value)`; values that cannot be drawn break the line (see [`save_plot_svg`]).
    pub points: &'a [(u64, f32)],
    pub stroke: Stroke,
}

impl<'a> Series<'a> {
    /// A data curve, drawn solid.
    pub fn solid(name: &'a str, points: &'a [(u64, f32)]) -> Self {
        Series {
            name,
            points,
            stroke: Stroke::Solid,
        }
    }

    /// A reference level, drawn dashed.
    pub fn dashed(name: &'a str, points: &'a [(u64, f32)]) -> Self {
        Series {
            name,
            points,
            stroke: Stroke::Dashed,
        }
    }
}

/// One chart of a figure: the y-axis label, the curves, and whether the y axis is logarithmic.
#[derive(Clone, Debug)]
pub struct Panel<'a> {
    /// The y axis's label ([`LOG_AXIS_SUFFIX`] is appended on a log axis).
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
    pub log_y: bool,
}

impl<'a> Panel<'a> {
    pub fn new(y_label: &'a str, series: Vec<Series<'a>>, log_y: bool) -> Self {
        Panel {
            y_label,
            series,
            log_y,
        }
    }

    /// Whether `value` can be drawn on this panel's y axis: finite, and positive on a log axis.
    fn drawable(&self, value: f32) -> bool {
        value.is_finite() && (!self.log_y || value > 0.0)
    }

    /// The panel's drawable points, all series together.
    fn points(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(_, v)| self.drawable(*v))
            .map(|&(step, v)| (step, f64::from(v)))
    }
}

/// Writes `panels` stacked top to bottom as one `width × height` SVG: each panel a line chart
/// against step (the step range shared by all panels) with its own y axis, tick labels, axis
/// labels and a legend in the top-right corner (dashed series drawn dashed). Values that cannot
/// be drawn (NaN, ±∞, and values ≤ 0 on a log axis) are left out and break the line there; a point
/// with no drawable neighbour is drawn as a dot. A panel without drawable points shows empty axes.
/// The y range is the drawn data's plus 5 % (of the span, or of the decades on a log axis).
/// Written atomically. `width` must be in 200..=16384 and `height` leave every panel 100 pixels.
pub fn save_plot_svg(path: &Path, panels: &[Panel], width: u32, height: u32) -> Result<()> {
    let svg = plot_svg(panels, width, height)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    write_atomically(path, |w| std::io::Write::write_all(w, svg.as_bytes()))
}

/// The SVG text [`save_plot_svg`] writes.
pub fn plot_svg(panels: &[Panel], width: u32, height: u32) -> Result<String> {
    if panels.is_empty() {
        return Err(Error::Other("a plot needs at least one panel".into()));
    }
    let min_height = 100 * panels.len() as u32;
    if !(200..=16384).contains(&width) || !(min_height..=16384).contains(&height) {
        return Err(Error::Other(format!(
            "a plot of {} panels must be 200..=16384 pixels wide and {min_height}..=16384 high, \
             not {width}×{height}",
            panels.len()
        )));
    }
    let steps = step_range(panels);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let failed =
            |e: &dyn std::fmt::Display| Error::Other(format!("drawing the plot failed: {e}"));
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            let values = value_range(panel);
            if panel.log_y {
                let ticks = log_ticks(values.clone());
                draw_panel(
                    area,
                    panel,
                    steps.clone(),
                    values.log_scale().with_key_points(ticks),
                )
            } else {
                draw_panel(area, panel, steps.clone(), values)
            }
            .map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

/// Dash and gap lengths of a dashed series, in pixels.
const DASH: i32 = 6;
const GAP: i32 = 4;
/// Tick labels, axis labels and legend (plotters writes `font-size` as this over 1.24: 12 px).
const FONT: (&str, u32) = ("sans-serif", 15);

type SvgArea<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws one panel into `area` with the step axis over `steps` and the y axis `y`.
fn draw_panel<'a, Y>(area: &SvgArea<'a>, panel: &Panel, steps: Range<u64>, y: Y) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .margin_right(24)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(steps, y)?;
    let y_label = if panel.log_y {
        format!("{}{LOG_AXIS_SUFFIX}", panel.y_label)
    } else {
        panel.y_label.to_string()
    };
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .label_style(FONT)
        .axis_desc_style(FONT)
        .x_labels(6)
        .y_labels(6)
        .y_label_formatter(&|v| tick_label(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;

    for (k, series) in panel.series.iter().enumerate() {
        let [r, g, b] = SERIES_COLOURS[k % SERIES_COLOURS.len()];
        let colour = RGBColor(r, g, b);
        let style = colour.stroke_width(2);
        // the legend entry, whether or not the series has drawable points
        let entry = chart
            .draw_series(std::iter::empty::<Circle<(u64, f64), u32>>())?
            .label(series.name);
        match series.stroke {
            Stroke::Solid => {
                entry.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style))
            }
            Stroke::Dashed => entry.legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 20, y)], DASH, GAP, style)
            }),
        };
        for run in drawable_runs(panel, series.points) {
            match (run.len(), series.stroke) {
                (1, _) => {
                    chart.draw_series(std::iter::once(Circle::new(run[0], 2, colour.filled())))?;
                }
                (_, Stroke::Solid) => {
                    chart.draw_series(LineSeries::new(run, style))?;
                }
                (_, Stroke::Dashed) => {
                    chart.draw_series(DashedLineSeries::new(run, DASH, GAP, style))?;
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(FONT)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// The maximal runs of consecutive drawable points of `points` (see [`Panel::drawable`]).
fn drawable_runs(panel: &Panel, points: &[(u64, f32)]) -> Vec<Vec<(u64, f64)>> {
    points
        .split(|&(_, v)| !panel.drawable(v))
        .filter(|run| !run.is_empty())
        .map(|run| run.iter().map(|&(s, v)| (s, f64::from(v))).collect())
        .collect()
}

/// The steps of all panels' drawable points (`0..1` when there are none; at least one step wide).
fn step_range(panels: &[Panel]) -> Range<u64> {
    let (lo, hi) = panels
        .iter()
        .flat_map(Panel::points)
        .fold((u64::MAX, 0), |(lo, hi), (s, _)| (lo.min(s), hi.max(s)));
    if lo > hi {
        return 0..1;
    }
    lo..hi.max(lo.saturating_add(1))
}

/// The y range of `panel`: its drawable values plus 5 % each side (of the span; on a log axis of
/// the span of the logarithms). One value `v` gives `v ± 10 %` (a factor of 2 on a log axis, `±1`
/// for 0); none give `0..1` (`1..10` on a log axis).
fn value_range(panel: &Panel) -> Range<f64> {
    let to_axis = |v: f64| if panel.log_y { v.log10() } else { v };
    let from_axis = |a: f64| if panel.log_y { 10f64.powf(a) } else { a };
    let (lo, hi) = panel
        .points()
        .map(|(_, v)| to_axis(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), a| {
            (lo.min(a), hi.max(a))
        });
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else if hi > lo {
        let margin = 0.05 * (hi - lo);
        (lo - margin, hi + margin)
    } else if panel.log_y {
        (lo - 2f64.log10(), hi + 2f64.log10())
    } else {
        let margin = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo - margin, hi + margin)
    };
    from_axis(lo)..from_axis(hi)
}

/// Tick values for a log axis over `range` (positive): over three decades or more the powers of
/// ten (every n-th one when there are more than 8), over one to three decades `{1, 2, 5} × 10ᵏ`,
/// and over less than a decade the linear axis's ticks (so that a narrow range is still
/// labelled), each at least a sixth of the axis above the one below it.
fn log_ticks(range: Range<f64>) -> Vec<f64> {
    let decades = (range.end / range.start).log10();
    if decades.is_nan() || decades < 1.0 {
        let mut ticks: Vec<f64> = Vec::new();
        for t in RangedCoordf64::from(range).key_points(12) {
            if ticks
                .last()
                .is_none_or(|&last| (t / last).log10() >= decades / 6.0)
            {
                ticks.push(t);
            }
        }
        return ticks;
    }
    let (first, last) = (
        range.start.log10().floor() as i32,
        range.end.log10().ceil() as i32,
    );
    let (mantissas, every): (&[f64], usize) = if decades >= 3.0 {
        (&[1.0], (last - first).unsigned_abs().div_ceil(8) as usize)
    } else {
        (&[1.0, 2.0, 5.0], 1)
    };
    (first..=last)
        .step_by(every)
        .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
        .filter(|v| range.contains(v))
        .collect()
}

/// A tick value as short text: the shortest decimal that reads back as the same `f32` (so
/// `0.30000000000000004` shows as `0.3`), in scientific notation below 10⁻³ and from 10⁵ on.
fn tick_label(value: f64) -> String {
    let v = value as f32;
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&v.abs()) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(points: &[(u64, f32)], log_y: bool) -> Panel<'_> {
        Panel::new("y", vec![Series::solid("s", points)], log_y)
    }

    #[test]
    fn log_ticks_have_at_least_three_values_inside_the_range() {
        for (lo, hi) in [
            (0.7, 1.4),
            (0.58, 0.93),
            (20.0, 500.0),
            (1e-4, 1e3),
            (1.0, 1.001),
            (0.69, 1.72),
        ] {
            let ticks = log_ticks(lo..hi);
            assert!(ticks.len() >= 3, "{lo}..{hi}: {ticks:?}");
            assert!(ticks.iter().all(|t| (lo..=hi).contains(t)), "{ticks:?}");
            assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
        }
        assert_eq!(log_ticks(0.5..2000.0), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(
            log_ticks(15.0..600.0),
            vec![20.0, 50.0, 100.0, 200.0, 500.0]
        );
        // under a decade: linear ticks, so both ends of the range are labelled
        let narrow = log_ticks(0.69..1.72);
        assert!(
            narrow[0] < 0.9 && *narrow.last().unwrap() > 1.5,
            "{narrow:?}"
        );
        assert_eq!(
            log_ticks(95.0..420.0),
            vec![100.0, 150.0, 200.0, 300.0, 400.0]
        );
        assert!(log_ticks(1e-30..1e30).len() <= 8);
    }

    #[test]
    fn value_ranges_cover_the_drawable_data() {
        let data = [
            (0, 1.0),
            (1, f32::NAN),
            (2, 3.0),
            (3, f32::INFINITY),
            (4, -1.0),
        ];
        assert_eq!(value_range(&panel(&data, false)), -1.2..3.2);
        let log = value_range(&panel(&data, true)); // −1 is not drawable on a log axis
        assert!(log.start < 1.0 && log.start > 0.9 && log.end > 3.0 && log.end < 3.3);
        assert_eq!(value_range(&panel(&[], false)), 0.0..1.0);
        assert_eq!(value_range(&panel(&[], true)), 1.0..10.0);
        assert_eq!(value_range(&panel(&[(5, 0.0)], false)), -1.0..1.0);
        let one = value_range(&panel(&[(5, 4.0)], true));
        assert!((one.start - 2.0).abs() < 1e-12 && (one.end - 8.0).abs() < 1e-12);
        assert_eq!(step_range(&[panel(&[(7, 1.0)], false)]), 7..8);
        assert_eq!(step_range(&[panel(&[(7, f32::NAN)], false)]), 0..1);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.1 + 0.2), "0.3");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-2.5), "-2.5");
        assert_eq!(tick_label(1e-4), "1e-4");
        assert_eq!(tick_label(2.5e6), "2.5e6");
        assert_eq!(tick_label(1000.0), "1000");
    }
}
