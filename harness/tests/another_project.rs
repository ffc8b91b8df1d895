//! The harness as another project uses it: its own service (here an echo server on Python's
//! standard library, nothing of Holdfast), a topology written inline, a client stream through
//! a fault, and checks on the client's bytes and on the capture. `docs/using-the-harness.md`
//! walks through this file; it uses only the harness's public API.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_harness::{Cluster, Fault, Options, Topology, need_root};

const TOPOLOGY: &str = r#"
[[switch]]
name = "sw0"

[[node]]
name = "server"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"] }]
process = [{ name = "echo", command = "python3 -c \"import socketserver as s; s.ThreadingTCPServer.allow_reuse_address = True; H = type('H', (s.StreamRequestHandler,), dict(handle=lambda h: [h.wfile.write(b) for b in iter(lambda: h.rfile.read1(65536), b'')])); s.ThreadingTCPServer(('{ip}', 7), H).serve_forever()\"" }]

[[node]]
name = "client"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.100/24"] }]
"#;

#[test]
fn a_stream_to_a_service_of_our_own_survives_a_freeze_of_its_server() {
    // Root, or a rootless sandbox where the kernel allows one, or a clear skip.
    need_root!();
    let topo =
        Topology::parse(Path::new("inline.toml"), TOPOLOGY).unwrap_or_else(|e| panic!("{e}"));
    // The run's captures and logs; removed when the test ends, however it ends.
    let run_dir = holdfast_harness::ScratchDir::new("another-project").unwrap();
    let opts = Options {
        run_dir: Some(run_dir.path().to_owned()),
        ..Options::default()
    };
    let mut cluster = Cluster::up(topo, opts).expect("the cluster comes up");
    let service: SocketAddr = "198.18.0.1:7".parse().unwrap();
    // The service is up once the client's namespace can connect to it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster
        .in_node("client", || {
            TcpStream::connect_timeout(&service, Duration::from_millis(200)).is_ok()
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the echo server never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut spec = ClientSpec::new(Workload::Stream, service);
    spec.bytes = 2_000_000;
    spec.pace_us = 1000;
    let client = cluster
        .start_client("client", spec)
        .expect("the client starts");
    std::thread::sleep(Duration::from_millis(200));
    cluster
        .fault(&Fault::Freeze {
            node: "server".into(),
        })
        .expect("freeze");
    std::thread::sleep(Duration::from_millis(300));
    cluster
        .fault(&Fault::Thaw {
            node: "server".into(),
        })
        .expect("thaw");
    let report = client.wait().expect("the client's report");
    let summary = cluster
        .down()
        .expect("the cluster goes down, leaving nothing");
    // Every byte came back, and the client noticed the freeze as a stall.
    assert!(report.intact(), "{}", report.summary());
    assert!(
        report.max_stall_ms() >= 250.0,
        "no stall while frozen: {}",
        report.summary()
    );
    // The server's port carried the stream: read back from the pcapng.
    let frames = holdfast_harness::capture::read(&summary.captures[0].file).unwrap();
    let from_server = frames
        .iter()
        .filter(|f| f.iface == "sw0:server" && f.inbound)
        .count();
    assert!(from_server > 100, "{from_server} frames from the server");
}
