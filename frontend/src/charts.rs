//! Live line charts drawn as plain SVG; scale and axis maths live in `caplab_shared::plot`.

use caplab_shared::plot::{cell_starts, line_path, nice_max, short_label, ticks, value_at, xml_escape, Scale};
use leptos::prelude::*;

/// One line of a chart.
#[derive(Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    /// CSS class giving the line its colour.
    pub class: &'static str,
    /// (seconds since run start, value); None breaks the line.
    pub points: Vec<(f64, Option<f64>)>,
}

const W: f64 = 560.0;
const H: f64 = 196.0;
const LEFT: f64 = 58.0;
const BOTTOM: f64 = 34.0;
const TOP: f64 = 8.0;
const RIGHT: f64 = 10.0;
/// Most points drawn per line; longer series are thinned evenly.
const MAX_POINTS: usize = 600;

fn thin(points: &[(f64, Option<f64>)]) -> Vec<(f64, Option<f64>)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let step = points.len().div_ceil(MAX_POINTS);
    points.iter().step_by(step).copied().chain(points.last().copied()).collect()
}

/// The colour of a series class (as index.html's `--c1`…`--c5`), for SVGs saved as files.
fn colour(class: &str) -> &'static str {
    match class {
        "c2" => "#14a38b",
        "c3" => "#0b6b5a",
        "c4" => "#e08a1e",
        "c5" => "#d6336c",
        _ => "#2f6fed",
    }
}

/// Where a chart's lines and ticks go, on a plot area from `top` down to `bottom`.
#[derive(Clone, PartialEq)]
struct Geometry {
    /// (series class, path data).
    paths: Vec<(&'static str, String)>,
    /// (y, label) and (x, label) of each tick.
    y_ticks: Vec<(f64, String)>,
    x_ticks: Vec<(f64, String)>,
    /// The time axis: data seconds ↔ pixels.
    x: Scale,
}

fn layout(all: &[Series], integer: bool, top: f64, bottom: f64) -> Geometry {
    let x_max = all.iter().flat_map(|s| s.points.last().map(|p| p.0)).fold(1.0_f64, f64::max);
    let y_max = all.iter().flat_map(|s| s.points.iter().filter_map(|p| p.1)).fold(0.0_f64, f64::max);
    let y_top = if integer { nice_max(y_max.max(4.0), 4) } else { nice_max(y_max, 4) };
    let x = Scale::new((0.0, x_max), (LEFT, W - RIGHT));
    let y = Scale::new((0.0, y_top), (bottom, top));
    Geometry {
        paths: all.iter().map(|s| (s.class, line_path(&thin(&s.points), &x, &y))).collect(),
        y_ticks: ticks(y_top, 4).into_iter().map(|v| (y.map(v), short_label(v))).collect(),
        x_ticks: ticks(x_max, 5).into_iter().filter(|v| *v <= x_max).map(|v| (x.map(v), format!("{}s", short_label(v)))).collect(),
        x,
    }
}

/// The chart as a standalone SVG file: the same lines and axes as on the page (40 px lower,
/// under a title naming the run), colours written in.
fn standalone_svg(title: &str, unit: &str, run: &str, all: &[Series], integer: bool) -> String {
    let h = H + 40.0;
    let g = layout(all, integer, TOP + 40.0, h - BOTTOM);
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#);
    out += &format!(r##"<text x="8" y="16" font-size="13" font-weight="bold">{} ({})</text><text x="8" y="32" fill="#555">{}</text>"##, xml_escape(title), xml_escape(unit), xml_escape(run));
    for (py, label) in &g.y_ticks {
        out += &format!(r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e2e5eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#687083">{label}</text>"##, W - RIGHT, LEFT - 4.0, py + 3.0);
    }
    for (px, label) in &g.x_ticks {
        out += &format!(r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#687083">{label}</text>"##, h - BOTTOM + 13.0);
    }
    out += &format!(r##"<text x="{}" y="{}" text-anchor="middle" fill="#687083">{X_TITLE}</text>"##, (LEFT + W - RIGHT) / 2.0, h - 4.0);
    out += &format!(r##"<text transform="translate(12 {}) rotate(-90)" text-anchor="middle" fill="#687083">{}</text>"##, (TOP + 40.0 + h - BOTTOM) / 2.0, xml_escape(unit));
    let mut lx = W - RIGHT;
    for (s, (class, d)) in all.iter().zip(&g.paths).rev() {
        lx -= 8.0 + 6.5 * s.name.len() as f64;
        out += &format!(r#"<path d="{d}" fill="none" stroke="{}" stroke-width="1.6"/><text x="{lx:.0}" y="32" fill="{}">{}</text>"#, colour(class), colour(class), xml_escape(s.name));
    }
    out + "</svg>"
}

/// The x axis's title, shared by every live chart.
const X_TITLE: &str = "time since the run started (s)";

#[component]
pub fn LineChart(
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    help: &'static str,
    series: Signal<Vec<Series>>,
    /// Counts: the y axis shows whole numbers only.
    #[prop(optional)]
    integer: bool,
) -> impl IntoView {
    let ctx = expect_context::<crate::Ctx>();
    // Series hidden by a click on their legend key.
    let hidden = RwSignal::new(Vec::<&'static str>::new());
    let shown = Memo::new(move |_| series.with(|all| all.iter().filter(|s| !hidden.with(|h| h.contains(&s.name))).cloned().collect::<Vec<_>>()));
    let geometry = Memo::new(move |_| shown.with(|all| layout(all, integer, TOP, H - BOTTOM)));
    let legend = move || series.with(|all| all.iter().map(|s| (s.name, s.class)).collect::<Vec<_>>());
    // Where each cell after the first began, with its label, on the run's time axis.
    let marks = Memo::new(move |_| {
        crate::with_view(ctx, |v| {
            let cells = v.info.spec.cells();
            cell_starts(v.ticks.iter().map(|t| (t.t_s, t.cell))).into_iter().map(|(t, c)| (t, cells.get(c as usize).map(|c| c.label()).unwrap_or_default())).collect::<Vec<_>>()
        })
        .unwrap_or_default()
    });
    // The time under the pointer, in seconds (None: not hovering).
    let hover = RwSignal::new(None::<f64>);
    let on_move = move |ev: leptos::ev::MouseEvent| {
        use wasm_bindgen::JsCast;
        let Some(svg) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let rect = svg.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let px = (f64::from(ev.client_x()) - rect.left()) / rect.width() * W;
        let x = geometry.with_untracked(|g| g.x);
        let (d0, d1) = x.domain;
        let (r0, r1) = x.range;
        hover.set((px >= r0 && px <= r1).then(|| d0 + (px - r0) / (r1 - r0) * (d1 - d0)));
    };
    let tooltip = move || {
        let t = hover.get()?;
        let rows = shown.with(|all| {
            all.iter().map(|s| (s.name, s.class, value_at(&s.points, t).map(|(_, v)| if integer { format!("{v:.0}") } else { short_value(v) }))).collect::<Vec<_>>()
        });
        let left = geometry.with(|g| g.x.map(t)) / W * 100.0;
        Some((t, left, rows))
    };
    let save = move |_| {
        let run = crate::with_view(ctx, |v| v.chart_title()).unwrap_or_default();
        let file = crate::with_view(ctx, |v| format!("caplab_{}_{id}.svg", v.info.id)).unwrap_or_else(|| format!("caplab_{id}.svg"));
        shown.with_untracked(|all| crate::download::save(&file, "image/svg+xml", &standalone_svg(title, unit, &run, all, integer)));
    };
    view! {
        <figure class="chart" id=id title=help>
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="unit">{unit}</span>
                <span class="legend">
                    {move || legend().into_iter().map(|(name, class)| {
                        let off = move || hidden.with(|h| h.contains(&name));
                        view! {
                            <button type="button" class=move || format!("key {class}{}", if off() { " off" } else { "" })
                                title="click to hide or show this line" aria-pressed=move || (!off()).to_string()
                                on:click=move |_| hidden.update(|h| if let Some(i) = h.iter().position(|n| *n == name) { h.remove(i); } else { h.push(name); })>
                                {name}
                            </button>
                        }
                    }).collect_view()}
                </span>
                <button type="button" class="svg-save" title="save this chart as an SVG file" on:click=save>"SVG"</button>
            </figcaption>
            <div class="plot">
            <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=title
                on:mousemove=on_move on:mouseleave=move |_| hover.set(None)>
                {move || geometry.with(|g| {
                    let ys = g.y_ticks.iter().map(|(py, label)| view! {
                        <line class="grid" x1=LEFT x2=W - RIGHT y1=*py y2=*py/>
                        <text class="tick" x=LEFT - 4.0 y=*py + 3.0 text-anchor="end">{label.clone()}</text>
                    }).collect_view();
                    let xs = g.x_ticks.iter().map(|(px, label)| view! {
                        <text class="tick" x=*px y=H - BOTTOM + 13.0 text-anchor="middle">{label.clone()}</text>
                    }).collect_view();
                    (ys, xs)
                })}
                <text class="axis-title" x=(LEFT + W - RIGHT) / 2.0 y=H - 4.0 text-anchor="middle">{X_TITLE}</text>
                <text class="axis-title" transform=format!("translate(12 {}) rotate(-90)", (TOP + H - BOTTOM) / 2.0) text-anchor="middle">{unit}</text>
                {move || {
                    let x = geometry.with(|g| g.x);
                    // Every boundary drawn; a label only where it does not run into the last one.
                    let mut last_label = f64::NEG_INFINITY;
                    marks.with(|m| m.iter().map(|(t, label)| {
                        let px = x.map(*t);
                        let labelled = px - last_label >= 6.0 * label.len() as f64;
                        if labelled {
                            last_label = px;
                        }
                        view! {
                            <line class="cell-mark" x1=px x2=px y1=TOP y2=H - BOTTOM><title>{format!("{label} starts")}</title></line>
                            // Near the right edge a label goes left of its line, never cut off.
                            {labelled.then(|| {
                                let left_of_line = px + 6.0 * label.len() as f64 > W - RIGHT;
                                let (x, anchor) = if left_of_line { (px - 2.0, "end") } else { (px + 2.0, "start") };
                                view! { <text class="cell-label" x=x y=TOP + 8.0 text-anchor=anchor>{label.clone()}</text> }
                            })}
                        }
                    }).collect_view())
                }}
                {move || geometry.with(|g| g.paths.iter().map(|(class, d)| view! {
                    <path class=format!("line {class}") d=d.clone()/>
                }).collect_view())}
                {move || hover.get().map(|t| {
                    let px = geometry.with(|g| g.x.map(t));
                    view! { <line class="hover-line" x1=px x2=px y1=TOP y2=H - BOTTOM/> }
                })}
            </svg>
            {move || tooltip().map(|(t, left, rows)| view! {
                <div class="chart-tip" style=format!("left:{:.1}%", left.clamp(8.0, 70.0))>
                    <div class="tip-time">{format!("{t:.1} s")}</div>
                    {rows.into_iter().map(|(name, class, value)| view! {
                        // A chart of mixed units (a "% · W" chart) names them in its series instead.
                        <div class=format!("key {class}")>{name} ": " <strong>{value.map_or("–".to_string(), |v| if unit.contains('·') { v } else { format!("{v} {unit}") })}</strong></div>
                    }).collect_view()}
                </div>
            })}
            </div>
        </figure>
    }
}

/// A reading for a tooltip: whole above 100, one decimal above 1, else two.
fn short_value(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}
