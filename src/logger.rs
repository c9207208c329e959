//! A small stderr logger: lines in Envoy's default format or the one
//! `--log-format` / `application_log_config` set ([`crate::log_format`]),
//! with Envoy-style named loggers whose levels change at run time
//! (`POST /logging`).

use crate::log_format::{Pattern, Record};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::SystemTime;

/// The line format every record is written in.
static FORMAT: LazyLock<RwLock<Pattern>> =
    LazyLock::new(|| RwLock::new(Pattern::text(crate::log_format::DEFAULT)));

/// Writes every line from now on in `pattern`.
pub fn set_format(pattern: Pattern) {
    *FORMAT.write().unwrap_or_else(|p| p.into_inner()) = pattern;
}

thread_local! {
    /// This thread's OS id, as Envoy's `%t` shows it.
    static THREAD_ID: u64 = rustix::thread::gettid().as_raw_nonzero().get() as u64;
}

/// The named loggers and the module each covers (longest prefix wins);
/// anything else logs as `misc`.
const LOGGERS: [(&str, &str); 9] = [
    ("admin", "ringway::admin"),
    ("config", "ringway::config"),
    ("dns", "ringway::upstream::dns"),
    ("http", "ringway::http"),
    ("main", "ringway::server"),
    ("misc", ""),
    ("router", "ringway::router"),
    ("stats", "ringway::stats"),
    ("upstream", "ringway::upstream"),
];

/// Each logger's level, as a `log::LevelFilter` number.
static LEVELS: [AtomicUsize; LOGGERS.len()] = [const { AtomicUsize::new(3) }; LOGGERS.len()];

fn logger_of(target: &str) -> usize {
    let mut best = (
        0,
        LOGGERS.iter().position(|(n, _)| *n == "misc").unwrap_or(0),
    );
    for (i, (_, module)) in LOGGERS.iter().enumerate() {
        if !module.is_empty() && target.starts_with(module) && module.len() > best.0 {
            best = (module.len(), i);
        }
    }
    best.1
}

fn filter_from(n: usize) -> log::LevelFilter {
    log::LevelFilter::iter()
        .nth(n)
        .unwrap_or(log::LevelFilter::Trace)
}

fn refresh_max_level() {
    let max = LEVELS
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    log::set_max_level(filter_from(max));
}

/// Envoy's name for a level.
pub fn level_name(level: log::LevelFilter) -> &'static str {
    match level {
        log::LevelFilter::Off => "off",
        log::LevelFilter::Error => "error",
        log::LevelFilter::Warn => "warning",
        log::LevelFilter::Info => "info",
        log::LevelFilter::Debug => "debug",
        log::LevelFilter::Trace => "trace",
    }
}

/// Every logger with its current level, sorted by name.
pub fn loggers() -> Vec<(&'static str, log::LevelFilter)> {
    LOGGERS
        .iter()
        .zip(&LEVELS)
        .map(|((name, _), l)| (*name, filter_from(l.load(Ordering::Relaxed))))
        .collect()
}

/// Sets one logger's level; false when no logger has that name.
pub fn set_logger_level(name: &str, level: log::LevelFilter) -> bool {
    let Some(i) = LOGGERS.iter().position(|(n, _)| *n == name) else {
        return false;
    };
    LEVELS[i].store(level as usize, Ordering::Relaxed);
    refresh_max_level();
    true
}

/// Sets every logger's level.
pub fn set_all_levels(level: log::LevelFilter) {
    for l in &LEVELS {
        l.store(level as usize, Ordering::Relaxed);
    }
    refresh_max_level();
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        let logger = logger_of(metadata.target());
        metadata.level() as usize <= LEVELS[logger].load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let line = Record {
            time: SystemTime::now(),
            level: level_name(record.level().to_level_filter()),
            logger: LOGGERS[logger_of(record.target())].0,
            message: &message,
            file: record.file().unwrap_or_default(),
            line: record.line().unwrap_or_default(),
            function: record.module_path().unwrap_or_default(),
            thread: THREAD_ID.with(|id| *id),
        };
        let mut line = FORMAT
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .render(&line);
        line.push('\n');
        // One write per line so lines from different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Parses an Envoy `--log-level` name.
pub fn parse_level(name: &str) -> Option<log::LevelFilter> {
    Some(match name {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warning" | "warn" => log::LevelFilter::Warn,
        "error" | "critical" => log::LevelFilter::Error,
        "off" => log::LevelFilter::Off,
        _ => return None,
    })
}

/// Installs the logger with every named logger at `level`.
pub fn init(level: log::LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    let _ = log::set_logger(&LOGGER);
    set_all_levels(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_the_longest_module() {
        let name = |t| LOGGERS[logger_of(t)].0;
        assert_eq!(name("ringway::upstream::dns"), "dns");
        assert_eq!(name("ringway::upstream::pool"), "upstream");
        assert_eq!(name("ringway::server::drain"), "main");
        assert_eq!(name("ringway"), "misc");
        assert_eq!(
            filter_from(log::LevelFilter::Debug as usize),
            log::LevelFilter::Debug
        );
    }
}
