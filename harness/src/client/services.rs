//! The services workloads talk to: echo, a seeded stream, a key-value store and a UDP beacon.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;

/// A service for workloads to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Echo every byte back.
    Echo,
    /// Send a seeded stream: the client writes seed and length (two big-endian u64s).
    Stream,
    /// Send a numbered UDP datagram to `--to` every `--interval-ms` (a liveness signal for
    /// captures); `--listen` is the source address.
    Beacon,
    /// A line-protocol key-value store (SET/GET/DEL), per connection.
    Kv,
}

/// Runs a service until the process is killed.
pub async fn serve(
    service: Service,
    listen: SocketAddr,
    to: Option<SocketAddr>,
    interval: Duration,
) -> io::Result<()> {
    if service == Service::Beacon {
        let sock = UdpSocket::bind(listen).await?;
        sock.set_broadcast(true)?;
        let to = to.ok_or_else(|| io::Error::other("beacon needs --to"))?;
        let mut n = 0u64;
        loop {
            // A send may fail while the link is down; keep going.
            let _ = sock.send_to(&n.to_be_bytes(), to).await;
            n += 1;
            tokio::time::sleep(interval).await;
        }
    }
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        tokio::spawn(async move {
            let _ = match service {
                Service::Echo => echo(sock).await,
                Service::Stream => send_stream(sock).await,
                Service::Kv => kv_serve(sock).await,
                Service::Beacon => Ok(()),
            };
        });
    }
}

pub(super) async fn echo(sock: TcpStream) -> io::Result<()> {
    let (mut rd, mut wr) = sock.into_split();
    tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await
}

pub(super) async fn kv_serve(sock: TcpStream) -> io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut store = std::collections::BTreeMap::<String, String>::new();
    let mut line = String::new();
    loop {
        line.clear();
        if tokio::io::AsyncBufReadExt::read_line(&mut rd, &mut line).await? == 0 {
            return wr.shutdown().await;
        }
        let l = line.trim_end();
        let mut p = l.splitn(3, ' ');
        let a = match (p.next(), p.next(), p.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                store.insert(k.into(), v.into());
                "OK".to_owned()
            }
            (Some("GET"), Some(k), None) => store
                .get(k)
                .map_or("NOT_FOUND".into(), |v| format!("VALUE {v}")),
            (Some("DEL"), Some(k), None) => store
                .remove(k)
                .map_or("NOT_FOUND".into(), |_| "DELETED".into()),
            _ => "ERROR".into(),
        };
        wr.write_all(format!("{a}\n").as_bytes()).await?;
    }
}

pub(super) async fn send_stream(mut sock: TcpStream) -> io::Result<()> {
    let mut hdr = [0u8; 16];
    sock.read_exact(&mut hdr).await?;
    let seed = u64::from_be_bytes(hdr[..8].try_into().expect("8"));
    let len = u64::from_be_bytes(hdr[8..].try_into().expect("8"));
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        pattern::fill(seed, off, &mut buf[..n]);
        sock.write_all(&buf[..n]).await?;
        off += n as u64;
    }
    sock.shutdown().await
}
