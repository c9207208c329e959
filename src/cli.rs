//! Envoy-compatible command-line flags.

use std::time::Duration;

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve traffic.
    Serve,
    /// Check the configuration and exit.
    Validate,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Cli {
    /// `-c` / `--config-path`.
    pub config_path: Option<String>,
    /// `--config-yaml`, merged over the file.
    pub config_yaml: Option<String>,
    /// `--concurrency` (default: the number of cores).
    pub concurrency: usize,
    /// `--mode`.
    pub mode: Mode,
    /// `-l` / `--log-level`.
    pub log_level: log::LevelFilter,
    /// `--log-format`: the application log's spdlog pattern.
    pub log_format: Option<String>,
    /// `--drain-time-s`.
    pub drain_time: Duration,
    /// `-o json`: configuration errors as JSON records on stdout.
    pub json_errors: bool,
    /// `--restart-epoch`: 0, or the upgrade this process is (it takes the
    /// listening sockets of the process of the epoch before).
    pub restart_epoch: u64,
    /// `--base-id`: tells apart processes that restart independently.
    pub base_id: u64,
    /// `--parent-shutdown-time-s`: how long the process this one replaces
    /// may drain.
    pub parent_shutdown: Duration,
    /// `--disable-hot-restart`.
    pub hot_restart: bool,
}

impl Cli {
    /// The options as `/server_info`'s `command_line_options` names them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config_path": self.config_path.clone().unwrap_or_default(),
            "config_yaml": self.config_yaml.clone().unwrap_or_default(),
            "concurrency": self.concurrency,
            "mode": match self.mode {
                Mode::Serve => "Serve",
                Mode::Validate => "Validate",
            },
            "log_level": crate::logger::level_name(self.log_level),
            "log_format": self.log_format.as_deref().unwrap_or(crate::log_format::DEFAULT),
            "drain_time": format!("{}s", self.drain_time.as_secs()),
            "restart_epoch": self.restart_epoch,
            "base_id": self.base_id,
            "parent_shutdown_time": format!("{}s", self.parent_shutdown.as_secs()),
            "disable_hot_restart": !self.hot_restart,
        })
    }
}

/// What the command line asks for besides running.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these options.
    Run(Cli),
    /// Print this text (help or version) and exit 0.
    Print(String),
}

/// Default `--drain-time-s`: long enough for a request at the default 15 s
/// route timeout to finish, short enough to end before Kubernetes' default
/// 30 s termination grace period sends SIGKILL.
pub const DEFAULT_DRAIN_SECONDS: u64 = 20;

/// The `--help` text.
pub fn usage() -> String {
    format!(
        "ringway {version}: Envoy-compatible thread-per-core proxy

USAGE: ringway -c FILE [options]
       ringway proxy-config listeners|routes|clusters|endpoints|dump [--admin HOST:PORT]

  -c, --config-path FILE   Envoy v3 bootstrap (YAML or JSON)
      --config-yaml YAML   bootstrap YAML merged over the file
      --concurrency N      shards (default: number of cores)
      --mode serve|validate
                           validate: check the config, print the result, exit
  -o, --output text|json   how configuration errors are reported (json: one
                           record per error with path, message, suggestion)
  -l, --log-level LEVEL    trace, debug, info, warning, error, critical, off
      --log-format FORMAT  application log lines' spdlog pattern (default
                           Envoy's: [%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v)
      --drain-time-s N     seconds to wait for in-flight requests on SIGTERM
                           or when a next restart epoch takes over
                           (default {DEFAULT_DRAIN_SECONDS})
      --restart-epoch N    take over the listening sockets of the running
                           process of epoch N-1 (same --base-id), then make it
                           drain and exit (default 0: bind them)
      --base-id N          tells apart independent processes (default 0)
      --parent-shutdown-time-s N
                           longest the replaced process drains (default 900)
      --disable-hot-restart
                           offer no sockets to a next epoch
      --version            print the version
  -h, --help               print this help
",
        version = env!("CARGO_PKG_VERSION")
    )
}

/// Parses arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut cli = Cli {
        config_path: None,
        config_yaml: None,
        concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mode: Mode::Serve,
        log_level: log::LevelFilter::Info,
        log_format: None,
        drain_time: Duration::from_secs(DEFAULT_DRAIN_SECONDS),
        json_errors: false,
        restart_epoch: 0,
        base_id: 0,
        parent_shutdown: Duration::from_secs(900),
        hot_restart: true,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Print(usage())),
            "--version" => {
                return Ok(Parsed::Print(format!(
                    "ringway version {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            "-c" | "--config-path" => cli.config_path = Some(value(&flag)?),
            "--config-yaml" => cli.config_yaml = Some(value(&flag)?),
            "--concurrency" => {
                let v = value(&flag)?;
                cli.concurrency = match v.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => return Err(format!("--concurrency: expected 1 to 1024, got {v:?}")),
                };
            }
            "--mode" => {
                cli.mode = match value(&flag)?.as_str() {
                    "serve" => Mode::Serve,
                    "validate" => Mode::Validate,
                    other => {
                        return Err(format!("--mode: expected serve or validate, got {other:?}"))
                    }
                }
            }
            "-l" | "--log-level" => {
                let v = value(&flag)?;
                cli.log_level = crate::logger::parse_level(&v)
                    .ok_or_else(|| format!("--log-level: unknown level {v:?}"))?;
            }
            "--log-format" => cli.log_format = Some(value(&flag)?),
            "-o" | "--output" => {
                cli.json_errors = match value(&flag)?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("--output: expected text or json, got {other:?}")),
                }
            }
            "--drain-time-s" => {
                let v = value(&flag)?;
                cli.drain_time = Duration::from_secs(
                    v.parse()
                        .map_err(|_| format!("--drain-time-s: expected seconds, got {v:?}"))?,
                );
            }
            "--restart-epoch" | "--base-id" | "--parent-shutdown-time-s" => {
                let v = value(&flag)?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{flag}: expected a number, got {v:?}"))?;
                match flag.as_str() {
                    "--restart-epoch" => cli.restart_epoch = n,
                    "--base-id" => cli.base_id = n,
                    _ => cli.parent_shutdown = Duration::from_secs(n),
                }
            }
            "--disable-hot-restart" => cli.hot_restart = false,
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if cli.config_path.is_none() && cli.config_yaml.is_none() {
        return Err("a configuration is required: -c FILE or --config-yaml YAML".to_string());
    }
    Ok(Parsed::Run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(cli) => Ok(cli),
            Parsed::Print(_) => Err("printed".into()),
        }
    }

    #[test]
    fn envoy_flags_parse() {
        let cli = run(&[
            "-c",
            "a.yaml",
            "--concurrency=2",
            "--mode",
            "validate",
            "-l",
            "debug",
        ])
        .expect("valid");
        assert_eq!(cli.config_path.as_deref(), Some("a.yaml"));
        assert_eq!(cli.concurrency, 2);
        assert_eq!(cli.mode, Mode::Validate);
        assert_eq!(cli.log_level, log::LevelFilter::Debug);
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(run(&["-c"]).is_err());
        assert!(run(&["-c", "x", "--concurrency", "0"]).is_err());
        assert!(run(&["-c", "x", "--bogus"]).is_err());
        assert!(run(&[]).is_err());
    }
}
