//! The applications the daemon serves on its addresses. Today: `echo`.
//!
//! The listener binds the wildcard address (dual-stack when IPv6 is available), so it serves
//! whichever owned addresses this node currently holds, and nothing more: an address the node
//! does not hold never reaches it.

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// Starts the application on every port of the range.
pub fn spawn_echo(ports: (u16, u16), application: String) -> Result<()> {
    if application != "echo" {
        anyhow::bail!("unknown application {application:?}");
    }
    for port in ports.0..=ports.1 {
        let std = std::net::TcpListener::bind(("::", port))
            .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))
            .with_context(|| format!("listen on port {port}"))?;
        std.set_nonblocking(true)?;
        let l = TcpListener::from_std(std)?;
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        debug!(%peer, port, "echo connection");
                        tokio::spawn(echo(s));
                    }
                    Err(e) => warn!("accept: {e}"),
                }
            }
        });
    }
    Ok(())
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}
