//! A picture of a run: `RUN_DIR/report.html`, an SVG timeline a person reads at a glance.
//!
//! One lane per switch port (what that port's node sent) and one per client. On a port's
//! lane: a bar per TCP connection from the first to the last segment the node sent on it,
//! gratuitous ARP announcements in blue, resets in red, control-protocol datagrams (UDP 5405)
//! as grey ticks. On a client's lane: its run, green when every byte was verified and red when
//! not, with its longest stall (the longest silence towards it in the capture) hatched. The
//! harness's events (power-off, restore, partitions, clients) are vertical lines across all
//! lanes. Every mark has a tooltip with the exact time and what it is. Read [`render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::capture::{Frame, notable};
use crate::client::ClientReport;
use crate::cluster::{Event, RunSummary};

const LANE: f64 = 34.0;
const LEFT: f64 = 150.0;
const WIDTH: f64 = 1100.0;
const TOP: f64 = 60.0;

/// Events drawn as lines (the rest, such as `power-off:done`, are steps of these).
fn drawn(kind: &str) -> bool {
    !kind.contains(':') && kind != "down" && kind != "steps"
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The TCP 4-tuple of a frame (as text, source first), its flags and payload length.
fn tcp(f: &Frame) -> Option<(String, String, u8, usize)> {
    let p = etherparse::SlicedPacket::from_ethernet(&f.data).ok()?;
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = match p.net? {
        etherparse::NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        etherparse::NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    match p.transport? {
        etherparse::TransportSlice::Tcp(t) => Some((
            std::net::SocketAddr::new(src, t.source_port()).to_string(),
            std::net::SocketAddr::new(dst, t.destination_port()).to_string(),
            t.slice()[13],
            t.payload().len(),
        )),
        _ => None,
    }
}

fn is_control(f: &Frame) -> bool {
    matches!(
        etherparse::SlicedPacket::from_ethernet(&f.data).ok().and_then(|p| p.transport),
        Some(etherparse::TransportSlice::Udp(u)) if u.destination_port() == 5405
    )
}

/// Where on the page an instant goes: the run's span mapped onto the timeline's width.
#[derive(Clone, Copy)]
struct Scale {
    t0: u64,
    t1: u64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        LEFT + (t.saturating_sub(self.t0)) as f64 / (self.t1 - self.t0) as f64 * WIDTH
    }

    fn secs(&self, t: u64) -> f64 {
        t.saturating_sub(self.t0) as f64 / 1e9
    }
}

/// The page for one run: its events, the frames of its captures, and its clients' reports.
pub fn render(
    title: &str,
    events: &[Event],
    frames: &[Frame],
    clients: &BTreeMap<String, ClientReport>,
) -> String {
    let t0 = events.first().map_or(0, |e| e.t_ns);
    let t1 = events
        .iter()
        .map(|e| e.t_ns)
        .chain(frames.iter().map(|f| f.ts_ns))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let sc = Scale { t0, t1 };
    let mut ports: Vec<&str> = frames.iter().map(|f| f.iface.as_str()).collect();
    ports.sort();
    ports.dedup();
    let lanes = ports.len() + clients.len();
    let height = TOP + LANE * lanes as f64 + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">",
        LEFT + WIDTH + 20.0
    );
    svg.push_str("<defs><pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\"><path d=\"M0,4 L4,0\" stroke=\"#c0392b\" stroke-width=\"1.5\"/></pattern></defs>\n");
    time_axis(&mut svg, sc, height);
    for (i, port) in ports.iter().enumerate() {
        port_lane(&mut svg, sc, TOP + LANE * i as f64, port, frames);
    }
    for (j, (id, rep)) in clients.iter().enumerate() {
        let y = TOP + LANE * (ports.len() + j) as f64;
        client_lane(&mut svg, sc, y, id, rep, frames);
    }
    event_marks(&mut svg, sc, height, events);
    svg.push_str("</svg>\n");
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:1em}} svg text{{user-select:none}}</style></head>\
         <body><h1>{t}</h1>\n<p>One lane per switch port (what its node sent: a grey bar per TCP \
         connection from its first to its last segment, <span style=\"color:#2471a3\">\u{25cf} \
         gratuitous ARP</span>, <span style=\"color:#c0392b\">| TCP reset</span>, grey ticks: control \
         protocol) and one per client (green: every byte verified; red: not; hatched: its longest \
         stall). Dashed lines: the harness's events. Hover for details.</p>\n{svg}</body></html>\n",
        t = esc(title)
    )
}

/// Grid lines and labels at round numbers of seconds.
fn time_axis(svg: &mut String, sc: Scale, height: f64) {
    let end = sc.secs(sc.t1);
    let step = nice_step(end);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let xx = LEFT + t / end.max(1e-9) * WIDTH;
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">{t:.2}s</text>",
            TOP - 5.0,
            height - 20.0,
            height - 5.0
        );
        t += step;
    }
}

/// One switch port's lane: what its node sent. A bar per TCP connection from its first to its
/// last segment, a red line per reset, a tick per control datagram, a dot per announcement.
fn port_lane(svg: &mut String, sc: Scale, y: f64, port: &str, frames: &[Frame]) {
    let _ = writeln!(
        svg,
        "<text x=\"5\" y=\"{:.1}\" class=\"lane\">{}</text><line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
        y + LANE / 2.0 + 4.0,
        esc(port),
        y + LANE - 2.0,
        LEFT + WIDTH,
        y + LANE - 2.0
    );
    let mut conns: BTreeMap<(String, String), (u64, u64, usize)> = BTreeMap::new();
    for f in frames.iter().filter(|f| f.iface == port && f.inbound) {
        let xx = sc.x(f.ts_ns);
        if let Some((src, dst, flags, _)) = tcp(f) {
            let e = conns.entry((src, dst)).or_insert((f.ts_ns, f.ts_ns, 0));
            e.1 = f.ts_ns;
            e.2 += 1;
            if flags & 0x04 != 0 {
                let _ = writeln!(
                    svg,
                    "<line class=\"reset\" x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#c0392b\" stroke-width=\"2\"><title>{:.3}s {} sent a TCP reset: {} &gt; {}</title></line>",
                    y + 3.0,
                    y + LANE - 5.0,
                    sc.secs(f.ts_ns),
                    esc(port),
                    esc(&e_src(f)),
                    esc(&e_dst(f)),
                );
            }
        } else if is_control(f) {
            let _ = writeln!(
                svg,
                "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/>",
                y + LANE - 8.0,
                y + LANE - 3.0,
            );
        } else if let Some(what) = notable(f) {
            let _ = writeln!(
                svg,
                "<circle class=\"garp\" cx=\"{xx:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#2471a3\"><title>{:.3}s {} sent {}</title></circle>",
                y + LANE / 2.0,
                sc.secs(f.ts_ns),
                esc(port),
                esc(&what)
            );
        }
    }
    for (k, ((src, dst), (a, b, n))) in conns.iter().enumerate() {
        let yy = y + 4.0 + (k % 4) as f64 * 4.0;
        let _ = writeln!(
            svg,
            "<rect class=\"conn\" x=\"{:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"3\" fill=\"#7f8c8d\"><title>{} &gt; {}: {n} segments from {:.3}s to {:.3}s</title></rect>",
            sc.x(*a),
            (sc.x(*b) - sc.x(*a)).max(1.0),
            esc(src),
            esc(dst),
            sc.secs(*a),
            sc.secs(*b)
        );
    }
}

/// One client's lane: green if every byte was verified, red if not, its longest stall hatched.
fn client_lane(
    svg: &mut String,
    sc: Scale,
    y: f64,
    id: &str,
    rep: &ClientReport,
    frames: &[Frame],
) {
    let ok = rep.intact();
    let (a, b) = (
        rep.started_ns.max(sc.t0),
        rep.finished_ns.max(rep.started_ns),
    );
    let _ = writeln!(
        svg,
        "<text x=\"5\" y=\"{:.1}\">client {}</text><rect class=\"client {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"><title>{}</title></rect>",
        y + LANE / 2.0 + 4.0,
        esc(id),
        if ok { "intact" } else { "broken" },
        sc.x(a),
        y + LANE / 2.0 - 6.0,
        (sc.x(b) - sc.x(a)).max(1.0),
        if ok { "#27ae60" } else { "#c0392b" },
        esc(&rep.summary())
    );
    if let Some((s, e)) = stall(rep, frames) {
        let _ = writeln!(
            svg,
            "<rect class=\"stall\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"url(#hatch)\" stroke=\"#c0392b\"><title>longest stall: {:.1} ms, from {:.3}s</title></rect>",
            sc.x(s),
            y + LANE / 2.0 - 6.0,
            (sc.x(e) - sc.x(s)).max(2.0),
            (e - s) as f64 / 1e6,
            sc.secs(s)
        );
    }
}

/// The harness's events, as dashed lines across every lane.
fn event_marks(svg: &mut String, sc: Scale, height: f64, events: &[Event]) {
    for (labels, e) in events.iter().filter(|e| drawn(&e.kind)).enumerate() {
        let xx = sc.x(e.t_ns);
        let label = format!("{} {}", e.kind, e.node.as_deref().unwrap_or_default());
        let _ = writeln!(
            svg,
            "<g class=\"event\"><line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#8e44ad\" stroke-dasharray=\"3,3\"/><text x=\"{xx:.1}\" y=\"{:.1}\" fill=\"#8e44ad\">{}</text><title>{:.3}s {} {}</title></g>",
            TOP - 12.0,
            height - 20.0,
            14.0 + (labels % 3) as f64 * 13.0,
            esc(label.trim()),
            sc.secs(e.t_ns),
            esc(label.trim()),
            esc(&e.detail)
        );
    }
}

fn e_src(f: &Frame) -> String {
    tcp(f).map(|t| t.0).unwrap_or_default()
}

fn e_dst(f: &Frame) -> String {
    tcp(f).map(|t| t.1).unwrap_or_default()
}

/// The longest silence towards the client's connections in the capture while it ran.
fn stall(rep: &ClientReport, frames: &[Frame]) -> Option<(u64, u64)> {
    let locals: Vec<&str> = rep
        .connections
        .iter()
        .filter_map(|c| c.local.as_deref())
        .collect();
    let mut ts: Vec<u64> = frames
        .iter()
        .filter(|f| !f.inbound && f.ts_ns >= rep.started_ns && f.ts_ns <= rep.finished_ns)
        .filter(|f| tcp(f).is_some_and(|t| locals.contains(&t.1.as_str())))
        .map(|f| f.ts_ns)
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts.windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|(a, b)| b - a)
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 10.0;
    let mag = 10f64.powf(raw.max(1e-6).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(mag * 10.0)
}

/// Writes `RUN_DIR/report.html` for a finished run (reading its captures) and returns its
/// path.
pub fn write(
    summary: &RunSummary,
    clients: &BTreeMap<String, ClientReport>,
    title: &str,
) -> io::Result<PathBuf> {
    let mut frames = Vec::new();
    for c in &summary.captures {
        frames.extend(crate::capture::read(&c.file)?);
    }
    frames.sort_by_key(|f| f.ts_ns);
    let page = render(title, &summary.events, &frames, clients);
    let p = Path::new(&summary.run_dir).join("report.html");
    std::fs::write(&p, page)?;
    Ok(p)
}
