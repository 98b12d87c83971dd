//! `junction health`: asks a broker's `/healthz` whether it is healthy, for
//! container healthchecks (distroless and `scratch` images have no curl) and for
//! scripts.
//!
//! It exits 0 when `/healthz` answers 200, and 1 with one line on stderr saying why
//! otherwise (Docker reads 1 as unhealthy and reserves 2). The URL is `--url`, or
//! the configuration's HTTP listener (file, then `JUNCTION_*` variables, as `serve`
//! reads them), or the `-m` monitoring listener when HTTP is off; a listener on
//! every interface is asked on the loopback address.

use crate::cli::ServeArgs;
use crate::config::Config;
use clap::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `junction health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The broker's HTTP URL (`/healthz` is added when it has no path) or the full
    /// URL of a health endpoint [default: the configuration's HTTP listener, or
    /// http://127.0.0.1:8080].
    #[arg(long = "url", value_name = "URL")]
    pub url: Option<String>,
    /// TOML configuration file to take the HTTP listener from (the one `serve` uses).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long = "timeout", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs `junction health`.
pub fn main(args: &HealthArgs) -> ExitCode {
    match check(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("junction health: {reason}");
            ExitCode::from(1)
        }
    }
}

/// The health URL, from `--url` or the configuration.
fn health_url(args: &HealthArgs) -> Result<reqwest::Url, String> {
    let raw = match &args.url {
        Some(u) => u.trim().to_string(),
        None => {
            let config = ServeArgs {
                config: args.config.clone(),
                ..ServeArgs::default()
            }
            .load()
            .map_err(|e| e.to_string())?;
            match local_http_addr(&config)? {
                Some(addr) => format!("http://{addr}"),
                None => {
                    return Err(
                        "the configuration has no HTTP listener (http_listen and monitor_listen are off); pass --url"
                            .into(),
                    );
                }
            }
        }
    };
    let mut url =
        reqwest::Url::parse(&raw).map_err(|e| format!("--url {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http") {
        return Err(format!(
            "--url {raw:?}: only http:// is supported (the listener serves plain HTTP)"
        ));
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/healthz");
    }
    Ok(url)
}

/// Where to reach the configured HTTP (or else monitoring) listener from this
/// machine: its address, with an unspecified host replaced by loopback.
pub(crate) fn local_http_addr(config: &Config) -> Result<Option<SocketAddr>, String> {
    let http = config
        .listen("http_listen", &config.http_listen)
        .map_err(|e| e.to_string())?;
    let addr = match (http, &config.monitor_listen) {
        (Some(a), _) => Some(a),
        (None, Some(m)) => config
            .listen("monitor_listen", m)
            .map_err(|e| e.to_string())?,
        (None, None) => None,
    };
    Ok(addr.map(|mut a| {
        if a.ip().is_unspecified() {
            a.set_ip(match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        a
    }))
}

/// Runs `f` with an HTTP client on a runtime of its own, for the commands that ask
/// a running broker over HTTP (`health`, `cluster ...`). No proxy: they ask this
/// broker, never what HTTP_PROXY points at.
pub(crate) fn with_client<T>(
    timeout: std::time::Duration,
    f: impl AsyncFnOnce(reqwest::Client) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        f(client).await
    })
}

/// `Ok(line)` when the endpoint answers 200, `Err(reason)` otherwise.
fn check(args: &HealthArgs) -> Result<String, String> {
    let url = health_url(args)?;
    with_client(args.timeout, async |client| {
        let response = client.get(url.clone()).send().await.map_err(|e| {
            let why = if e.is_timeout() {
                format!(
                    "no answer within {}",
                    humantime::format_duration(args.timeout)
                )
            } else if e.is_connect() {
                "connection refused or unreachable (is the broker running there?)".to_string()
            } else {
                e.to_string()
            };
            format!("{url}: {why}")
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::OK {
            return Ok(format!("{url}: {} {}", status.as_u16(), body.trim()));
        }
        // `/healthz` says why in `error`; `/readyz` in `error.message`.
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("error").and_then(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .or_else(|| e.get("message")?.as_str().map(str::to_string))
                })
            })
            .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
        let reason: String = reason.chars().take(200).collect();
        if reason.is_empty() {
            Err(format!("{url}: answered {status}"))
        } else {
            Err(format!("{url}: answered {status}: {reason}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> HealthArgs {
        HealthArgs {
            url: url.map(str::to_string),
            config: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_url_without_a_path_gets_healthz() {
        let u = |s| health_url(&args(Some(s))).map(|u| u.to_string());
        assert_eq!(
            u("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080/healthz")
        );
        assert_eq!(
            u("http://127.0.0.1:8080/").as_deref(),
            Ok("http://127.0.0.1:8080/healthz")
        );
        assert_eq!(
            u("http://127.0.0.1:8080/readyz").as_deref(),
            Ok("http://127.0.0.1:8080/readyz")
        );
        assert!(u("https://x").unwrap_err().contains("only http://"));
        assert!(u("nope").unwrap_err().contains("is not a URL"));
    }

    #[test]
    fn the_default_url_is_the_http_listener_on_loopback() {
        let c = Config::default();
        assert_eq!(
            local_http_addr(&c),
            Ok(Some("127.0.0.1:8080".parse().unwrap()))
        );
        let c = Config {
            http_listen: "10.1.2.3:9000".into(),
            ..Config::default()
        };
        assert_eq!(
            local_http_addr(&c),
            Ok(Some("10.1.2.3:9000".parse().unwrap()))
        );
        let c = Config {
            http_listen: "off".into(),
            monitor_listen: Some(":8222".into()),
            ..Config::default()
        };
        assert_eq!(
            local_http_addr(&c),
            Ok(Some("127.0.0.1:8222".parse().unwrap()))
        );
        let c = Config {
            http_listen: "off".into(),
            ..Config::default()
        };
        assert_eq!(local_http_addr(&c), Ok(None));
    }
}
