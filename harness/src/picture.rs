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
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * WIDTH;
    let secs = |t: u64| t.saturating_sub(t0) as f64 / 1e9;
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
    // Time axis.
    let step = nice_step(secs(t1));
    let mut t = 0.0;
    while t <= secs(t1) + 1e-9 {
        let xx = LEFT + t / secs(t1).max(1e-9) * WIDTH;
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">{t:.2}s</text>",
            TOP - 5.0,
            height - 20.0,
            height - 5.0
        );
        t += step;
    }
    // Lanes: ports.
    for (i, port) in ports.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = writeln!(
            svg,
            "<text x=\"5\" y=\"{:.1}\" class=\"lane\">{}</text><line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            y + LANE / 2.0 + 4.0,
            esc(port),
            y + LANE - 2.0,
            LEFT + WIDTH,
            y + LANE - 2.0
        );
        // Connections this port's node sent on: first to last segment.
        let mut conns: BTreeMap<(String, String), (u64, u64, usize)> = BTreeMap::new();
        for f in frames.iter().filter(|f| f.iface == *port && f.inbound) {
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
                        secs(f.ts_ns),
                        esc(port),
                        esc(&e_src(f)),
                        esc(&e_dst(f)),
                        xx = x(f.ts_ns)
                    );
                }
            } else if is_control(f) {
                let _ = writeln!(
                    svg,
                    "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/>",
                    y + LANE - 8.0,
                    y + LANE - 3.0,
                    xx = x(f.ts_ns)
                );
            } else if let Some(what) = notable(f) {
                let _ = writeln!(
                    svg,
                    "<circle class=\"garp\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#2471a3\"><title>{:.3}s {} sent {}</title></circle>",
                    x(f.ts_ns),
                    y + LANE / 2.0,
                    secs(f.ts_ns),
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
                x(*a),
                (x(*b) - x(*a)).max(1.0),
                esc(src),
                esc(dst),
                secs(*a),
                secs(*b)
            );
        }
    }
    // Lanes: clients.
    for (j, (id, rep)) in clients.iter().enumerate() {
        let y = TOP + LANE * (ports.len() + j) as f64;
        let ok = rep.intact();
        let (a, b) = (rep.started_ns.max(t0), rep.finished_ns.max(rep.started_ns));
        let _ = writeln!(
            svg,
            "<text x=\"5\" y=\"{:.1}\">client {}</text><rect class=\"client {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"><title>{}</title></rect>",
            y + LANE / 2.0 + 4.0,
            esc(id),
            if ok { "intact" } else { "broken" },
            x(a),
            y + LANE / 2.0 - 6.0,
            (x(b) - x(a)).max(1.0),
            if ok { "#27ae60" } else { "#c0392b" },
            esc(&rep.summary())
        );
        if let Some((s, e)) = stall(rep, frames) {
            let _ = writeln!(
                svg,
                "<rect class=\"stall\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"url(#hatch)\" stroke=\"#c0392b\"><title>longest stall: {:.1} ms, from {:.3}s</title></rect>",
                x(s),
                y + LANE / 2.0 - 6.0,
                (x(e) - x(s)).max(2.0),
                (e - s) as f64 / 1e6,
                secs(s)
            );
        }
    }
    // Events across every lane.
    for (labels, e) in events.iter().filter(|e| drawn(&e.kind)).enumerate() {
        let xx = x(e.t_ns);
        let label = format!("{} {}", e.kind, e.node.as_deref().unwrap_or_default());
        let _ = writeln!(
            svg,
            "<g class=\"event\"><line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#8e44ad\" stroke-dasharray=\"3,3\"/><text x=\"{xx:.1}\" y=\"{:.1}\" fill=\"#8e44ad\">{}</text><title>{:.3}s {} {}</title></g>",
            TOP - 12.0,
            height - 20.0,
            14.0 + (labels % 3) as f64 * 13.0,
            esc(label.trim()),
            secs(e.t_ns),
            esc(label.trim()),
            esc(&e.detail)
        );
    }
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
