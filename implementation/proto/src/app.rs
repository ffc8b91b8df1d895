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

/// The built-in application with this name.
pub fn by_name(name: &str) -> Option<fn() -> Box<dyn App>> {
    match name {
        "echo" => Some(|| Box::new(Echo)),
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

    /// Feeds input the primary has received.
    pub fn input(&mut self, data: &[u8]) {
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

    /// The application, to continue the connection live.
    pub fn into_app(self) -> Box<dyn App> {
        self.app
    }
}
