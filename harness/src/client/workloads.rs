//! The workloads, each on one connection: `stream`, `download`, `request` and `kv`, and the
//! paced, verifying reader they share.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

pub(super) fn stalled(what: &str, stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no progress for {} ms", stall.as_millis()),
    )
}

/// Reads and verifies `total` bytes of stream `seed`, in reads of at most `chunk` bytes with
/// `pace` between them.
pub(super) async fn verify_reader(
    rd: &mut (impl AsyncReadExt + Unpin),
    seed: u64,
    total: u64,
    stall: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    verify_paced(
        rd,
        seed,
        total,
        stall,
        64 * 1024,
        Duration::ZERO,
        rep,
        progress,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn verify_paced(
    rd: &mut (impl AsyncReadExt + Unpin),
    seed: u64,
    total: u64,
    stall: Duration,
    chunk: usize,
    pace: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut buf = vec![0u8; chunk];
    while rep.bytes_verified < total {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let want = buf.len().min((total - rep.bytes_verified) as usize);
        let n = match tokio::time::timeout(stall, rd.read(&mut buf[..want])).await {
            Ok(r) => r?,
            Err(_) => return Err(stalled("read", stall)),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF before all bytes",
            ));
        }
        if let Some(at) = pattern::mismatch(seed, rep.bytes_verified, &buf[..n]) {
            return Err(io::Error::other(format!("byte mismatch at offset {at}")));
        }
        rep.bytes_verified += n as u64;
        progress.tick();
    }
    Ok(())
}

pub(super) async fn stream(
    sock: TcpStream,
    spec: &ClientSpec,
    seed: u64,
    stall: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    let (mut rd, mut wr) = sock.into_split();
    let total = spec.bytes;
    let pace = Duration::from_micros(spec.pace_us);
    let half_close = spec.half_close;
    let writer = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut off = 0u64;
        while off < total {
            let n = buf.len().min((total - off) as usize);
            pattern::fill(seed, off, &mut buf[..n]);
            match tokio::time::timeout(stall, wr.write_all(&buf[..n])).await {
                Ok(r) => r?,
                Err(_) => return Err(stalled("write", stall)),
            }
            off += n as u64;
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        if half_close {
            // Our FIN goes now, while the echo may still be on its way.
            wr.shutdown().await?;
        }
        Ok::<_, io::Error>(wr)
    };
    let (chunk, read_pace) = if spec.read_pace_us > 0 {
        (16 * 1024, Duration::from_micros(spec.read_pace_us))
    } else {
        (64 * 1024, Duration::ZERO)
    };
    let reader = verify_paced(&mut rd, seed, total, stall, chunk, read_pace, rep, progress);
    let (w, r) = tokio::join!(writer, reader);
    // After a reset, the kernel reports the error once: to whichever side asked first. A reader
    // that then sees EOF is reporting the same reset.
    if let Err(we) = &w
        && matches!(
            we.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
        && r.as_ref()
            .err()
            .is_none_or(|re| re.kind() == io::ErrorKind::UnexpectedEof)
    {
        return Err(w.expect_err("checked"));
    }
    r?;
    let mut wr = w?;
    if half_close {
        // The server must close right after the last byte of the echo.
        let mut one = [0u8; 1];
        return match tokio::time::timeout(stall, rd.read(&mut one)).await {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(_)) => Err(io::Error::other("bytes after the whole echo")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(stalled(
                "waiting for the server's FIN after the echo",
                stall,
            )),
        };
    }
    let _ = wr.shutdown().await;
    Ok(())
}

pub(super) async fn download(
    mut sock: TcpStream,
    spec: &ClientSpec,
    seed: u64,
    stall: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut hdr = [0u8; 16];
    hdr[..8].copy_from_slice(&seed.to_be_bytes());
    hdr[8..].copy_from_slice(&spec.bytes.to_be_bytes());
    sock.write_all(&hdr).await?;
    if spec.pace_us == 0 {
        return verify_reader(&mut sock, seed, spec.bytes, stall, rep, progress).await;
    }
    // Paced: read in 16 KiB steps with a pause, so the download spans time (the server's send
    // buffer and our window fill, as with a slow reader).
    let pace = Duration::from_micros(spec.pace_us);
    while rep.bytes_verified < spec.bytes {
        let step = (spec.bytes - rep.bytes_verified).min(16 * 1024);
        let mut lim = (&mut sock).take(step);
        let before = rep.bytes_verified;
        let target = before + step;
        verify_reader(&mut lim, seed, target, stall, rep, progress).await?;
        tokio::time::sleep(pace).await;
    }
    Ok(())
}

pub(super) async fn request(
    mut sock: TcpStream,
    spec: &ClientSpec,
    seed: u64,
    stall: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut req = vec![0u8; spec.size];
    let mut resp = vec![0u8; spec.size];
    let interval = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    let mut next = tokio::time::Instant::now();
    for i in 0..spec.count {
        let off = i * spec.size as u64;
        pattern::fill(seed, off, &mut req);
        sock.write_all(&req).await?;
        match tokio::time::timeout(stall, sock.read_exact(&mut resp)).await {
            Ok(r) => r?,
            Err(_) => return Err(stalled("response", stall)),
        };
        if resp != req {
            return Err(io::Error::other(format!(
                "response {i} differs from request"
            )));
        }
        rep.bytes_verified += spec.size as u64;
        progress.tick();
        if let Some(iv) = interval {
            next += iv;
            tokio::time::sleep_until(next).await;
        }
    }
    Ok(())
}

/// The lines of a kv session and the answer each must get: SETs of ten keys to seeded values,
/// GETs that must return the last value set, and DELs.
pub fn kv_script(seed: u64, count: u64) -> Vec<(String, String)> {
    let mut last: std::collections::BTreeMap<u64, String> = Default::default();
    (0..count)
        .map(|i| {
            let key = (i.wrapping_mul(7) ^ seed) % 10;
            match i % 5 {
                0 | 1 | 3 => {
                    let mut b = [0u8; 6];
                    pattern::fill(seed, i * 6, &mut b);
                    let v: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    last.insert(key, v.clone());
                    (format!("SET k{key} {v}\n"), "OK\n".to_owned())
                }
                2 => {
                    let a = match last.get(&key) {
                        Some(v) => format!("VALUE {v}\n"),
                        None => "NOT_FOUND\n".to_owned(),
                    };
                    (format!("GET k{key}\n"), a)
                }
                _ => {
                    let a = if last.remove(&key).is_some() {
                        "DELETED\n"
                    } else {
                        "NOT_FOUND\n"
                    };
                    (format!("DEL k{key}\n"), a.to_owned())
                }
            }
        })
        .collect()
}

pub(super) async fn kv(
    sock: TcpStream,
    spec: &ClientSpec,
    seed: u64,
    stall: Duration,
    rep: &mut ConnReport,
    progress: &mut Progress,
) -> io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let interval = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    let mut next = tokio::time::Instant::now();
    let mut line = String::new();
    for (i, (cmd, want)) in kv_script(seed, spec.count).into_iter().enumerate() {
        wr.write_all(cmd.as_bytes()).await?;
        line.clear();
        let n = match tokio::time::timeout(
            stall,
            tokio::io::AsyncBufReadExt::read_line(&mut rd, &mut line),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(stalled("answer", stall)),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF before all answers",
            ));
        }
        if line != want {
            return Err(io::Error::other(format!(
                "answer {i} to {:?} was {line:?}, expected {want:?}",
                cmd.trim_end()
            )));
        }
        rep.bytes_verified += line.len() as u64;
        progress.tick();
        if let Some(iv) = interval {
            next += iv;
            tokio::time::sleep_until(next).await;
        }
    }
    Ok(())
}
