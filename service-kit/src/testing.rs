//! Helpers for the services' tests and load examples (feature `testing`): things
//! every test of a service binary needs and that are not service logic.

use std::path::Path;
use std::process::Command;

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`;
/// 0 where there is no `/proc` (the load examples then print no per-CPU figure of
/// worth, but still run).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name (which may hold spaces); utime and
    // stime are fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100 on
    // Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A loopback port free at the time of the call, for a child process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What `<binary> --validate <file>` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Validated {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `binary --validate file` as a user would.
pub fn validate(binary: &str, file: &Path) -> Validated {
    let output = Command::new(binary)
        .arg("--validate")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    Validated {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The verdict of a file that validates.
pub fn valid(file: &Path) -> Validated {
    Validated {
        code: Some(0),
        stdout: format!("{}: OK\n", file.display()),
        stderr: String::new(),
    }
}

/// The verdict of a file that does not: exit status 1 and `message` alone on stderr.
pub fn invalid(message: String) -> Validated {
    Validated {
        code: Some(1),
        stdout: String::new(),
        stderr: message,
    }
}

/// A gRPC channel to a service that is still starting: connects every 50 ms for up to
/// 5 s (the load examples start the service binary themselves).
pub async fn channel(address: &str) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap_or_else(|e| panic!("{address} is not a gRPC address: {e}"));
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{address} did not come up");
}

/// How a test tells a running service to stop: what the services' `serve` takes as
/// its `shutdown` future.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A service's `serve` running in this process on loopback port-0 listeners (gRPC and
/// HTTP), as its integration tests run it: started, waited for until `/ready`, and
/// stopped through its shutdown future, which must end `serve` without error.
pub struct RunningService {
    /// `http://127.0.0.1:<port>`, for tonic clients.
    pub grpc: String,
    /// `http://127.0.0.1:<port>`: metrics, readiness.
    pub http: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningService {
    /// Binds both listeners, hands them to `serve`, and returns once `/ready` says 200
    /// (panics after 10 s: a service that never gets ready is a failed test).
    pub async fn start<F, Fut, E>(serve: F) -> RunningService
    where
        F: FnOnce(tokio::net::TcpListener, tokio::net::TcpListener, Shutdown) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let served = serve(grpc, http, shutdown);
        let task = tokio::spawn(async move {
            if let Err(error) = served.await {
                panic!("serve failed: {error}");
            }
        });
        let service = RunningService {
            grpc: format!("http://{grpc_addr}"),
            http: format!("http://{http_addr}"),
            stop: Some(stop),
            task,
        };
        for _ in 0..200 {
            if service.get("/ready").await.0 == 200 {
                return service;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the service at {} never became ready", service.http);
    }

    /// `GET path` on the HTTP listener: (status, body). HTTP/1.0, so the body is
    /// never chunked and ends with the connection.
    pub async fn get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.http.trim_start_matches("http://");
        let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
            return (0, String::new());
        };
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut response = Vec::new();
        if stream.read_to_end(&mut response).await.is_err() {
            return (0, String::new());
        }
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }

    /// The Prometheus text at `/metrics`.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics");
        body
    }

    /// Ends `serve` and waits for it (a panic in it fails the test here).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

/// Debian's redis-server on a loopback port, no persistence, stopped by its PID when
/// dropped (never by name).
pub struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    /// On a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// On `port` (a test that stops and restarts Redis at the same address).
    pub fn start_on(port: u16) -> RedisServer {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return RedisServer { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on {port}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_uses_cpu_time() {
        let started = std::time::Instant::now();
        // Busy for 50 ms: 5 ticks, so the figure must move off zero.
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(super::cpu_seconds(std::process::id()) > 0.0);
        assert_eq!(super::cpu_seconds(u32::MAX), 0.0, "no such process");
    }
}
