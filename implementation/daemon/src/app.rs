//! The applications the daemon serves on its addresses, through `holdfast_proto::app::App`.
//!
//! The listener binds the wildcard address (dual-stack when IPv6 is available), so it serves
//! whichever owned addresses this node currently holds. A connection taken over from a failed
//! owner is served by the same loop ([`serve`]), continuing the application from the replica's
//! checkpoint.

use anyhow::{Context, Result};
use holdfast_proto::app::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// Starts the application on every port of the range.
pub fn spawn_listeners(ports: (u16, u16), app: fn() -> Box<dyn App>) -> Result<()> {
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
                        debug!(%peer, port, "connection");
                        tokio::spawn(serve(s, app()));
                    }
                    Err(e) => warn!("accept: {e}"),
                }
            }
        });
    }
    Ok(())
}

/// Serves one connection: client bytes into the application, its output back.
pub async fn serve(mut s: TcpStream, mut app: Box<dyn App>) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.clear();
                app.input(&buf[..n], &mut out);
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}
