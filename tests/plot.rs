//! The SVG plots of a run (`vitgan::io::plot`): read back as XML, they hold every series as
//! polylines in its colour, the axis and legend labels, and a log axis where asked (host only).

mod common;
use common::TempDir;
use std::collections::HashMap;
use std::path::Path;
use vitgan::io::plot::{LOG_AXIS_SUFFIX, Panel, SERIES_COLOURS, Series, plot_svg, save_plot_svg};
use xml::reader::{EventReader, XmlEvent};

/// One element of an SVG file: its tag, attributes and text.
struct Element {
    tag: String,
    attributes: HashMap<String, String>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }

    /// The `(x, y)` pairs of a polyline's `points`.
    fn points(&self) -> Vec<(i64, i64)> {
        self.attr("points")
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }
}

/// The elements of `svg` in document order; panics unless it is well-formed XML with an `<svg>` root.
fn parse(svg: &str) -> Vec<Element> {
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for event in EventReader::from_str(svg) {
        match event.expect("well-formed XML") {
            XmlEvent::StartElement {
                name, attributes, ..
            } => {
                open.push(elements.len());
                elements.push(Element {
                    tag: name.local_name,
                    attributes: attributes
                        .into_iter()
                        .map(|a| (a.name.local_name, a.value))
                        .collect(),
                    text: String::new(),
                });
            }
            XmlEvent::Characters(text) => {
                let at = *open.last().expect("text inside an element");
                elements[at].text.push_str(text.trim());
            }
            XmlEvent::EndElement { .. } => {
                open.pop();
            }
            _ => {}
        }
    }
    assert!(open.is_empty());
    assert_eq!(elements.first().map(|e| e.tag.as_str()), Some("svg"));
    elements
}

fn read(path: &Path) -> Vec<Element> {
    parse(&std::fs::read_to_string(path).unwrap())
}

/// `#RRGGBB` of series `k`, as the SVG writes it.
fn colour(k: usize) -> String {
    let [r, g, b] = SERIES_COLOURS[k];
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// The polylines stroked in series `k`'s colour.
fn polylines(svg: &[Element], k: usize) -> Vec<&Element> {
    let c = colour(k);
    svg.iter()
        .filter(|e| e.tag == "polyline" && e.attr("stroke") == c)
        .collect()
}

/// Point counts of series `k`'s polylines, sorted.
fn polyline_lengths(svg: &[Element], k: usize) -> Vec<usize> {
    let mut n: Vec<usize> = polylines(svg, k).iter().map(|p| p.points().len()).collect();
    n.sort_unstable();
    n
}

fn texts(svg: &[Element]) -> Vec<&str> {
    svg.iter()
        .filter(|e| e.tag == "text")
        .map(|e| e.text.as_str())
        .collect()
}

/// The y-axis tick labels (right-aligned numbers) as `(value, y pixel)`, top to bottom.
fn y_ticks(svg: &[Element]) -> Vec<(f64, i64)> {
    let mut ticks: Vec<(f64, i64)> = svg
        .iter()
        .filter(|e| e.tag == "text" && e.attr("text-anchor") == "end")
        .filter_map(|e| Some((e.text.parse().ok()?, e.attr("y").parse().ok()?)))
        .collect();
    ticks.sort_by_key(|t| t.1);
    ticks
}

type Points = Vec<(u64, f32)>;

/// D and G loss curves of `n` logged steps, 50 steps apart.
fn losses(n: u64) -> (Points, Points) {
    let d = (0..n)
        .map(|s| (s * 50, 1.4 - (s as f32 * 0.01).sin() * 0.3))
        .collect();
    let g = (0..n).map(|s| (s * 50, 0.7 + s as f32 * 0.004)).collect();
    (d, g)
}

#[test]
fn loss_plot_holds_both_series_axis_labels_and_legend() {
    let dir = TempDir::new("plot");
    let (d, mut g) = losses(200);
    g[10].1 = f32::NAN; // a NaN loss breaks G's line in two
    let path = dir.join("losses.svg");
    let panel = Panel::new(
        "loss",
        vec![Series::solid("D loss", &d), Series::solid("G loss", &g)],
        false,
    );
    save_plot_svg(&path, &[panel], 640, 360).unwrap();
    assert!(!dir.join("losses.svg.tmp").exists());
    let svg = read(&path);
    assert_eq!(
        (svg[0].attr("width"), svg[0].attr("height")),
        ("640", "360")
    );

    // the legend's sample line (2 points) and the data: 200 points of D; 10 + 189 of G
    assert_eq!(polyline_lengths(&svg, 0), [2, 200]);
    assert_eq!(polyline_lengths(&svg, 1), [2, 10, 189]);
    let t = texts(&svg);
    for label in ["step", "loss", "D loss", "G loss", "0", "8000"] {
        assert!(t.contains(&label), "{label} in {t:?}");
    }
    assert!(!t.iter().any(|t| t.contains(LOG_AXIS_SUFFIX)), "{t:?}");
    let ticks = y_ticks(&svg);
    assert!(ticks.len() >= 3, "{ticks:?}");
    // higher values higher up, every point inside the range the ticks span
    assert!(ticks.windows(2).all(|w| w[0].0 > w[1].0), "{ticks:?}");
}

/// Values growing by ×1000 over the run: on a log axis the curve is a straight line and the ticks
/// are the powers of ten, a decade apart; on a linear axis neither.
#[test]
fn log_scale_changes_the_y_axis() {
    let growth: Points = (0..100)
        .map(|s| (s * 10, 10f32.powf(3.0 * s as f32 / 99.0)))
        .collect();
    let draw = |log_y| {
        let panel = Panel::new("loss", vec![Series::solid("D loss", &growth)], log_y);
        parse(&plot_svg(&[panel], 640, 360).unwrap())
    };
    let (linear, log) = (draw(false), draw(true));

    assert!(texts(&log).contains(&format!("loss{LOG_AXIS_SUFFIX}").as_str()));
    assert!(texts(&linear).contains(&"loss"));

    let ticks = y_ticks(&log);
    let values: Vec<f64> = ticks.iter().map(|t| t.0).collect();
    assert_eq!(values, [1000.0, 100.0, 10.0, 1.0]);
    let gaps: Vec<i64> = ticks.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps.iter().all(|g| (g - gaps[0]).abs() <= 1), "{ticks:?}");
    let linear_ticks = y_ticks(&linear);
    assert_ne!(linear_ticks, ticks);
    let steps: Vec<f64> = linear_ticks.windows(2).map(|w| w[0].0 - w[1].0).collect();
    assert!(
        steps.iter().all(|s| (s - steps[0]).abs() < 1e-9),
        "{linear_ticks:?}"
    );

    // y pixel of every tenth point: equal steps on the log axis, ever larger ones on the linear
    let curve = |svg: &[Element]| -> Vec<i64> {
        let line = polylines(svg, 0)
            .into_iter()
            .find(|p| p.points().len() == 100);
        line.unwrap()
            .points()
            .iter()
            .step_by(11)
            .map(|p| p.1)
            .collect()
    };
    let rises = |ys: Vec<i64>| -> Vec<i64> { ys.windows(2).map(|w| w[0] - w[1]).collect() };
    let log_rises = rises(curve(&log));
    assert!(
        log_rises.iter().all(|r| (r - log_rises[0]).abs() <= 1),
        "{log_rises:?}"
    );
    let linear_rises = rises(curve(&linear));
    assert!(
        linear_rises.last().unwrap() > &(10 * linear_rises[0].max(1)),
        "{linear_rises:?}"
    );
}

/// A metric's panel: its curve solid, its real-vs-real floor dashed.
fn metric_panel<'a>(
    axis: &'a str,
    name: &'a str,
    curve: &'a [(u64, f32)],
    floor: &'a [(u64, f32)],
    log_y: bool,
) -> Panel<'a> {
    let series = vec![
        Series::solid(name, curve),
        Series::dashed("real vs real", floor),
    ];
    Panel::new(axis, series, log_y)
}

#[test]
fn metrics_plot_has_dashed_floors_and_a_kid_panel() {
    let dir = TempDir::new("plot");
    let at = |f: fn(u64) -> f32| -> Points { (0..5).map(|s| (s * 250, f(s))).collect() };
    let swd = at(|s| 500.0 / (1.0 + 3.0 * s as f32));
    let swd_floor = at(|_| 22.9);
    let kid = at(|s| 0.2 / (1.0 + 10.0 * s as f32));
    let kid_floor = at(|_| -0.00005);
    let path = dir.join("metrics.svg");
    let panels = [
        metric_panel("SWD", "SWD EMA G", &swd, &swd_floor, true),
        metric_panel("KID", "KID EMA G", &kid, &kid_floor, false),
    ];
    save_plot_svg(&path, &panels, 640, 640).unwrap();
    let svg = read(&path);
    let t = texts(&svg);
    for label in ["SWD (log scale)", "KID", "SWD EMA G", "KID EMA G"] {
        assert!(t.contains(&label), "{label} in {t:?}");
    }
    let count = |label: &str| t.iter().filter(|&&x| x == label).count();
    assert_eq!((count("step"), count("real vs real")), (2, 2));

    // solid: a 2-point legend sample and the 5-point curve, per panel
    assert_eq!(polyline_lengths(&svg, 0), [2, 2, 5, 5]);
    // dashed: many short dashes spanning the plot, horizontal (a flat floor)
    let dashes = polylines(&svg, 1);
    assert!(dashes.len() > 40, "{} dashes", dashes.len());
    let flat = |d: &&Element| d.points().iter().all(|p| p.1 == d.points()[0].1);
    assert!(dashes.iter().all(|d| d.points().len() >= 2 && flat(d)));
    let xs: Vec<i64> = dashes
        .iter()
        .flat_map(|d| d.points())
        .map(|p| p.0)
        .collect();
    assert!(xs.iter().max().unwrap() - xs.iter().min().unwrap() > 400);
}

/// Empty, one-point, all-NaN, infinite, non-positive-on-a-log-axis and extreme series, and all
/// points at one step, are drawn without a panic as well-formed SVG; bad sizes are errors.
#[test]
fn degenerate_series_draw_without_panicking() {
    let dir = TempDir::new("plot");
    let path = dir.join("odd.svg");
    let nan = [(0, f32::NAN), (10, f32::NAN)];
    let mixed = [
        (0, f32::INFINITY),
        (5, 1.0),
        (10, f32::NAN),
        (15, f32::NEG_INFINITY),
        (20, 2.0),
        (25, 3.0),
    ];
    let signs = [(0, -1.0), (1, 0.0), (2, 0.5), (3, -0.25)];
    let extreme = [(0, f32::MAX), (1, f32::MIN_POSITIVE), (u64::MAX, 1.0)];
    let one_step = [(7, 1.0), (7, 2.0), (7, 1.5)];
    let cases: [&[(u64, f32)]; 7] = [&[], &[(5, 1.0)], &nan, &mixed, &signs, &extreme, &one_step];
    for log_y in [false, true] {
        save_plot_svg(&path, &[Panel::new("nothing", vec![], log_y)], 300, 200).unwrap();
        let svg = read(&path);
        assert!(texts(&svg).iter().any(|t| t.starts_with("nothing")));
        for points in cases {
            let panels = [
                Panel::new("y", vec![Series::solid("s", points)], log_y),
                Panel::new("z", vec![Series::dashed("floor", points)], log_y),
            ];
            save_plot_svg(&path, &panels, 300, 200).unwrap();
            let svg = read(&path);
            let t = texts(&svg);
            assert!(
                t.contains(&"s") && t.contains(&"floor"),
                "{points:?}: {t:?}"
            );
        }
    }
    // a lone drawable point is a dot; the mixed series' runs are a dot and a 2-point line
    let dot = |points: &[(u64, f32)]| {
        let panel = Panel::new("y", vec![Series::solid("s", points)], false);
        let svg = parse(&plot_svg(&[panel], 300, 200).unwrap());
        let dots = svg
            .iter()
            .filter(|e| e.tag == "circle" && e.attr("fill") == colour(0));
        (dots.count(), polyline_lengths(&svg, 0))
    };
    assert_eq!(dot(&[(5, 1.0)]), (1, vec![2]));
    assert_eq!(dot(&mixed), (1, vec![2, 2]));

    for (panels, width, height) in [(0, 300, 200), (1, 199, 200), (1, 300, 99), (2, 300, 150)] {
        let panels = vec![Panel::new("y", vec![], false); panels];
        assert!(save_plot_svg(&path, &panels, width, height).is_err());
    }
}
