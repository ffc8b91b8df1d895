//! Link impairments without netem: a delay line in the switch namespace.
//!
//! This kernel has no netem (and no fq for timed departures), so an impaired port is taken out
//! of the bridge and joined to it through user space: one thread per direction reads every
//! frame the node sends on its port (an `AF_PACKET` socket sees it before the kernel drops it,
//! the port being no bridge port any more), holds it, and writes it into a veth pair whose other
//! end is the node's new bridge port; the bridge's frames for the node come back the same way.
//! Frames travel with their virtio-net header (`PACKET_VNET_HDR`), so checksum offload and
//! segmentation offload still work across the line. On the way each frame is delayed (plus jitter), dropped, duplicated, sent early (reordered)
//! or paced to a rate, as asked. The capture still sees the node's port, so the pcap shows what
//! the node really sent and received. Read [`Impairment::parse`] and [`DelayLine::start`].

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What happens to the frames on one impaired port, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    /// Added to every frame, each way.
    pub delay: Duration,
    /// Each frame's delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    /// Percentage of frames dropped.
    pub loss: f64,
    /// Percentage of frames sent twice.
    pub duplicate: f64,
    /// Percentage of frames sent at once, ahead of the delayed ones (reordering).
    pub reorder: f64,
    /// Each direction's rate limit in bits per second (frames are paced to it).
    pub rate_bps: Option<u64>,
}

impl Impairment {
    /// Parses `delay=20ms jitter=5ms loss=1% duplicate=1% reorder=10% rate=100mbit` (any
    /// subset, spaces or commas between); `none` is no impairment.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut i = Self::default();
        if spec.trim() == "none" {
            return Ok(i);
        }
        for item in spec.split([' ', ',']).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or(format!("{item:?} is not KEY=VALUE"))?;
            let pct = || -> Result<f64, String> {
                let p: f64 = v
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("{k}: {v:?} is not a percentage"))?;
                if (0.0..=100.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!("{k}: {p} is not within 0..=100"))
                }
            };
            let dur = || {
                crate::scenario::parse_duration(v)
                    .filter(|d| *d <= Duration::from_secs(10))
                    .ok_or(format!("{k}: {v:?} is not a duration up to 10s (\"20ms\")"))
            };
            match k {
                "delay" => i.delay = dur()?,
                "jitter" => i.jitter = dur()?,
                "loss" => i.loss = pct()?,
                "duplicate" => i.duplicate = pct()?,
                "reorder" => i.reorder = pct()?,
                "rate" => i.rate_bps = Some(parse_rate(v)?),
                _ => {
                    return Err(format!(
                        "unknown impairment {k:?}; known: delay jitter loss duplicate reorder rate"
                    ));
                }
            }
        }
        if i.jitter > i.delay {
            return Err(format!(
                "jitter ({:?}) cannot exceed the delay ({:?})",
                i.jitter, i.delay
            ));
        }
        Ok(i)
    }

    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// `100mbit`, `1gbit`, `500kbit`, `64000bit`.
fn parse_rate(v: &str) -> Result<u64, String> {
    let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(u, m)| v.strip_suffix(u).map(|n| (n, *m)))
        .ok_or(format!("rate: {v:?} needs a unit: bit, kbit, mbit or gbit"))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("rate: {v:?} is not a number"))?;
    let bps = (n * mult) as u64;
    if bps < 8_000 {
        return Err(format!("rate: {v:?} is below 8kbit"));
    }
    Ok(bps)
}

/// A running delay line: two threads; stopped and joined when dropped.
#[derive(Debug)]
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A raw socket bound to one interface (made in the calling thread's namespace).
fn bound_socket(ifindex: i32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2); result checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Every frame comes with (and goes out with) a virtio-net header: what the kernel knows of
    // a checksum left to offload and of a segmentation left to do. Passed through unchanged,
    // the kernel finishes both on the way out, so the line needs neither.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt(2) with an int option.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: bind(2) with a valid sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A small xorshift generator: impairments need randomness, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with `pct` percent probability.
    fn chance(&mut self, pct: f64) -> bool {
        pct > 0.0 && (self.next() % 1_000_000) as f64 / 10_000.0 < pct
    }

    /// Uniform in `[-j, j]`, as nanoseconds.
    fn jitter(&mut self, j: Duration) -> i128 {
        let j = j.as_nanos() as i128;
        if j == 0 {
            return 0;
        }
        (self.next() % (2 * j as u64 + 1)) as i128 - j
    }
}

impl DelayLine {
    /// Starts the two directions between `port` (the node's end, in the switch namespace) and
    /// `line` (the veth end whose peer is the node's bridge port). The sockets are made by the
    /// caller's namespace thread (`open` runs there); the threads can run anywhere.
    pub fn start(port: i32, line: i32, imp: Impairment, seed: u64) -> io::Result<Self> {
        let (p_rx, l_tx) = (bound_socket(port)?, bound_socket(line)?);
        let (l_rx, p_tx) = (bound_socket(line)?, bound_socket(port)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, (rx, tx)) in [(p_rx, l_tx), (l_rx, p_tx)].into_iter().enumerate() {
            let stop = stop.clone();
            let mut rng = Rng(seed.wrapping_mul(2 * i as u64 + 1) | 1);
            threads.push(
                std::thread::Builder::new()
                    .name("holdfast-delay".into())
                    .spawn(move || run(&rx, &tx, imp, &stop, &mut rng))?,
            );
        }
        Ok(Self { stop, threads })
    }
}

/// One direction: read from `rx`, hold, write to `tx`, until `stop`.
fn run(rx: &OwnedFd, tx: &OwnedFd, imp: Impairment, stop: &AtomicBool, rng: &mut Rng) {
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    // When the last queued frame leaves: frames keep their order unless reordered.
    let mut last = Instant::now();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Send what is due (the queue is kept in departure order).
        while queue.front().is_some_and(|(t, _)| *t <= now) {
            let (_, f) = queue.pop_front().expect("checked");
            send(tx, &f);
        }
        let wait = queue
            .front()
            .map(|(t, _)| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        let mut pfd = libc::pollfd {
            fd: rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_micros().div_ceil(1000) as i32;
        // SAFETY: poll(2) on one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        loop {
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom(2) into our buffer and address, non-blocking.
            let n = unsafe {
                libc::recvfrom(
                    rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 {
                break;
            }
            // Our own sends on this interface come back as outgoing: not ours to forward.
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let frame = buf[..n as usize].to_vec();
            if rng.chance(imp.loss) {
                continue;
            }
            let copies = if rng.chance(imp.duplicate) { 2 } else { 1 };
            let arrived = Instant::now();
            if rng.chance(imp.reorder) {
                for _ in 0..copies {
                    send(tx, &frame);
                }
                continue;
            }
            let d = imp.delay.as_nanos() as i128 + rng.jitter(imp.jitter);
            let mut at = arrived + Duration::from_nanos(d.max(0) as u64);
            // In order: never before the frame ahead of it.
            at = at.max(last);
            if let Some(bps) = imp.rate_bps {
                let wire = Duration::from_nanos(frame.len() as u64 * 8 * 1_000_000_000 / bps);
                at = at.max(last + wire);
            }
            last = at;
            for _ in 0..copies {
                queue.push_back((at, frame.clone()));
            }
        }
    }
}

fn send(tx: &OwnedFd, frame: &[u8]) {
    // SAFETY: send(2) of our buffer on a bound packet socket.
    unsafe {
        libc::send(tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_are_checked() {
        let i = Impairment::parse("delay=20ms jitter=5ms loss=1% rate=100mbit").unwrap();
        assert_eq!(i.delay, Duration::from_millis(20));
        assert_eq!(i.jitter, Duration::from_millis(5));
        assert_eq!(i.loss, 1.0);
        assert_eq!(i.rate_bps, Some(100_000_000));
        assert!(Impairment::parse("none").unwrap().is_none());
        assert_eq!(
            Impairment::parse("duplicate=50%,reorder=10")
                .unwrap()
                .duplicate,
            50.0
        );
        for bad in [
            "delay=20",
            "delay=20ms jitter=30ms",
            "loss=150%",
            "rate=100",
            "rate=1bit",
            "colour=red",
            "delay",
        ] {
            assert!(Impairment::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
