//! The application API: a per-connection deterministic state machine, bytes in, bytes out.
//!
//! Read [`App`] first. The daemon runs an application on each live connection; a backup runs a
//! *shadow replica* of the same application ([`Replica`]) fed with the client bytes it snoops,
//! counting its output without sending it. Because the application is deterministic, the replica
//! holds exactly the state and output of the primary's, so at takeover the new owner continues
//! from the point of failure (claims 9, 11, 16).
//!
//! To write an application: implement [`App`] (it must produce the same output for the same
//! input, with no clock or randomness of its own), and, if its state spans connections or is
//! large, `checkpoint`/`restore`.

use std::collections::VecDeque;

/// A per-connection application.
pub trait App: Send {
    /// Consumes client bytes, appending whatever it sends back to `out`.
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>);
    /// Its state, for a CONN-STATE or a late backup.
    fn checkpoint(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Resumes from a checkpoint.
    fn restore(&mut self, _checkpoint: &[u8]) {}
    /// Whether the application has no more output for this connection: the server then sends
    /// its FIN after what it has sent (a half-close: it still reads, and ignores, what the
    /// client sends until the client closes too). The client's own FIN does not count here:
    /// after it, the server closes once its output is sent, whatever the application.
    fn finished(&self) -> bool {
        false
    }
    /// The application's name, as in the ownership information.
    fn name(&self) -> &'static str;
}

/// Echo: every byte back, in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl App for Echo {
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(data);
    }
    fn name(&self) -> &'static str {
        "echo"
    }
}

/// The deterministic byte stream of the `stream` application: byte `i` of stream `seed`. The
/// harness's `download` workload verifies against the same function (its `client::pattern`);
/// the two must agree byte for byte, and a test in holdfastd checks that they do.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = mix(seed ^ (pos / 8).wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
        let start = (pos % 8) as usize;
        let take = (8 - start).min(buf.len() - i);
        buf[i..i + take].copy_from_slice(&word[start..start + take]);
        i += take;
        pos += take as u64;
    }
}

/// Stream: the client sends a seed and a length (two big-endian u64s); the application sends
/// that many bytes of [`pattern`]. A download that resumes at the exact offset after a takeover.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    header: Vec<u8>,
    done: bool,
}

/// The largest download one `stream` connection serves (the output is produced at once).
pub const STREAM_MAX: u64 = 64 << 20;

impl App for Stream {
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let need = 16 - self.header.len();
        self.header.extend_from_slice(&data[..need.min(data.len())]);
        if self.header.len() == 16 {
            self.done = true;
            let seed = u64::from_be_bytes(self.header[..8].try_into().expect("8"));
            let len = u64::from_be_bytes(self.header[8..].try_into().expect("8")).min(STREAM_MAX);
            let start = out.len();
            out.resize(start + len as usize, 0);
            pattern(seed, 0, &mut out[start..]);
        }
    }
    fn checkpoint(&self) -> Vec<u8> {
        let mut c = vec![self.done as u8];
        c.extend_from_slice(&self.header);
        c
    }
    fn restore(&mut self, c: &[u8]) {
        if let Some((d, h)) = c.split_first() {
            self.done = *d == 1;
            // A checkpoint comes off the network: never more than the header's 16 bytes.
            self.header = h[..h.len().min(16)].to_vec();
        }
    }
    fn name(&self) -> &'static str {
        "stream"
    }
}

/// Kv: a line-protocol key-value store, per connection. `SET key value` answers `OK`,
/// `GET key` answers `VALUE value` or `NOT_FOUND`, `DEL key` answers `DELETED` or `NOT_FOUND`,
/// `QUIT` answers `BYE` and closes the server's side (the client may still send; it is
/// ignored); anything else answers `ERROR`. Lines end with `\n`. The state is per connection
/// (each connection's store lives and moves with it); the checkpoint carries the store, any
/// partial line and whether `QUIT` was seen.
#[derive(Debug, Default, Clone)]
pub struct Kv {
    store: std::collections::BTreeMap<String, String>,
    line: Vec<u8>,
    quit: bool,
}

impl Kv {
    fn answer(&mut self, line: &str, out: &mut Vec<u8>) {
        let mut parts = line.splitn(3, ' ');
        let reply = match (parts.next(), parts.next(), parts.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                self.store.insert(k.to_owned(), v.to_owned());
                "OK".to_owned()
            }
            (Some("GET"), Some(k), None) => match self.store.get(k) {
                Some(v) => format!("VALUE {v}"),
                None => "NOT_FOUND".to_owned(),
            },
            (Some("DEL"), Some(k), None) => match self.store.remove(k) {
                Some(_) => "DELETED".to_owned(),
                None => "NOT_FOUND".to_owned(),
            },
            (Some("QUIT"), None, None) => {
                self.quit = true;
                "BYE".to_owned()
            }
            _ => "ERROR".to_owned(),
        };
        out.extend_from_slice(reply.as_bytes());
        out.push(b'\n');
    }
}

impl App for Kv {
    fn input(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            if self.quit {
                return;
            }
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.answer(line.trim_end_matches('\r'), out);
            } else if self.line.len() < 64 * 1024 {
                self.line.push(b);
            }
        }
    }
    fn checkpoint(&self) -> Vec<u8> {
        // One byte of flags (1: QUIT seen), then key \t value \n ..., then \0, then the
        // partial line.
        let mut c = vec![self.quit as u8];
        for (k, v) in &self.store {
            c.extend_from_slice(k.as_bytes());
            c.push(b'\t');
            c.extend_from_slice(v.as_bytes());
            c.push(b'\n');
        }
        c.push(0);
        c.extend_from_slice(&self.line);
        c
    }
    fn restore(&mut self, c: &[u8]) {
        let Some((flags, c)) = c.split_first() else {
            *self = Self::default();
            return;
        };
        self.quit = flags & 1 != 0;
        let (store, line) = match c.iter().position(|b| *b == 0) {
            Some(i) => (&c[..i], &c[i + 1..]),
            None => (c, &c[c.len()..]),
        };
        self.store = String::from_utf8_lossy(store)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.line = line.to_vec();
    }
    fn finished(&self) -> bool {
        self.quit
    }
    fn name(&self) -> &'static str {
        "kv"
    }
}

/// The built-in application with this name: `echo`, `stream` or `kv`.
pub fn by_name(name: &str) -> Option<fn() -> Box<dyn App>> {
    match name {
        "echo" => Some(|| Box::new(Echo)),
        "stream" => Some(|| Box::new(Stream::default())),
        "kv" => Some(|| Box::new(Kv::default())),
        _ => None,
    }
}

/// A shadow replica: the application fed with the snooped input, and its output kept from the
/// first byte the client has not acknowledged.
pub struct Replica {
    app: Box<dyn App>,
    out: VecDeque<u8>,
    /// Stream offset of `out[0]`.
    base: u64,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("app", &self.app.name())
            .field("base", &self.base)
            .field("buffered", &self.out.len())
            .finish()
    }
}

impl Replica {
    /// A replica of a fresh application.
    pub fn new(app: Box<dyn App>) -> Self {
        Self {
            app,
            out: VecDeque::new(),
            base: 0,
        }
    }

    /// A replica that joins a connection mid-stream: the application restored from
    /// `checkpoint`, and `output` the output it produced that the client has not acknowledged,
    /// starting at stream offset 0.
    pub fn resume(mut app: Box<dyn App>, checkpoint: &[u8], output: Vec<u8>) -> Self {
        app.restore(checkpoint);
        Self {
            app,
            out: output.into(),
            base: 0,
        }
    }

    /// Feeds input the primary has received (ignored once the application has finished, as
    /// the serving side ignores it).
    pub fn input(&mut self, data: &[u8]) {
        if self.app.finished() {
            return;
        }
        let mut o = Vec::new();
        self.app.input(data, &mut o);
        self.out.extend(o);
    }

    /// Drops output before stream offset `acked` (the client has it).
    pub fn trim(&mut self, acked: u64) {
        if acked > self.base {
            let n = ((acked - self.base) as usize).min(self.out.len());
            self.out.drain(..n);
            self.base += n as u64;
        }
    }

    /// Output from stream offset `from` on; `None` if that was already trimmed away.
    pub fn output_from(&self, from: u64) -> Option<Vec<u8>> {
        if from < self.base {
            return None;
        }
        let skip = ((from - self.base) as usize).min(self.out.len());
        Some(self.out.iter().skip(skip).copied().collect())
    }

    /// Total output produced so far (stream offset of the end).
    pub fn produced(&self) -> u64 {
        self.base + self.out.len() as u64
    }

    /// The application's checkpoint.
    pub fn checkpoint(&self) -> Vec<u8> {
        self.app.checkpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(app: &mut dyn App, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        app.input(input, &mut out);
        out
    }

    #[test]
    fn kv_answers_and_checkpoints() {
        let mut k = Kv::default();
        let out = run(
            &mut k,
            b"SET a 1\nSET b two words\nGET a\nGET b\nGET c\nDEL a\nDEL a\nFOO\nGET",
        );
        assert_eq!(
            out,
            b"OK\nOK\nVALUE 1\nVALUE two words\nNOT_FOUND\nDELETED\nNOT_FOUND\nERROR\n"
        );
        // A replica restored from the checkpoint continues identically, partial line included.
        let mut r = Kv::default();
        r.restore(&k.checkpoint());
        assert_eq!(run(&mut r, b" b\n"), run(&mut k, b" b\n"));
        assert_eq!(run(&mut r, b"GET b\n"), b"VALUE two words\n");
    }

    #[test]
    fn stream_sends_the_pattern_once_the_header_is_complete() {
        let mut s = Stream::default();
        let mut hdr = 7u64.to_be_bytes().to_vec();
        hdr.extend_from_slice(&1000u64.to_be_bytes());
        assert!(run(&mut s, &hdr[..5]).is_empty());
        let mut r = Stream::default();
        r.restore(&s.checkpoint());
        let out = run(&mut r, &hdr[5..]);
        let mut want = vec![0u8; 1000];
        pattern(7, 0, &mut want);
        assert_eq!(out, want);
        assert!(run(&mut r, b"more").is_empty());
    }

    /// A checkpoint arrives in a CONN-STATE: any bytes restore without a panic, and the
    /// application still takes input.
    #[test]
    fn any_checkpoint_restores_without_panic() {
        let junk: [&[u8]; 5] = [b"", b"\x01", &[0xff; 40], b"a\tb\n\0SET", &[0; 17]];
        for c in junk {
            for mut app in [
                Box::new(Echo) as Box<dyn App>,
                Box::new(Stream::default()),
                Box::new(Kv::default()),
            ] {
                app.restore(c);
                let _ = run(app.as_mut(), &[7; 20]);
            }
        }
    }

    #[test]
    fn replica_keeps_unacknowledged_output() {
        let mut r = Replica::new(Box::new(Echo));
        r.input(b"hello world");
        r.trim(6);
        assert_eq!(r.output_from(6).unwrap(), b"world");
        assert_eq!(r.output_from(8).unwrap(), b"rld");
        assert!(r.output_from(2).is_none());
        assert_eq!(r.produced(), 11);
    }
}
