//! Health checks for `srvd register`: one probe per interval, each bounded by the timeout, mapped
//! to the three states the issue defines (passing, warning, critical).
//!
//! The HTTP probe is a hand-written `GET` that reads the status line only: a health endpoint's
//! body is irrelevant, and an HTTP client crate would be the sidecar's heaviest dependency.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// HTTP 2xx, a TCP connect, exit status 0 (or no check at all).
    Passing,
    /// An HTTP answer that is not 2xx, or exit status 1: stays registered, marked.
    Warning(String),
    /// No HTTP answer, no TCP connection, any other exit: deregistered after enough in a row.
    Critical(String),
}

/// A health check from `--check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `http://HOST[:PORT][/PATH]`.
    Http {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port (80 when the URL has none).
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// `tcp://HOST:PORT`.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `exec:CMD ARGS`: split on whitespace, run without a shell.
    Exec {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { host, port, path } => write!(f, "http://{}{path}", host_port(host, *port)),
            Self::Tcp { host, port } => write!(f, "tcp://{}", host_port(host, *port)),
            Self::Exec { program, args } => write!(f, "exec:{program} {}", args.join(" ")),
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `--check`.
///
/// # Errors
/// A message naming what is wrong with `text`.
pub fn parse(text: &str) -> Result<Check, String> {
    let bad = |why: &str| {
        format!(
            "--check {text:?}: {why} (expected http://HOST:PORT/PATH, tcp://HOST:PORT or 'exec:CMD ARGS')"
        )
    };
    if let Some(command) = text.strip_prefix("exec:") {
        let mut words = command.split_whitespace().map(str::to_string);
        let program = words.next().ok_or_else(|| bad("no command"))?;
        return Ok(Check::Exec {
            program,
            args: words.collect(),
        });
    }
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("not a URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = split_authority(authority).map_err(|why| bad(&why))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Ok(Check::Http {
            host,
            port: port.unwrap_or(80),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        }),
        "tcp" => {
            if !path.is_empty() && path != "/" {
                return Err(bad("a tcp check has no path"));
            }
            Ok(Check::Tcp {
                host,
                port: port.ok_or_else(|| bad("a tcp check needs a port"))?,
            })
        }
        "https" => Err(bad("https checks are not supported")),
        other => Err(bad(&format!("unknown scheme {other:?}"))),
    }
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` → host and port (1..=65535).
fn split_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after ']'")?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ', '/', '?', '#']) {
        return Err("no valid host".into());
    }
    if !authority.starts_with('[') && host.contains(':') {
        return Err("IPv6 hosts need brackets".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("port {p:?} is not 1..=65535")),
        },
    };
    Ok((host.to_string(), port))
}

/// Runs one probe, bounded by `timeout` (an exec probe is killed when it runs over).
pub async fn run(check: &Check, timeout: Duration) -> Health {
    match check {
        Check::Http { host, port, path } => {
            match tokio::time::timeout(timeout, http(host, *port, path)).await {
                Ok(health) => health,
                Err(_) => Health::Critical(format!("no HTTP answer within {timeout:?}")),
            }
        }
        Check::Tcp { host, port } => {
            match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), *port))).await {
                Ok(Ok(_)) => Health::Passing,
                Ok(Err(e)) => Health::Critical(format!("TCP connect failed: {e}")),
                Err(_) => Health::Critical(format!("TCP connect timed out after {timeout:?}")),
            }
        }
        Check::Exec { program, args } => exec(program, args, timeout).await,
    }
}

/// Longest status line read: `HTTP/1.1 200 OK` plus any reason phrase a server may send.
const MAX_STATUS_LINE: usize = 1024;

async fn http(host: &str, port: u16, path: &str) -> Health {
    let mut stream = match TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => return Health::Critical(format!("HTTP connect failed: {e}")),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: srvd-register\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        host_port(host, port)
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Health::Critical(format!("HTTP request not sent: {e}"));
    }
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Health::Critical(format!("HTTP connection failed: {e}")),
        }
    }
    if buf.is_empty() {
        return Health::Critical("HTTP connection closed without a reply".into());
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=999).contains(code));
    match status {
        Some(code) if (200..300).contains(&code) => Health::Passing,
        Some(code) => Health::Warning(format!("HTTP status {code}")),
        None => Health::Critical(format!("not an HTTP reply: {:?}", line.trim_end())),
    }
}

async fn exec(program: &str, args: &[String], timeout: Duration) -> Health {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Dropping the wait on timeout kills the child: a hung check never piles up.
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Health::Critical(format!("cannot run {program:?}: {e}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(0) => Health::Passing,
            Some(1) => Health::Warning("exit status 1".into()),
            Some(code) => Health::Critical(format!("exit status {code}")),
            None => Health::Critical(format!("check ended by {status}")),
        },
        Ok(Err(e)) => Health::Critical(format!("waiting for {program:?} failed: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Health::Critical(format!("check killed after {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse("http://10.0.1.10:8080/health").unwrap(),
            Check::Http {
                host: "10.0.1.10".into(),
                port: 8080,
                path: "/health".into()
            }
        );
        assert_eq!(
            parse("http://[::1]/").unwrap(),
            Check::Http {
                host: "::1".into(),
                port: 80,
                path: "/".into()
            }
        );
        assert_eq!(
            parse("tcp://db:5432").unwrap(),
            Check::Tcp {
                host: "db".into(),
                port: 5432
            }
        );
        assert_eq!(
            parse("exec:/bin/check -q  x").unwrap(),
            Check::Exec {
                program: "/bin/check".into(),
                args: vec!["-q".into(), "x".into()]
            }
        );
    }

    #[test]
    fn rejects_what_it_cannot_probe() {
        for bad in [
            "localhost:80",
            "http://",
            "http://h:0/",
            "http://h:70000/",
            "http://h:x/",
            "tcp://h",
            "tcp://h:1/path",
            "https://h/",
            "ftp://h:21",
            "http://::1:80/",
            "exec:",
            "exec:   ",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// A listener on 127.0.0.1 that answers each connection with `reply` (then closes).
    async fn serving(reply: &'static [u8]) -> (String, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply).await;
            }
        });
        ("127.0.0.1".into(), port)
    }

    #[tokio::test]
    async fn http_and_tcp_map_answers_to_states() {
        let t = Duration::from_secs(5);
        let http = |(host, port): (String, u16)| Check::Http {
            host,
            port,
            path: "/health".into(),
        };
        let ok = serving(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(run(&http(ok.clone()), t).await, Health::Passing);
        let (host, port) = ok;
        assert_eq!(run(&Check::Tcp { host, port }, t).await, Health::Passing);
        let busy = serving(b"HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            run(&http(busy), t).await,
            Health::Warning("HTTP status 503".into())
        );
        let closed = serving(b"").await;
        assert_eq!(
            run(&http(closed), t).await,
            Health::Critical("HTTP connection closed without a reply".into())
        );
        let garbage = serving(b"SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(run(&http(garbage), t).await, Health::Critical(_)));
        // A port nobody listens on: refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let host = "127.0.0.1".to_string();
        assert!(matches!(
            run(
                &Check::Tcp {
                    host: host.clone(),
                    port
                },
                t
            )
            .await,
            Health::Critical(_)
        ));
        assert!(matches!(
            run(&http((host, port)), t).await,
            Health::Critical(_)
        ));
    }

    #[tokio::test]
    async fn exec_maps_exit_codes_and_kills_on_timeout() {
        let sh = |script: &str| Check::Exec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
        };
        let t = Duration::from_secs(5);
        assert_eq!(run(&sh("exit 0"), t).await, Health::Passing);
        assert!(matches!(run(&sh("exit 1"), t).await, Health::Warning(_)));
        assert!(matches!(run(&sh("exit 2"), t).await, Health::Critical(_)));
        let slow = run(&sh("sleep 30"), Duration::from_millis(100)).await;
        assert_eq!(slow, Health::Critical("check killed after 100ms".into()));
    }
}
